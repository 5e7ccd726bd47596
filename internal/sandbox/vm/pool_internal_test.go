package vm

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMachines boots numbered machines, slowly when told.
type fakeMachines struct {
	delay     time.Duration
	fail      atomic.Bool
	booted    atomic.Int64
	mu        sync.Mutex
	dead      map[int64]bool
	destroyed []int64
}

func (f *fakeMachines) boot(ctx context.Context) (int64, error) {
	if f.fail.Load() {
		return 0, errors.New("no kernel")
	}
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return f.booted.Add(1), nil
}

func (f *fakeMachines) alive(m int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.dead[m]
}

func (f *fakeMachines) destroy(m int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyed = append(f.destroyed, m)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestWarmPool_GetsWarmThenCold(t *testing.T) {
	f := &fakeMachines{delay: 10 * time.Millisecond, dead: map[int64]bool{}}
	p := newWarmPool(2, f.boot, f.alive, f.destroy, slog.New(slog.DiscardHandler))
	waitFor(t, "the pool to fill", func() bool { return len(p.ready) == 2 })
	for i := range 2 {
		m, warm, err := p.Get(context.Background())
		if err != nil || !warm {
			t.Fatalf("Get %d = %v, warm %v, %v; want a warm machine", i, m, warm, err)
		}
	}
	// Empty now: the next Get boots its own, and the pool refills.
	m, warm, err := p.Get(context.Background())
	if err != nil || warm {
		t.Errorf("Get from an empty pool = %v, warm %v, %v; want one booted for it", m, warm, err)
	}
	waitFor(t, "the pool to refill", func() bool { return len(p.ready) == 2 })
	p.Close()
	if len(f.destroyed) != 2 {
		t.Errorf("Close destroyed %v, want the 2 waiting machines", f.destroyed)
	}
}

func TestWarmPool_DropsDeadMachines(t *testing.T) {
	f := &fakeMachines{dead: map[int64]bool{}}
	p := newWarmPool(1, f.boot, f.alive, f.destroy, slog.New(slog.DiscardHandler))
	defer p.Close()
	waitFor(t, "the pool to fill", func() bool { return len(p.ready) == 1 })
	f.mu.Lock()
	f.dead[1] = true
	f.mu.Unlock()
	m, _, err := p.Get(context.Background())
	if err != nil || m == 1 {
		t.Errorf("Get = %v, %v; want a machine other than the dead one", m, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.destroyed) == 0 || f.destroyed[0] != 1 {
		t.Errorf("destroyed %v, want the dead machine", f.destroyed)
	}
}

func TestWarmPool_BootFailures(t *testing.T) {
	f := &fakeMachines{dead: map[int64]bool{}}
	f.fail.Store(true)
	p := newWarmPool(1, f.boot, f.alive, f.destroy, slog.New(slog.DiscardHandler))
	defer p.Close()
	if _, _, err := p.Get(context.Background()); err == nil {
		t.Error("Get while boots fail: no error")
	}
	f.fail.Store(false)
	if m, _, err := p.Get(context.Background()); err != nil || m == 0 {
		t.Errorf("Get once boots work = %v, %v", m, err)
	}
}

func TestWarmPool_Off(t *testing.T) {
	f := &fakeMachines{dead: map[int64]bool{}}
	p := newWarmPool(0, f.boot, f.alive, f.destroy, slog.New(slog.DiscardHandler))
	time.Sleep(20 * time.Millisecond)
	if n := f.booted.Load(); n != 0 {
		t.Errorf("a pool of 0 booted %d machines", n)
	}
	if _, warm, err := p.Get(context.Background()); err != nil || warm {
		t.Errorf("Get = warm %v, %v; want a cold boot", warm, err)
	}
	p.Close()
}
