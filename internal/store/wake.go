package store

import "sync"

// Waker is the in-process hand-off behind [Store.Wake]: long-polling
// dequeues wait on it, and implementations call Notify when a queue gets
// work (postgres also when a NOTIFY from another coordinator arrives).
// Notify wakes waiters oldest first, one per new job, so an enqueue does
// not stampede every idle executor into the database. The zero value is
// ready to use.
type Waker struct {
	mu      sync.Mutex
	waiting map[string][]*waiter
}

type waiter struct {
	ch      chan struct{}
	queues  []string
	done    bool   // withdrawn or woken
	wokenBy string // the queue whose Notify woke it
}

// Wake returns a channel closed when a Notify picks this waiter for any of
// queues, and a stop function for a caller that leaves without acting on a
// wake-up (it got a job some other way, timed out, or its client left):
// stop withdraws the waiter, and if a wake-up raced in, passes it on to the
// next waiter so no job waits for a re-check. A caller that received from
// the channel and goes on to look for work need not call stop.
func (w *Waker) Wake(queues []string) (<-chan struct{}, func()) {
	wt := &waiter{ch: make(chan struct{}), queues: queues}
	w.mu.Lock()
	if w.waiting == nil {
		w.waiting = make(map[string][]*waiter)
	}
	for _, q := range queues {
		w.waiting[q] = append(w.waiting[q], wt)
	}
	w.mu.Unlock()
	return wt.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if wt.wokenBy != "" {
			q := wt.wokenBy
			wt.wokenBy = ""
			w.notifyLocked(q, 1)
			return
		}
		w.removeLocked(wt)
	}
}

func (w *Waker) removeLocked(wt *waiter) {
	if wt.done {
		return
	}
	wt.done = true
	for _, q := range wt.queues {
		list := w.waiting[q]
		for i, x := range list {
			if x == wt {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.waiting, q)
		} else {
			w.waiting[q] = list
		}
	}
}

// Notify wakes up to n waiters of queue, oldest first; n < 0 wakes all.
func (w *Waker) Notify(queue string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notifyLocked(queue, n)
}

func (w *Waker) notifyLocked(queue string, n int) {
	for n != 0 {
		list := w.waiting[queue]
		if len(list) == 0 {
			return
		}
		wt := list[0]
		w.removeLocked(wt)
		wt.wokenBy = queue
		close(wt.ch)
		n--
	}
}
