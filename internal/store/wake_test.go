package store

import "testing"

func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWaker_NotifyOneOldestFirst(t *testing.T) {
	var w Waker
	a, _ := w.Wake([]string{"q"})
	b, _ := w.Wake([]string{"q", "r"})
	w.Notify("q", 1)
	if !woken(a) || woken(b) {
		t.Fatalf("after Notify(q, 1): a woken %v, b woken %v; want only the oldest (a)", woken(a), woken(b))
	}
	w.Notify("r", 1)
	if !woken(b) {
		t.Fatal("Notify(r, 1) did not wake b, which waits on q and r")
	}
	w.Notify("q", 1) // nobody waits: must not panic or block
}

func TestWaker_StopPassesWakeUpOn(t *testing.T) {
	var w Waker
	a, stopA := w.Wake([]string{"q"})
	b, stopB := w.Wake([]string{"q"})
	w.Notify("q", 1)
	if !woken(a) {
		t.Fatal("a not woken")
	}
	stopA() // a leaves without acting on it
	if !woken(b) {
		t.Fatal("stop of a woken waiter did not pass the wake-up to b")
	}
	stopB()
	c, stopC := w.Wake([]string{"q"})
	stopC() // withdrawn, not woken: passes nothing
	w.Notify("q", -1)
	if woken(c) {
		t.Fatal("a withdrawn waiter was woken")
	}
}
