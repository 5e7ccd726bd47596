package job

import (
	"bytes"
	"io"
)

// progressWriter keeps only the last state of lines that a command
// rewrites with carriage returns (git's "Receiving objects: 45%\r"...),
// so that a log holds one line per progress meter instead of every
// update: git fetch --progress otherwise put 17 KiB of updates into the
// log of a 540 KiB fetch. Trailing spaces of a line go too. "\r\n" ends
// a line as "\n" does. A segment longer than maxPending is written as it
// is. Call Flush when the command is done.
type progressWriter struct {
	w       io.Writer
	pending []byte
	cr      bool // the last byte seen was '\r'
}

const maxPending = 64 << 10

func (p *progressWriter) Write(b []byte) (int, error) {
	for _, c := range b {
		if p.cr {
			p.cr = false
			if c != '\n' {
				p.pending = p.pending[:0] // rewritten by what follows
			}
		}
		switch c {
		case '\r':
			p.cr = true
		case '\n':
			// git pads progress lines with spaces to cover longer
			// earlier states; nothing is left to cover.
			p.pending = append(bytes.TrimRight(p.pending, " "), '\n')
			if err := p.Flush(); err != nil {
				return 0, err
			}
		default:
			p.pending = append(p.pending, c)
			if len(p.pending) >= maxPending {
				if err := p.Flush(); err != nil {
					return 0, err
				}
			}
		}
	}
	return len(b), nil
}

// Flush writes what is pending: the last state of an unfinished line.
func (p *progressWriter) Flush() error {
	if len(p.pending) == 0 {
		return nil
	}
	_, err := p.w.Write(p.pending)
	p.pending = p.pending[:0]
	return err
}
