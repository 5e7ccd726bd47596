package job

// HeldBytes is how much of e's output the executor still holds.
func HeldBytes(e *Entry) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.Len() - e.out.Base()
}
