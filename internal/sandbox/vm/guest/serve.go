//go:build linux

package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/agent"
)

// server answers the host on one channel: one step at a time.
type server struct {
	r *agent.Reader

	wmu sync.Mutex
	w   io.Writer

	mu   sync.Mutex
	cur  *step         // the running step, nil between steps
	done chan struct{} // closed when cur ends
}

func newServer(ch io.ReadWriter) *server {
	return &server{r: agent.NewReader(ch), w: ch}
}

// send writes one control frame; output frames go through sendOutput.
func (s *server) send(t agent.Type, v any) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return agent.WriteMessage(s.w, t, v)
}

func (s *server) sendOutput(t agent.Type, p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return agent.WriteFrame(s.w, t, p)
}

// serve says Hello and runs the host's requests until Shutdown or the
// channel's end. Its return powers the VM off.
func (s *server) serve() error {
	var uts unix.Utsname
	unix.Uname(&uts)
	kernel := string(bytes.TrimRight(uts.Release[:], "\x00"))
	if err := s.send(agent.TypeHello, agent.Hello{Version: agent.Version, Kernel: kernel}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	for {
		t, p, err := s.r.Next()
		if err != nil {
			s.stopStep()
			if errors.Is(err, io.EOF) {
				return errors.New("the host closed the channel")
			}
			var pe *agent.ProtocolError
			if errors.As(err, &pe) {
				// The stream is out of step: nothing after it can be read.
				s.send(agent.TypeError, agent.Error{Msg: "refused: " + pe.Msg})
			}
			return fmt.Errorf("read from the host: %w", err)
		}
		switch t {
		case agent.TypeRun:
			var req agent.Run
			if err := decodeStrict(p, &req); err != nil {
				s.send(agent.TypeError, agent.Error{Msg: "refused: malformed Run: " + err.Error()})
				continue
			}
			s.startStep(req)
		case agent.TypeMount:
			var m agent.Mount
			if err := decodeStrict(p, &m); err != nil {
				s.send(agent.TypeError, agent.Error{Msg: "refused: malformed Mount: " + err.Error()})
				continue
			}
			s.mount(m)
		case agent.TypeCancel:
			s.mu.Lock()
			if s.cur != nil {
				s.cur.cancel()
			}
			s.mu.Unlock()
		case agent.TypeShutdown:
			s.stopStep()
			logf("shutting down")
			return nil
		default:
			s.send(agent.TypeError, agent.Error{Msg: fmt.Sprintf("refused: a %s message from the host", t)})
		}
	}
}

// mount mounts the workspace, between steps only.
func (s *server) mount(m agent.Mount) {
	s.mu.Lock()
	busy := s.cur != nil
	s.mu.Unlock()
	if busy {
		s.send(agent.TypeError, agent.Error{Msg: "refused: a step is running"})
		return
	}
	if m.Workspace != "" {
		if err := ensureWorkspace(m.Workspace); err != nil {
			s.send(agent.TypeError, agent.Error{Msg: err.Error()})
			return
		}
	}
	if m.Root != "" {
		if _, err := mountRoot(m.Root, m.RootKey); err != nil {
			s.send(agent.TypeError, agent.Error{Msg: err.Error()})
			return
		}
	}
	s.send(agent.TypeOK, nil)
}

// startStep runs req in the background, or refuses it while a step runs.
func (s *server) startStep(req agent.Run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.send(agent.TypeError, agent.Error{Msg: "refused: a step is already running"})
		return
	}
	st := &step{out: s.sendOutput}
	done := make(chan struct{})
	s.cur, s.done = st, done
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				logf("panic in a step: %v\n%s", r, debug.Stack())
				powerOff()
			}
		}()
		ex, err := st.run(req)
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		if err != nil {
			e := agent.Error{Msg: err.Error()}
			var de *sandbox.DirError
			if errors.As(err, &de) {
				e.Kind = agent.KindDir
			}
			s.send(agent.TypeError, e)
			return
		}
		s.send(agent.TypeExit, ex)
	}()
}

// stopStep kills the running step, if any, and waits for its end.
func (s *server) stopStep() {
	s.mu.Lock()
	st, done := s.cur, s.done
	s.mu.Unlock()
	if st != nil {
		st.cancel()
		<-done
	}
}

func decodeStrict(p []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(p))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}
