// Package agent is the one byte-stream protocol between the executor (the
// host) and the agent that runs as init inside a job's virtual machine
// (the guest, cmd/execd-vm-agent). The stream is a virtio-serial port
// under QEMU and a vsock connection under Firecracker; the protocol does
// not care which.
//
// # Frames
//
// Every message is one frame: a type byte, a 4-byte big-endian payload
// length, then the payload. A payload is at most [MaxFrame] bytes; a
// control message (every type but output) at most [MaxControl] bytes
// of JSON. Output chunks carry raw bytes.
//
// # Conversation
//
//	guest: Hello{version, kernel}              first, once, after boot
//	host:  Mount{workspace}                    optional: mount the workspace now
//	guest: OK or Error{msg}
//	host:  Run{...}                            one step at a time
//	guest: Stdout/Stderr chunks ... Exit{code} or Error{msg}
//	host:  Cancel                              during a step: kill it now
//	host:  Shutdown                            sync, unmount, power off
//
// After a Cancel the guest still ends the step with Exit (or Error). The
// guest refuses anything else with an Error and stays up.
//
// The host never trusts the guest: [Conn] reads frames of bounded size
// into one reused buffer, writes output to the caller's writers as it
// arrives, and fails the step (never the process) on a malformed,
// oversized, unknown or out-of-order frame.
package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version; the guest sends it in its Hello and
// the host refuses any other.
const Version = 1

// Sizes bounding a frame's payload.
const (
	// MaxFrame bounds every payload.
	MaxFrame = 1 << 20
	// MaxControl bounds the payload of a message other than output.
	MaxControl = 64 << 10
	// MaxChunk is the size of the output chunks the guest sends.
	MaxChunk = 32 << 10
)

// Type is a frame's type byte.
type Type byte

// The frame types. Host to guest: Mount, Run, Cancel, Shutdown. Guest to
// host: Hello, OK, Stdout, Stderr, Exit, Error.
const (
	TypeHello    Type = 'H'
	TypeRun      Type = 'R'
	TypeCancel   Type = 'C'
	TypeShutdown Type = 'Q'
	TypeStdout   Type = 'o'
	TypeStderr   Type = 'e'
	TypeExit     Type = 'x'
	TypeError    Type = 'E'
	TypeMount    Type = 'M'
	TypeOK       Type = 'K'
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "Hello"
	case TypeRun:
		return "Run"
	case TypeCancel:
		return "Cancel"
	case TypeShutdown:
		return "Shutdown"
	case TypeStdout:
		return "Stdout"
	case TypeStderr:
		return "Stderr"
	case TypeExit:
		return "Exit"
	case TypeError:
		return "Error"
	case TypeMount:
		return "Mount"
	case TypeOK:
		return "OK"
	}
	return fmt.Sprintf("unknown(0x%02x)", byte(t))
}

// control reports whether t's payload is JSON bounded by MaxControl.
func (t Type) control() bool { return t != TypeStdout && t != TypeStderr }

// Hello is the guest's first message.
type Hello struct {
	Version int    `json:"version"`
	Kernel  string `json:"kernel,omitempty"` // the guest's uname -r
}

// Run asks the guest to run one step.
type Run struct {
	// Commands are joined into one /bin/sh script run with set -e, as
	// the docker runtime does.
	Commands []string `json:"commands"`
	// Env is NAME=value; PATH and HOME get defaults when absent.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory relative to /workspace; "" is
	// /workspace. A missing directory is an Error.
	Dir string `json:"dir,omitempty"`
	// User is "uid:gid", "uid", or a name in the root's /etc/passwd;
	// "" is root.
	User string `json:"user,omitempty"`
	// Workspace is the ID of the drive holding the workspace (ext4),
	// mounted at /workspace on first use; "" is none (a tmpfs).
	Workspace string `json:"workspace,omitempty"`
	// Root is the ID of the drive holding the step's root file system
	// (erofs or ext4, mounted read-only under a fresh writable overlay
	// for each step), or [RootNone] to run in the guest's own root.
	Root string `json:"root"`
	// RootKey, when not "", names the root drive's content (the image's
	// digest): a step whose RootKey is the last step's keeps the
	// guest's mount of the root and its cache. "" mounts the drive
	// afresh, as after the host re-pointed it.
	RootKey string `json:"rootKey,omitempty"`
}

// Mount asks the guest to mount the workspace drive at /workspace now
// (the host filled it and let go of it), rather than at the first Run.
type Mount struct {
	// Workspace is the workspace's drive, mounted at /workspace; ""
	// leaves the workspace alone.
	Workspace string `json:"workspace"`
	// Root, when not "", is a root drive mounted ahead of the step that
	// will use it (a machine of the warm pool warming the image the last
	// job used), under RootKey as in [Run].
	Root    string `json:"root,omitempty"`
	RootKey string `json:"rootKey,omitempty"`
}

// RootNone as [Run.Root] runs the step in the initramfs's root.
const RootNone = "none"

// Exit ends a step that ran.
type Exit struct {
	Code int `json:"code"`
	// OOMKilled: the guest's kernel killed a process of the step for
	// want of memory (the VM's memory is the job's).
	OOMKilled bool `json:"oomKilled,omitempty"`
	Canceled  bool `json:"canceled,omitempty"`
	// DiskFull: the step failed and the workspace had no space left.
	DiskFull bool `json:"diskFull,omitempty"`
}

// Error ends a step that could not run, or answers a refused message.
type Error struct {
	Msg string `json:"msg"`
	// Kind classifies the error for the host; "" is any other.
	Kind string `json:"kind,omitempty"`
}

// Kinds of [Error].
const (
	// KindDir: the step's dir is missing from the workspace, or not a
	// directory in it (the runtime's sandbox.DirError).
	KindDir = "dir"
)

// ProtocolError is what the host reports when the guest broke the
// protocol: the step (and the VM) must be failed.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "vm agent protocol: " + e.Msg }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, t Type, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("vm agent: frame of %d bytes exceeds %d", len(payload), MaxFrame)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// Reader reads frames into one reused buffer of at most MaxFrame bytes.
type Reader struct {
	r   io.Reader
	hdr [5]byte
	buf []byte
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next reads the next frame. The payload is valid until the next call.
// A frame of an unknown type, or longer than its type allows, is a
// *ProtocolError; a stream ending inside a frame is io.ErrUnexpectedEOF.
func (r *Reader) Next() (Type, []byte, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, nil, err
	}
	t := Type(r.hdr[0])
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if t.String()[0] == 'u' { // unknown
		return 0, nil, protoErr("unknown frame type 0x%02x", byte(t))
	}
	limit := uint32(MaxFrame)
	if t.control() {
		limit = MaxControl
	}
	if n > limit {
		return 0, nil, protoErr("%s frame of %d bytes exceeds %d", t, n, limit)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n, max(int(n), 4096))
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, r.buf, nil
}

// WriteMessage writes one control frame holding v as JSON (nil: an
// empty payload).
func WriteMessage(w io.Writer, t Type, v any) error {
	var p []byte
	if v != nil {
		var err error
		if p, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if len(p) > MaxControl {
		return fmt.Errorf("vm agent: %s message of %d bytes exceeds %d", t, len(p), MaxControl)
	}
	return WriteFrame(w, t, p)
}
