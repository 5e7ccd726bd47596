package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// CancelGrace is how long [Conn.Run] waits for the guest's Exit after
// sending Cancel before it gives up on the guest and closes the channel.
const CancelGrace = 5 * time.Second

// Conn is the host's side of the channel to one guest agent. Run and
// Shutdown are not concurrent: one step at a time. Close may be called
// at any time, from any goroutine, and unblocks them.
type Conn struct {
	rwc   io.ReadWriteCloser
	r     *Reader
	hello Hello

	wmu    sync.Mutex // serialises frame writes
	broken error      // set once the guest broke the protocol; guarded by being used by one step at a time
}

// Handshake reads the guest's Hello from rwc and returns the Conn. It
// fails when the guest says anything else, speaks another version, or
// says nothing before ctx ends (rwc is closed then).
func Handshake(ctx context.Context, rwc io.ReadWriteCloser) (*Conn, error) {
	c := &Conn{rwc: rwc, r: NewReader(rwc)}
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	t, p, err := c.r.Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("vm agent: no hello from the guest: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("vm agent: reading the guest's hello: %w", err)
	}
	if t != TypeHello {
		rwc.Close()
		return nil, protoErr("the guest's first message is %s, not Hello", t)
	}
	if err := decode(p, &c.hello); err != nil {
		rwc.Close()
		return nil, err
	}
	if c.hello.Version != Version {
		rwc.Close()
		return nil, protoErr("the guest speaks version %d, the host %d (rebuild the initramfs: executor install vm)", c.hello.Version, Version)
	}
	return c, nil
}

// Hello returns the guest's hello.
func (c *Conn) Hello() Hello { return c.hello }

// Close closes the channel.
func (c *Conn) Close() error { return c.rwc.Close() }

func (c *Conn) send(t Type, v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return WriteMessage(c.rwc, t, v)
}

// Run runs one step in the guest, writing its output to stdout and
// stderr as it arrives, and returns how it exited. When ctx ends during
// the step, the guest is told to kill it (Cancel), and Run returns the
// Exit the guest then sends, marked Canceled, with ctx's error; a guest
// that does not answer within [CancelGrace] has its channel closed.
//
// A step that could not run (the guest answered Error) returns a
// *StepError. A guest that breaks the protocol returns a
// *ProtocolError, and the Conn is unusable afterwards: the VM must go.
func (c *Conn) Run(ctx context.Context, req Run, stdout, stderr io.Writer) (Exit, error) {
	if c.broken != nil {
		return Exit{}, c.broken
	}
	if err := ctx.Err(); err != nil {
		return Exit{}, err
	}
	if err := c.send(TypeRun, req); err != nil {
		return Exit{}, c.fail(fmt.Errorf("vm agent: send the step: %w", err))
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		c.send(TypeCancel, nil) //nolint:errcheck // a failed send shows as the guest's silence
		t := time.NewTimer(CancelGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			c.rwc.Close()
		}
	}()
	ex, err := c.readStep(stdout, stderr)
	if ctx.Err() != nil {
		ex.Canceled = true
		if err == nil || !errors.As(err, new(*StepError)) {
			if err != nil {
				c.fail(err)
			}
			return ex, fmt.Errorf("vm agent: step canceled: %w", context.Cause(ctx))
		}
	}
	return ex, err
}

// StepError is the guest's Error: the step could not run. Kind is the
// guest's classification ([KindDir]), or "".
type StepError struct{ Msg, Kind string }

func (e *StepError) Error() string { return e.Msg }

// readStep reads frames until the step's end.
func (c *Conn) readStep(stdout, stderr io.Writer) (Exit, error) {
	var werr error // the first error of a writer: output is dropped after it
	for {
		t, p, err := c.r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Exit{}, c.fail(fmt.Errorf("vm agent: reading the step's output: %w", err))
		}
		switch t {
		case TypeStdout, TypeStderr:
			w := stdout
			if t == TypeStderr {
				w = stderr
			}
			if werr == nil && w != nil {
				_, werr = w.Write(p)
			}
		case TypeExit:
			var ex Exit
			if err := decode(p, &ex); err != nil {
				return Exit{}, c.fail(err)
			}
			if ex.Code < 0 || ex.Code > 255 {
				return Exit{}, c.fail(protoErr("exit code %d out of range", ex.Code))
			}
			if werr != nil {
				return ex, fmt.Errorf("vm agent: writing the step's output: %w", werr)
			}
			return ex, nil
		case TypeError:
			var e Error
			if err := decode(p, &e); err != nil {
				return Exit{}, c.fail(err)
			}
			return Exit{}, &StepError{Msg: "vm guest: " + sanitize(e.Msg), Kind: e.Kind}
		default:
			return Exit{}, c.fail(protoErr("unexpected %s frame during a step", t))
		}
	}
}

// MountWorkspace asks the guest to mount the workspace drive id at
// /workspace now, and waits for its answer. An Error from the guest is
// a *StepError; anything else out of place a *ProtocolError.
func (c *Conn) MountWorkspace(ctx context.Context, id string) error {
	return c.Mount(ctx, Mount{Workspace: id})
}

// Mount asks the guest to mount m's drives, and waits for its answer.
func (c *Conn) Mount(ctx context.Context, m Mount) error {
	if c.broken != nil {
		return c.broken
	}
	if err := c.send(TypeMount, m); err != nil {
		return c.fail(fmt.Errorf("vm agent: send mount: %w", err))
	}
	// A guest that does not answer in time is given up: the channel is
	// closed, which ends the read.
	stop := context.AfterFunc(ctx, func() { c.rwc.Close() })
	t, p, err := c.r.Next()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(fmt.Errorf("vm agent: mount: %w", context.Cause(ctx)))
		}
		return c.fail(fmt.Errorf("vm agent: reading the mount's answer: %w", err))
	}
	switch t {
	case TypeOK:
		if len(p) != 0 {
			return c.fail(protoErr("OK with a payload"))
		}
		return nil
	case TypeError:
		var e Error
		if err := decode(p, &e); err != nil {
			return c.fail(err)
		}
		return &StepError{Msg: "vm guest: " + sanitize(e.Msg), Kind: e.Kind}
	}
	return c.fail(protoErr("unexpected %s frame answering Mount", t))
}

// Shutdown asks the guest to sync, unmount its disks and power off. It
// returns once the request is sent; the caller waits for the VM to exit.
func (c *Conn) Shutdown() error {
	if err := c.send(TypeShutdown, nil); err != nil {
		return fmt.Errorf("vm agent: send shutdown: %w", err)
	}
	return nil
}

// fail marks the Conn unusable after err and closes the channel.
func (c *Conn) fail(err error) error {
	if c.broken == nil {
		c.broken = err
		c.rwc.Close()
	}
	return err
}

// decode parses a control payload, strictly.
func decode(p []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(p))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return protoErr("malformed %T: %v", v, err)
	}
	if d.More() {
		return protoErr("malformed %T: trailing data", v)
	}
	return nil
}

// sanitize bounds and cleans a message from the guest for a log line.
func sanitize(s string) string {
	const max = 1024
	if len(s) > max {
		s = s[:max] + "..."
	}
	return string(bytes.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return '?'
		}
		return r
	}, []byte(s)))
}
