package vm

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// warmPool keeps machines booted ahead of the jobs that will use them,
// refilled in the background, so that a job does not wait for a boot.
// A machine is used by one job only, then destroyed: nothing of a job
// reaches the next. Its methods are safe for concurrent use.
type warmPool[M any] struct {
	size int
	boot func(ctx context.Context) (M, error)
	// alive reports whether a machine that waited in the pool still runs.
	alive   func(M) bool
	destroy func(M)
	log     *slog.Logger

	ready  chan M
	wake   chan struct{}
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// newWarmPool starts filling a pool of size machines (none when size is
// 0) until Close.
func newWarmPool[M any](size int, boot func(context.Context) (M, error), alive func(M) bool, destroy func(M), log *slog.Logger) *warmPool[M] {
	ctx, cancel := context.WithCancel(context.Background())
	p := &warmPool[M]{
		size: size, boot: boot, alive: alive, destroy: destroy, log: log,
		ready: make(chan M, max(size, 1)), wake: make(chan struct{}, 1), cancel: cancel,
	}
	if size > 0 {
		p.done.Add(1)
		go p.fill(ctx)
	}
	return p
}

// fill boots machines while the pool has fewer than size, one at a time
// (a boot takes the machine's CPUs), backing off after failures.
func (p *warmPool[M]) fill(ctx context.Context) {
	defer p.done.Done()
	backoff := time.Second
	for ctx.Err() == nil {
		if len(p.ready) >= p.size {
			select {
			case <-p.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		m, err := p.boot(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("vm warm pool: boot failed; jobs boot their own until it works", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		select {
		case p.ready <- m:
		default: // full: a Close raced, or size shrank
			p.destroy(m)
		}
	}
}

// Get returns a booted machine: a warm one when the pool has one, else
// one booted now. warm tells which.
func (p *warmPool[M]) Get(ctx context.Context) (m M, warm bool, err error) {
	for {
		select {
		case m := <-p.ready:
			p.refill()
			if !p.alive(m) {
				p.log.Warn("vm warm pool: a waiting machine died; dropped")
				p.destroy(m)
				continue
			}
			return m, true, nil
		default:
		}
		m, err := p.boot(ctx)
		return m, false, err
	}
}

func (p *warmPool[M]) refill() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close stops filling the pool and destroys its waiting machines.
func (p *warmPool[M]) Close() {
	p.cancel()
	p.done.Wait()
	for {
		select {
		case m := <-p.ready:
			p.destroy(m)
		default:
			return
		}
	}
}
