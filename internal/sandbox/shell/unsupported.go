//go:build !linux

package shell

import (
	"context"
	"errors"

	"github.com/execd/execd/internal/sandbox"
)

var errNotLinux = errors.New("shell: the shell runtime needs Linux namespaces and cgroups")

// CloseInheritedOnExec does nothing outside Linux.
func CloseInheritedOnExec() error { return nil }

// MaybeRunInit does nothing: there is no sandbox init outside Linux.
func MaybeRunInit() {}

// CheckInit fails: there is no sandbox init outside Linux.
func CheckInit(context.Context, string) error { return errNotLinux }

// Sandbox is a shell sandbox; outside Linux none can be prepared.
type Sandbox struct{}

// Run fails: outside Linux there is no shell sandbox.
func (*Sandbox) Run(context.Context, sandbox.Step, sandbox.Output) (sandbox.Result, error) {
	return sandbox.Result{}, errNotLinux
}

// Destroy does nothing.
func (*Sandbox) Destroy(context.Context) error { return nil }

func (r *Runtime) check(context.Context) error { return errNotLinux }

func (r *Runtime) prepare(context.Context, sandbox.Options) (sandbox.Sandbox, error) {
	return &Sandbox{}, errNotLinux
}

// clean has nothing to remove: outside Linux no sandbox was made.
func (r *Runtime) clean(context.Context, func(sandbox.Leftover) bool) error { return nil }
