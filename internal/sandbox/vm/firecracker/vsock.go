package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Agent returns a byte stream to the guest agent over vsock.
//
// When the guest agent listens (Spec.AgentDials false), it is a
// connection to the vsock device's Unix socket on which Firecracker's
// host-initiated handshake ("CONNECT <port>\n", answered
// "OK <host port>\n") has succeeded. Firecracker closes the connection
// when nothing listens on the port in the guest, as while it boots: Agent
// then tries again until ctx ends or the VM exits.
//
// When the guest agent dials (Spec.AgentDials), Agent waits for its next
// connection, until ctx ends or the VM exits. Call it from one goroutine
// at a time.
func (m *Machine) Agent(ctx context.Context) (net.Conn, error) {
	if m.spec.AgentPort == 0 {
		return nil, errors.New("firecracker: the VM has no vsock device (Spec.AgentPort is 0)")
	}
	ctx, cancel := m.bind(ctx)
	defer cancel()
	if m.agentLn != nil {
		return m.acceptAgent(ctx)
	}
	path := filepath.Join(m.spec.Dir, vsockSocket)
	backoff := 5 * time.Millisecond
	for {
		conn, err := dialAgent(ctx, path, m.spec.AgentPort)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, errNotListening) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("firecracker: connecting to the guest agent on vsock port %d: %w (last: %v)", m.spec.AgentPort, context.Cause(ctx), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// errNotListening marks a failure worth another try: the socket is not
// there yet, or Firecracker closed the connection because nothing
// listens on the port in the guest yet.
var errNotListening = errors.New("guest agent not listening")

// dialAgent does one host-initiated vsock connection.
func dialAgent(ctx context.Context, path string, port uint32) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errNotListening, err)
	}
	// Unblock the handshake when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	line, err := handshake(conn, port)
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("firecracker: vsock handshake: %w", context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			return nil, fmt.Errorf("%w: Firecracker closed the connection", errNotListening)
		}
		return nil, fmt.Errorf("firecracker: vsock handshake: %w", err)
	}
	if _, ok := parseOK(line); !ok {
		conn.Close()
		return nil, fmt.Errorf("firecracker: vsock handshake: answer %q, want \"OK <port>\"", line)
	}
	return conn, nil
}

// maxHandshake bounds the answer line; "OK 4294967295\n" is 14 bytes.
const maxHandshake = 32

// handshake sends the CONNECT line and reads the answer line byte by
// byte, so that nothing the guest sends after it is consumed.
func handshake(conn net.Conn, port uint32) (string, error) {
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		return "", err
	}
	var line []byte
	b := make([]byte, 1)
	for len(line) < maxHandshake {
		if _, err := io.ReadFull(conn, b); err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("answer longer than %d bytes: %q", maxHandshake, line)
}

// parseOK parses "OK <host port>".
func parseOK(line string) (uint32, bool) {
	rest, ok := strings.CutPrefix(line, "OK ")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 32)
	return uint32(n), err == nil
}

// acceptAgent waits for the guest's connection to AgentPort.
func (m *Machine) acceptAgent(ctx context.Context) (net.Conn, error) {
	m.agentLn.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { m.agentLn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn, err := m.agentLn.Accept()
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = context.Cause(ctx)
		case errors.Is(err, net.ErrClosed): // closed when the process was reaped
			<-m.done
			err = errExited
		}
		return nil, fmt.Errorf("firecracker: waiting for the guest agent to connect to vsock port %d: %w", m.spec.AgentPort, err)
	}
	if !stop() { // ctx ended meanwhile
		conn.Close()
		return nil, fmt.Errorf("firecracker: waiting for the guest agent to connect to vsock port %d: %w", m.spec.AgentPort, context.Cause(ctx))
	}
	return conn, nil
}
