package ui

import "time"

// AddSample records the queue sizes at an instant, as Run does, so that a
// test can chart an hour it did not wait through.
func (s *Server) AddSample(at time.Time, size map[string]int) {
	s.history.add(sample{at: at, size: size})
}
