package redact_test

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/execd/execd/internal/redact"
)

func TestReplacer_String(t *testing.T) {
	r := redact.New(map[string]string{"hunter2": "[PW]", "tok-abc": "***", "tok-abcdef": "###", "": "x"})
	tests := []struct{ in, want string }{
		{"", ""},
		{"no secrets here", "no secrets here"},
		{"pw=hunter2!", "pw=[PW]!"},
		{"hunter2hunter2", "[PW][PW]"},
		{"tok-abcdef and tok-abc", "### and ***"},
		{"hunter", "hunter"},
		{"huntehunter2", "hunte[PW]"},
	}
	for _, tt := range tests {
		if got := r.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriter_SplitAcrossWrites(t *testing.T) {
	secret := "s3cr3t-value-0123456789"
	r := redact.New(map[string]string{secret: "[REDACTED]"})
	text := "start " + secret + " middle " + secret + secret + " end s3cr3t"
	// Every way of splitting the text into two writes, and random splits.
	for cut := 0; cut <= len(text); cut++ {
		var out bytes.Buffer
		w := redact.NewWriter(&out, r)
		w.Write([]byte(text[:cut]))
		w.Write([]byte(text[cut:]))
		w.Flush()
		want := strings.ReplaceAll(text, secret, "[REDACTED]")
		if out.String() != want {
			t.Fatalf("split at %d: got %q, want %q", cut, out.String(), want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var out bytes.Buffer
		w := redact.NewWriter(&out, r)
		for rest := text; len(rest) > 0; {
			n := 1 + rng.IntN(len(rest))
			w.Write([]byte(rest[:n]))
			rest = rest[n:]
		}
		w.Flush()
		if strings.Contains(out.String(), secret) || out.String() != strings.ReplaceAll(text, secret, "[REDACTED]") {
			t.Fatalf("random split: got %q", out.String())
		}
	}
}

func TestWriter_ReleasesNonSecretPrefixOnFlush(t *testing.T) {
	var out bytes.Buffer
	w := redact.NewWriter(&out, redact.New(map[string]string{"abcdef": "*"}))
	w.Write([]byte("xyz abc"))
	if got := out.String(); got != "xyz " {
		t.Errorf("before flush: %q, want the possible secret prefix held back", got)
	}
	w.Flush()
	if got := out.String(); got != "xyz abc" {
		t.Errorf("after flush: %q, want %q", got, "xyz abc")
	}
}

func FuzzWriter(f *testing.F) {
	f.Add("password123", "xx password123 yy passw", uint8(3))
	f.Add("aa", "aaaaa", uint8(1))
	f.Fuzz(func(t *testing.T, secret, text string, chunk uint8) {
		if secret == "" {
			return
		}
		r := redact.New(map[string]string{secret: "[R]"})
		var out bytes.Buffer
		w := redact.NewWriter(&out, r)
		n := int(chunk)%16 + 1
		for i := 0; i < len(text); i += n {
			w.Write([]byte(text[i:min(i+n, len(text))]))
		}
		w.Flush()
		if want := r.String(text); out.String() != want {
			t.Fatalf("streamed %q in chunks of %d: %q, whole-string redaction gives %q", text, n, out.String(), want)
		}
	})
}

func BenchmarkWriter(b *testing.B) {
	r := redact.New(map[string]string{"s3cr3t-0123456789": "[R]", "another-secret-value": "[R]"})
	line := []byte(strings.Repeat("some ordinary build output line with numbers 12345 ", 20) + "\n")
	w := redact.NewWriter(discard{}, r)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		w.Write(line)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
