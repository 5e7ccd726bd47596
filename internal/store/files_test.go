package store

import (
	"strings"
	"testing"
)

func TestCheckFileName(t *testing.T) {
	tests := []struct {
		bucket, key string
		ok          bool
	}{
		{"batch-changes", "workspace/files/a.txt", true},
		{"b", "k", true},
		{"b.1_x", "ünïcode key with spaces.txt", true},
		{"b", ".hidden/.file", true},
		{"", "k", false},
		{"-b", "k", false},
		{"a/b", "k", false},
		{strings.Repeat("b", 64), "k", false},
		{"b", "", false},
		{"b", "/abs", false},
		{"b", "a//b", false},
		{"b", "a/./b", false},
		{"b", "a/../b", false},
		{"b", "..", false},
		{"b", ".", false},
		{"b", "a/", false},
		{"b", "a\nb", false},
		{"b", "\xff", false},
		{"b", strings.Repeat("k", MaxFileKeyLength+1), false},
	}
	for _, tt := range tests {
		err := CheckFileName(tt.bucket, tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("CheckFileName(%q, %q) = %v, want ok=%v", tt.bucket, tt.key, err, tt.ok)
		}
	}
}
