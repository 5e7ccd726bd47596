package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Cmd is a command an [Installer] runs.
type Cmd struct {
	Name string
	Args []string
	// Env is added to the installer's environment (NAME=value).
	Env []string
	// Dir is the command's working directory; "" is the installer's.
	Dir string
	// Log is the file that a started command's output is appended to
	// ([Runner.Start] only).
	Log string
}

func command(name string, args ...string) Cmd { return Cmd{Name: name, Args: args} }

// String returns the command as a shell would read it.
func (c Cmd) String() string {
	words := append(append(append([]string(nil), c.Env...), c.Name), c.Args...)
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n\"'\\$`{}*?;&|<>()") {
			words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	s := strings.Join(words, " ")
	if c.Log != "" {
		s += " >>" + c.Log + " 2>&1 &"
	}
	return s
}

// Runner runs an [Installer]'s commands. Tests record them with a fake.
type Runner interface {
	// Run runs cmd to completion and returns its combined output. A
	// command that ran and failed returns an error wrapping an
	// *exec.ExitError.
	Run(ctx context.Context, cmd Cmd) ([]byte, error)
	// Start starts cmd in the background, in a session of its own with
	// its output appended to cmd.Log, and returns without waiting: the
	// process outlives the installer.
	Start(ctx context.Context, cmd Cmd) error
}

// ExecRunner runs commands on this host.
type ExecRunner struct{}

// Run implements [Runner].
func (ExecRunner) Run(ctx context.Context, c Cmd) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %w: %s", c, err, lastLines(out.String(), 10))
	}
	return out.Bytes(), nil
}

// Start implements [Runner].
func (ExecRunner) Start(_ context.Context, c Cmd) error {
	log, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the log of %s: %w", c.Name, err)
	}
	defer log.Close()
	cmd := exec.Command(c.Name, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c, err)
	}
	return cmd.Process.Release()
}

// lastLines returns the last n lines of s, trimmed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// exitedNonZero reports whether err is that of a command that ran and
// failed.
func exitedNonZero(err error) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit)
}
