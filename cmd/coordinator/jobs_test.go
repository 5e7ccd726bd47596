package main

import (
	"strings"
	"testing"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

// TestLogPrinter: each byte of an entry is printed once, in order, from
// answers that carry what follows the offsets the printer asked for; an
// entry whose log began anew (the job was handed out again) is printed
// again from its start.
func TestLogPrinter(t *testing.T) {
	entry := func(out string, from, length int64) jobsapi.LogEntry {
		return jobsapi.LogEntry{ID: 1, ExecutionLogEntry: protocol.ExecutionLogEntry{Key: "step.0", Command: []string{"make"}, Out: out}, OutFrom: from, OutLength: length}
	}
	var lp logPrinter
	var w strings.Builder
	answers := []jobsapi.Logs{
		{Entries: []jobsapi.LogEntry{entry("one\n", 0, 4)}},
		{Entries: []jobsapi.LogEntry{entry("two\n", 4, 8)}},
		{Entries: []jobsapi.LogEntry{entry("", 8, 8)}},
		{Entries: []jobsapi.LogEntry{entry("", 3, 3)}}, // cleared: "new" is 3 bytes now
		{Entries: []jobsapi.LogEntry{entry("new", 0, 3)}},
	}
	for i, a := range answers {
		if i == 4 {
			if off := lp.offsets(); off[1] != 0 {
				t.Errorf("offsets after the restart: %v, want entry 1 read from 0", off)
			}
		}
		lp.print(&w, a)
	}
	want := "== step.0: make\none\ntwo\n== step.0: the log restarted (the job was handed out again)\n== step.0: make\nnew"
	if w.String() != want {
		t.Errorf("printed:\n%q\nwant:\n%q", w.String(), want)
	}
}
