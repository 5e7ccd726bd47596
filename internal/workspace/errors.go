package workspace

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"unicode/utf8"
)

// Error is a failure to prepare a workspace, in words for the job's user,
// and whether trying the job again can help.
type Error struct {
	// Msg says what went wrong and why, without the commands run (they
	// are in the job's log).
	Msg string
	// Permanent is set when the job asks for something that does not
	// exist or is not allowed: a commit or repository the coordinator
	// does not have, a path outside the workspace, a file never
	// uploaded. No retry of the job can succeed.
	Permanent bool
	// Err is the cause, for errors.Is and errors.As; it may be nil.
	Err error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a failure that no retry of the job
// can fix (see [Error.Permanent]).
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// ErrInvalidPath marks errors about a path of the job (a file, the
// repository directory) that is not a path inside the workspace: the job
// is wrong, and retrying it cannot help.
var ErrInvalidPath = errors.New("invalid path in the job")

// pathError is an error about a path of the job; it matches ErrInvalidPath.
type pathError struct{ err error }

func (e *pathError) Error() string        { return e.err.Error() }
func (e *pathError) Unwrap() error        { return e.err }
func (e *pathError) Is(target error) bool { return target == ErrInvalidPath }

func invalidPath(format string, args ...any) error {
	err := &pathError{fmt.Errorf(format, args...)}
	return &Error{Msg: err.Error(), Permanent: true, Err: err}
}

// wrapf prefixes err's message with context, keeping its classification:
// a *Error stays one (with the longer message), so that callers that
// check [IsPermanent] see through the context added.
func wrapf(err error, format string, args ...any) error {
	prefix := fmt.Sprintf(format, args...)
	var e *Error
	if errors.As(err, &e) {
		return &Error{Msg: prefix + ": " + err.Error(), Permanent: e.Permanent, Err: err}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// stderrTail is the last meaningful line of what a failed command wrote
// to its standard error, when the runner kept it (an [exec.ExitError]'s
// Stderr, see [CommandRunner]); "" when there is none.
//
// Git writes its progress with carriage returns and ends with the line
// that says why it failed ("fatal: ..." or "error: ..."): that line is
// preferred over whatever followed it.
func stderrTail(err error) string {
	var ee *exec.ExitError
	if !errors.As(err, &ee) || len(ee.Stderr) == 0 {
		return ""
	}
	lines := strings.FieldsFunc(string(ee.Stderr), func(r rune) bool { return r == '\n' || r == '\r' })
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if last == "" {
			last = l
		}
		if strings.HasPrefix(l, "fatal: ") || strings.HasPrefix(l, "error: ") {
			last = l
			break
		}
	}
	return shorten(strings.TrimPrefix(strings.TrimPrefix(last, "fatal: "), "error: "))
}

// shorten cuts s to a length that fits in a failure message.
func shorten(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
