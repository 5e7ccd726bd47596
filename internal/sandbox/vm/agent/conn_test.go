package agent_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/vm/agent"
)

// fakeGuest runs script against the guest's end of a pipe and returns
// the host's end.
func fakeGuest(t *testing.T, script func(g *guest)) net.Conn {
	t.Helper()
	host, gc := net.Pipe()
	go func() {
		defer gc.Close()
		script(&guest{t: t, c: gc, r: agent.NewReader(gc)})
	}()
	t.Cleanup(func() { host.Close() })
	return host
}

type guest struct {
	t *testing.T
	c net.Conn
	r *agent.Reader
}

func (g *guest) send(typ agent.Type, v any) { agent.WriteMessage(g.c, typ, v) }
func (g *guest) raw(b []byte)               { g.c.Write(b) }
func (g *guest) out(typ agent.Type, s string) {
	agent.WriteFrame(g.c, typ, []byte(s))
}

// expect reads the host's next frame and reports its type.
func (g *guest) expect() agent.Type {
	typ, _, err := g.r.Next()
	if err != nil {
		return 0
	}
	return typ
}

func hello(g *guest) {
	g.send(agent.TypeHello, agent.Hello{Version: agent.Version, Kernel: "6.1.0-test"})
}

func frame(typ byte, n uint32, payload string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return append(b, payload...)
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name   string
		script func(g *guest)
		want   string // error substring; "" is success
	}{
		{"hello", hello, ""},
		{"other version", func(g *guest) { g.send(agent.TypeHello, agent.Hello{Version: 99}) }, "version 99"},
		{"exit first", func(g *guest) { g.send(agent.TypeExit, agent.Exit{}) }, "not Hello"},
		{"unknown type", func(g *guest) { g.raw(frame('Z', 0, "")) }, "unknown frame type"},
		{"oversized hello", func(g *guest) { g.raw(frame('H', agent.MaxControl+1, "")) }, "exceeds"},
		{"garbage json", func(g *guest) { g.raw(frame('H', 3, "{{{")) }, "malformed"},
		{"unknown field", func(g *guest) { g.raw(frame('H', 24, `{"version":1,"evil":true}`[:24])) }, "malformed"},
		{"closed", func(g *guest) {}, "EOF"},
		{"truncated", func(g *guest) { g.raw(frame('H', 100, "{")) }, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := agent.Handshake(ctx, fakeGuest(t, tt.script))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Handshake: %v", err)
				}
				if got := c.Hello().Kernel; got != "6.1.0-test" {
					t.Errorf("kernel = %q", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Handshake error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestHandshake_Silent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := agent.Handshake(ctx, fakeGuest(t, func(g *guest) { time.Sleep(time.Second) }))
	if err == nil || !strings.Contains(err.Error(), "no hello") {
		t.Fatalf("err = %v, want no hello", err)
	}
}

func TestConn_Run(t *testing.T) {
	tests := []struct {
		name       string
		script     func(g *guest)
		wantOut    string
		wantErr    string
		wantCode   int
		wantProto  bool
		wantReused bool // a second Run works
	}{
		{
			name: "output and exit",
			script: func(g *guest) {
				g.expect()
				g.out(agent.TypeStdout, "out1 ")
				g.out(agent.TypeStderr, "err1 ")
				g.out(agent.TypeStdout, "out2")
				g.send(agent.TypeExit, agent.Exit{Code: 3})
				if g.expect() == agent.TypeRun {
					g.send(agent.TypeExit, agent.Exit{Code: 0})
				}
			},
			wantOut: "out=out1 out2 err=err1 ", wantCode: 3, wantReused: true,
		},
		{
			name: "step error",
			script: func(g *guest) {
				g.expect()
				g.send(agent.TypeError, agent.Error{Msg: "no such dir\x1b[31m"})
				if g.expect() == agent.TypeRun {
					g.send(agent.TypeExit, agent.Exit{Code: 0})
				}
			},
			wantErr: "no such dir?[31m", wantReused: true,
		},
		{"hello again", func(g *guest) { g.expect(); hello(g) }, "", "unexpected Hello", 0, true, false},
		{"unknown type", func(g *guest) { g.expect(); g.raw(frame(0xff, 0, "")) }, "", "unknown frame type", 0, true, false},
		{"huge chunk", func(g *guest) { g.expect(); g.raw(frame('o', agent.MaxFrame+1, "")) }, "", "exceeds", 0, true, false},
		{"huge exit", func(g *guest) { g.expect(); g.raw(frame('x', agent.MaxControl+1, "")) }, "", "exceeds", 0, true, false},
		{"bad exit code", func(g *guest) { g.expect(); g.send(agent.TypeExit, agent.Exit{Code: -5}) }, "", "out of range", 0, true, false},
		{"exit not json", func(g *guest) { g.expect(); g.raw(frame('x', 2, "hi")) }, "", "malformed", 0, true, false},
		{"guest dies", func(g *guest) { g.expect(); g.out(agent.TypeStdout, "partial") }, "out=partial err=", "unexpected EOF", 0, false, false},
		{"guest sends run", func(g *guest) { g.expect(); g.send(agent.TypeRun, agent.Run{}) }, "", "unexpected Run", 0, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := agent.Handshake(ctx, fakeGuest(t, func(g *guest) { hello(g); tt.script(g) }))
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			ex, err := c.Run(ctx, agent.Run{Commands: []string{"x"}, Root: agent.RootNone}, &stdout, &stderr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run error = %v, want %q", err, tt.wantErr)
				}
				if got := errors.As(err, new(*agent.ProtocolError)); got != tt.wantProto {
					t.Errorf("protocol error = %v, want %v (%v)", got, tt.wantProto, err)
				}
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if ex.Code != tt.wantCode {
				t.Errorf("code = %d, want %d", ex.Code, tt.wantCode)
			}
			if tt.wantOut != "" {
				if got := "out=" + stdout.String() + " err=" + stderr.String(); got != tt.wantOut {
					t.Errorf("output = %q, want %q", got, tt.wantOut)
				}
			}
			_, err2 := c.Run(ctx, agent.Run{Root: agent.RootNone}, io.Discard, io.Discard)
			if tt.wantReused && err2 != nil {
				t.Errorf("second Run: %v", err2)
			}
			if !tt.wantReused && err2 == nil {
				t.Errorf("second Run after a broken guest succeeded")
			}
		})
	}
}

func TestConn_MountWorkspace(t *testing.T) {
	tests := []struct {
		name   string
		answer func(g *guest)
		want   string // "" is success
		broken bool
	}{
		{"ok", func(g *guest) { g.raw(frame('K', 0, "")) }, "", false},
		{"error", func(g *guest) { g.send(agent.TypeError, agent.Error{Msg: "no such drive"}) }, "no such drive", false},
		{"ok with payload", func(g *guest) { g.raw(frame('K', 2, "{}")) }, "OK with a payload", true},
		{"exit", func(g *guest) { g.send(agent.TypeExit, agent.Exit{}) }, "unexpected Exit", true},
		{"silence", func(g *guest) { time.Sleep(time.Second) }, "deadline exceeded", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := agent.Handshake(ctx, fakeGuest(t, func(g *guest) {
				hello(g)
				if g.expect() != agent.TypeMount {
					return
				}
				tt.answer(g)
				if g.expect() == agent.TypeRun {
					g.send(agent.TypeExit, agent.Exit{})
				}
			}))
			if err != nil {
				t.Fatal(err)
			}
			mctx, mcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer mcancel()
			err = c.MountWorkspace(mctx, "workspace")
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("MountWorkspace = %v, want %q", err, tt.want)
			}
			_, err = c.Run(ctx, agent.Run{Root: agent.RootNone}, io.Discard, io.Discard)
			if broken := err != nil; broken != tt.broken {
				t.Errorf("Run after: %v, want broken %v", err, tt.broken)
			}
		})
	}
}

func TestConn_RunCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := agent.Handshake(ctx, fakeGuest(t, func(g *guest) {
		hello(g)
		g.expect()
		g.out(agent.TypeStdout, "started")
		if typ := g.expect(); typ != agent.TypeCancel {
			g.send(agent.TypeError, agent.Error{Msg: "want cancel, got " + typ.String()})
			return
		}
		g.send(agent.TypeExit, agent.Exit{Code: 137})
	}))
	if err != nil {
		t.Fatal(err)
	}
	stepCtx, stop := context.WithCancel(ctx)
	w := writerFunc(func(p []byte) (int, error) { stop(); return len(p), nil })
	ex, err := c.Run(stepCtx, agent.Run{Root: agent.RootNone}, w, io.Discard)
	if !errors.Is(err, context.Canceled) || !ex.Canceled || ex.Code != 137 {
		t.Fatalf("Run = %+v, %v; want canceled 137", ex, err)
	}
}

func TestConn_RunCancelIgnored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := agent.Handshake(ctx, fakeGuest(t, func(g *guest) {
		hello(g)
		g.expect()
		for g.expect() != 0 { // ignores Cancel
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	stepCtx, stop := context.WithTimeout(ctx, 10*time.Millisecond)
	defer stop()
	start := time.Now()
	_, err = c.Run(stepCtx, agent.Run{Root: agent.RootNone}, io.Discard, io.Discard)
	if err == nil || time.Since(start) > agent.CancelGrace+2*time.Second {
		t.Fatalf("Run = %v after %v", err, time.Since(start))
	}
}

func TestConn_Flood(t *testing.T) {
	// A guest sending a lot of output in max-size frames is streamed
	// through without growing the host's memory past one frame.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chunk := strings.Repeat("a", agent.MaxFrame)
	c, err := agent.Handshake(ctx, fakeGuest(t, func(g *guest) {
		hello(g)
		g.expect()
		for range 20 {
			g.out(agent.TypeStdout, chunk)
		}
		g.send(agent.TypeExit, agent.Exit{})
	}))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_, err = c.Run(ctx, agent.Run{Root: agent.RootNone}, writerFunc(func(p []byte) (int, error) { n += len(p); return len(p), nil }), io.Discard)
	if err != nil || n != 20*agent.MaxFrame {
		t.Fatalf("Run: %v, %d bytes", err, n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// FuzzConn feeds arbitrary guest streams to the host's side: it must
// return (a result or an error), never panic or hang.
func FuzzConn(f *testing.F) {
	var ok bytes.Buffer
	agent.WriteMessage(&ok, agent.TypeHello, agent.Hello{Version: agent.Version})
	agent.WriteFrame(&ok, agent.TypeStdout, []byte("hi"))
	agent.WriteFrame(&ok, agent.TypeStderr, []byte("ho"))
	agent.WriteMessage(&ok, agent.TypeExit, agent.Exit{Code: 1})
	f.Add(ok.Bytes())
	f.Add(frame('H', 12, `{"version":1`))
	f.Add(append(frame('H', 13, `{"version":1}`), frame('E', 11, `{"msg":"x"}`)...))
	f.Add(append(frame('H', 13, `{"version":1}`), frame('o', 0xffffffff, "")...))
	f.Add(append(append(frame('H', 13, `{"version":1}`), frame('K', 0, "")...), frame('x', 10, `{"code":1}`)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		rwc := &fuzzRWC{Reader: bytes.NewReader(data)}
		c, err := agent.Handshake(context.Background(), rwc)
		if err != nil {
			return
		}
		if len(data) > 0 && data[len(data)-1]&1 == 1 { // some inputs answer a Mount first
			var se *agent.StepError
			if err := c.MountWorkspace(context.Background(), "w"); err != nil && !errors.As(err, &se) {
				return
			}
		}
		for range 3 {
			if _, err := c.Run(context.Background(), agent.Run{Root: agent.RootNone}, io.Discard, io.Discard); err != nil {
				var se *agent.StepError
				if !errors.As(err, &se) {
					return
				}
			}
		}
	})
}

type fuzzRWC struct{ *bytes.Reader }

func (*fuzzRWC) Write(p []byte) (int, error) { return len(p), nil }
func (*fuzzRWC) Close() error                { return nil }
