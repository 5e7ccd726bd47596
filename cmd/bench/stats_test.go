package main

import (
	"bytes"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}}
	for _, tt := range tests {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil, 50) = %v, want 0", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile([7], 99) = %v, want 7", got)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in          []float64
		med, lo, hi float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 2, 3}, 2.5, 1, 4},
		{[]float64{5}, 5, 5, 5},
	}
	for _, tt := range tests {
		med, lo, hi := median(tt.in)
		if med != tt.med || lo != tt.lo || hi != tt.hi {
			t.Errorf("median(%v) = %v, %v, %v, want %v, %v, %v", tt.in, med, lo, hi, tt.med, tt.lo, tt.hi)
		}
	}
}

func TestFigureLine(t *testing.T) {
	runs := [][]sample{
		{{name: "pickup/longpoll/p50", unit: "ms", value: 0.41, note: "n=200"}, {name: "throughput/sqlite/32", unit: "jobs/s", value: 3012}},
		{{name: "pickup/longpoll/p50", unit: "ms", value: 0.52, note: "n=200"}, {name: "throughput/sqlite/32", unit: "jobs/s", value: 2950}},
		{{name: "pickup/longpoll/p50", unit: "ms", value: 0.38, note: "n=200"}, {name: "throughput/sqlite/32", unit: "jobs/s", value: 3100.4}},
	}
	figs := collect(runs)
	figs[0].goal = &goal{value: 20}
	figs[1].goal = &goal{atLeast: true, value: 5000}
	var buf bytes.Buffer
	writeText(&buf, figs)
	want := "pickup/longpoll/p50 0.41 ms (0.38–0.52, 3 runs) n=200 [goal < 20.0 ms: met]\n" +
		"throughput/sqlite/32 3012 jobs/s (2950–3100, 3 runs) [goal >= 5000 jobs/s: NOT met]\n"
	if got := buf.String(); got != want {
		t.Errorf("writeText:\n%s\nwant:\n%s", got, want)
	}
	buf.Reset()
	writeBenchstat(&buf, figs[:1])
	want = "BenchmarkPickup/longpoll/p50 1 0.41 ms\nBenchmarkPickup/longpoll/p50 1 0.52 ms\nBenchmarkPickup/longpoll/p50 1 0.38 ms\n"
	if got := buf.String(); got != want {
		t.Errorf("writeBenchstat:\n%s\nwant:\n%s", got, want)
	}
}
