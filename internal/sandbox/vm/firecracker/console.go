package firecracker

import (
	"bytes"
	"io"
	"os"
	"sync"
)

const (
	// ConsoleFileLimit bounds what is written to <Dir>/console.log; the
	// rest of the console is dropped (its tail stays in memory).
	ConsoleFileLimit = 1 << 20

	consoleTail = 32 << 10 // the console bytes [Machine.Console] keeps
	logTail     = 8 << 10  // the bytes of firecracker.log it adds
)

// console receives Firecracker's stdout and stderr: it keeps the last
// consoleTail bytes and copies the first ConsoleFileLimit bytes to a file.
type console struct {
	mu      sync.Mutex
	tail    []byte
	file    *os.File
	written int64
}

func newConsole(path string) (*console, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &console{file: f}, nil
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file != nil && c.written < ConsoleFileLimit {
		n := min(int64(len(p)), ConsoleFileLimit-c.written)
		if _, err := c.file.Write(p[:n]); err == nil {
			c.written += n
			if c.written == ConsoleFileLimit {
				c.file.WriteString("\n[execd: console truncated here]\n")
			}
		}
	}
	if len(p) >= consoleTail {
		c.tail = append(c.tail[:0], p[len(p)-consoleTail:]...)
	} else {
		if drop := len(c.tail) + len(p) - consoleTail; drop > 0 {
			c.tail = append(c.tail[:0], c.tail[drop:]...)
		}
		c.tail = append(c.tail, p...)
	}
	return len(p), nil
}

func (c *console) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.tail)
}

func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
}

// fileTail returns at most n bytes from the end of the file at path.
func fileTail(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-n, 0)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, n))
	return b
}
