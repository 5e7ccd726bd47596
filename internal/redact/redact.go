// Package redact replaces secrets in output streams before the output
// leaves the executor. A [Writer] catches a secret even when it arrives
// split across several writes: it holds back the tail of what it has seen
// while that tail could still be the start of a secret (as GitLab's masker
// does), and releases it once it cannot, or at Flush.
package redact

import (
	"bytes"
	"io"
	"slices"
	"sort"
)

// Replacer knows the secrets of one job and what replaces each.
type Replacer struct {
	secrets  [][]byte // longest first, so a secret containing another wins
	repl     [][]byte
	first    [256]bool // first bytes of secrets: a fast skip for the rest
	maxLen   int
	disabled bool
}

// New returns a Replacer for secrets (secret -> replacement). Empty
// secrets are ignored.
func New(secrets map[string]string) *Replacer {
	r := &Replacer{}
	keys := make([]string, 0, len(secrets))
	for s := range secrets {
		if s != "" {
			keys = append(keys, s)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) > len(keys[j])
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		r.secrets = append(r.secrets, []byte(k))
		r.repl = append(r.repl, []byte(secrets[k]))
		r.first[k[0]] = true
		r.maxLen = max(r.maxLen, len(k))
	}
	r.disabled = len(keys) == 0
	return r
}

// String redacts a whole string.
func (r *Replacer) String(s string) string {
	var out bytes.Buffer
	rest := r.redact(&out, []byte(s), true)
	out.Write(rest)
	return out.String()
}

// redact appends p to out with secrets replaced. Unless final, it stops
// early at a tail that is a proper prefix of some secret and returns that
// tail, which the caller must present again with more data.
func (r *Replacer) redact(out *bytes.Buffer, p []byte, final bool) []byte {
	if r.disabled {
		out.Write(p)
		return nil
	}
	start := 0 // p[start:i] is clean and not yet written
	for i := 0; i < len(p); i++ {
		if !r.first[p[i]] {
			continue
		}
		rest := p[i:]
		matched := false
		for k, s := range r.secrets {
			if bytes.HasPrefix(rest, s) {
				out.Write(p[start:i])
				out.Write(r.repl[k])
				i += len(s) - 1
				start = i + 1
				matched = true
				break
			}
		}
		if matched || final || len(rest) >= r.maxLen {
			continue
		}
		// rest is shorter than the longest secret: is it the start of one?
		for _, s := range r.secrets {
			if len(rest) < len(s) && bytes.HasPrefix(s, rest) {
				out.Write(p[start:i])
				return slices.Clone(rest)
			}
		}
	}
	out.Write(p[start:])
	return nil
}

// Writer redacts what is written to it before passing it on. It is not
// safe for concurrent use; give each stream its own.
type Writer struct {
	r    *Replacer
	dst  io.Writer
	held []byte
	out  bytes.Buffer
}

// NewWriter returns a Writer redacting into dst.
func NewWriter(dst io.Writer, r *Replacer) *Writer {
	return &Writer{r: r, dst: dst}
}

// Write redacts p, holding back a tail that may be the start of a secret.
func (w *Writer) Write(p []byte) (int, error) {
	w.out.Reset()
	data := p
	if len(w.held) > 0 {
		data = append(w.held, p...)
	}
	w.held = w.r.redact(&w.out, data, false)
	if w.out.Len() > 0 {
		if _, err := w.dst.Write(w.out.Bytes()); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush releases the held-back tail: the stream has ended, so it cannot
// become a secret any more.
func (w *Writer) Flush() error {
	if len(w.held) == 0 {
		return nil
	}
	held := w.held
	w.held = nil
	_, err := w.dst.Write(held)
	return err
}
