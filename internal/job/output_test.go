package job

import (
	"bytes"
	"testing"
)

func TestOutput(t *testing.T) {
	// Writes of these sizes, in order, cross the small first block, its
	// growth, and full blocks.
	tests := []struct {
		name   string
		writes []int
	}{
		{"empty", nil},
		{"one line", []int{12}},
		{"first block grows", []int{100, 1000, 100_000}},
		{"exactly one block", []int{blockSize}},
		{"across blocks", []int{blockSize - 1, 2, blockSize + 5, 3 * blockSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o output
			var want []byte
			for i, n := range tt.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				p[0] = byte('0' + i%10) // mark each write's start
				o.Write(p)
				want = append(want, p...)
			}
			if o.Len() != len(want) {
				t.Fatalf("Len = %d, want %d", o.Len(), len(want))
			}
			if o.Held() != string(want) {
				t.Fatalf("Held differs from what was written (%d bytes)", len(want))
			}
			for i, b := range o.blocks[:max(len(o.blocks)-1, 0)] {
				if len(b) != blockSize {
					t.Errorf("block %d of %d holds %d bytes, want %d", i, len(o.blocks), len(b), blockSize)
				}
			}
			ranges := [][2]int{{0, 0}, {0, len(want)}, {len(want) / 3, len(want) / 2}, {blockSize - 1, blockSize + 1}, {len(want), len(want) + 10}}
			for _, r := range ranges {
				from, to := min(r[0], len(want)), min(r[1], len(want))
				if got := o.AppendRange([]byte("x"), r[0], r[1]); !bytes.Equal(got, append([]byte("x"), want[from:to]...)) {
					t.Errorf("AppendRange(%d, %d): %d bytes, want %d", r[0], r[1], len(got)-1, to-from)
				}
				if from < len(want) && o.At(from) != want[from] {
					t.Errorf("At(%d) = %q, want %q", from, o.At(from), want[from])
				}
			}
			// Releasing lets go of whole blocks before the offset only,
			// and what is left reads the same.
			blocks := len(o.blocks)
			o.Release(len(want) - 10)
			// Whole blocks before the offset go, but never the last one.
			wantBase := max(0, min((len(want)-10)/blockSize, blocks-1)) * blockSize
			if o.Base() != wantBase || o.Len() != len(want) || o.Held() != string(want[o.Base():]) {
				t.Errorf("after Release(%d): Base %d, Len %d; want %d, %d, and the rest held", len(want)-10, o.Base(), o.Len(), wantBase, len(want))
			}
			o.Write([]byte("more"))
			if got := string(o.AppendRange(nil, o.Base(), o.Len())); got != string(want[o.Base():])+"more" {
				t.Errorf("write after Release: held %d bytes, want %d", len(got), len(want)-o.Base()+4)
			}
		})
	}
}
