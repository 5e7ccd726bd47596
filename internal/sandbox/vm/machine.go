package vm

import (
	"context"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
)

// What the runtime needs of a virtual machine monitor (QEMU, Firecracker)
// and of the agent in the guest. The monitors' packages implement them
// through the adapters in monitors.go; tests use fakes.

// monitor boots machines.
type monitor interface {
	// Name is "qemu" or "firecracker".
	Name() string
	// Check reports whether machines can boot here; the error says how
	// to fix what is missing.
	Check(ctx context.Context) error
	// Version is the monitor's version, and its acceleration.
	Version(ctx context.Context) (string, error)
	// Emulated reports whether machines would run in software
	// emulation, not on KVM.
	Emulated() bool
	// Boot starts a machine and returns once its agent said hello.
	Boot(ctx context.Context, spec machineSpec) (machine, error)
}

// machineSpec is what a machine is booted with.
type machineSpec struct {
	// Name labels the machine's process for the janitor (see janitor.go).
	Name string
	// Dir holds the machine's sockets and console log.
	Dir         string
	VCPUs       int
	MemoryBytes int64
	// Workspace is the workspace's disk image (read-write); the guest
	// mounts it only when told, after the host filled it.
	Workspace string
	// Root is the root slot's device (read-only), which the host points
	// at each step's image in turn.
	Root string
	// Net is the machine's network interface; nil for none.
	Net *vmm.Net
	// Bytes per second the machine may receive and send; 0 for no limit.
	RxBytesPerSec, TxBytesPerSec int64
}

// machine is a booted machine.
type machine interface {
	Guest() guest
	// Alive reports whether the machine still runs.
	Alive() bool
	// Kill stops the machine at once and waits until it is gone.
	Kill() error
	// Console is the end of the machine's console output, for errors.
	Console() string
}

// guest is the agent in a machine.
type guest interface {
	// MountWorkspace mounts the workspace disk at /workspace, after the
	// host filled and released it.
	MountWorkspace(ctx context.Context) error
	// WarmRoot mounts the root slot's image (named by key) ahead of the
	// step that will use it.
	WarmRoot(ctx context.Context, key string) error
	// Run runs a step as the docker runtime would: in the root slot's
	// image (Root), as its user, in /workspace/<Dir>; a Dir that is not
	// a directory of the workspace is a *sandbox.DirError. When ctx ends
	// the step's processes are killed before Run returns ctx's error.
	Run(ctx context.Context, st guestStep, out sandbox.Output) (sandbox.Result, error)
}

// guestStep is a step as the guest runs it.
type guestStep struct {
	Commands []string
	// Env is the image's environment, then the step's.
	Env []string
	Dir string
	// User is the image's user ("" for root).
	User string
	// RootKey names the root slot's image (its digest): the guest keeps
	// the root mounted when a step's key is the last step's.
	RootKey string
}
