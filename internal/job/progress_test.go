package job

import (
	"strings"
	"testing"
)

func TestProgressWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"plain lines", []string{"a\nb\n"}, "a\nb\n"},
		{"git progress", []string{"Receiving objects:  10% (1/10)\rReceiving objects:  50% (5/10)\r", "Receiving objects: 100% (10/10), done.\nResolving deltas: 100%\r", "Resolving deltas: 100% (3/3), done.\n"},
			"Receiving objects: 100% (10/10), done.\nResolving deltas: 100% (3/3), done.\n"},
		{"CRLF", []string{"one\r", "\ntwo\r\n"}, "one\ntwo\n"},
		{"padding", []string{"remote: Counting objects:  50%\rremote: Counting objects: 100%, done.        \n"}, "remote: Counting objects: 100%, done.\n"},
		{"unfinished line is flushed", []string{"counting 1\rcounting 2"}, "counting 2"},
		{"ends on a CR", []string{"remote: 50%\r"}, "remote: 50%"},
		{"long segment", []string{strings.Repeat("x", maxPending+10) + "\n"}, strings.Repeat("x", maxPending+10) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			p := &progressWriter{w: &out}
			for _, w := range tt.writes {
				if n, err := p.Write([]byte(w)); err != nil || n != len(w) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			p.Flush()
			if out.String() != tt.want {
				t.Errorf("wrote %q, want %q", out.String(), tt.want)
			}
		})
	}
}
