// Package vmm is what the VM runtime asks of a virtual machine monitor
// (QEMU microvm, Firecracker): boot a guest from a kernel and the
// agent's initramfs, with block devices, an optional tap network device
// and the agent's channel, and hand back the agent's connection once
// the guest said Hello. One package per monitor implements [Monitor].
//
// What every monitor can give, and so all the runtime may use: virtio
// block devices (a file each, read-only or not), one virtio-net device
// on a tap, vCPUs and memory, the kernel command line, and one
// byte-stream channel to the agent (virtio-serial under QEMU, vsock
// under Firecracker). No shared file system: nothing of the host is
// visible in the guest but the drives' contents.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"

	"github.com/execd/execd/internal/sandbox/vm/agent"
	"github.com/execd/execd/internal/sandbox/vm/vmnet/guestnet"
)

// Spec is one virtual machine.
type Spec struct {
	// Kernel is an uncompressed kernel (vmlinux, ELF), booted by PVH.
	Kernel string
	// Initramfs is the cpio archive (compressed or not) with the agent as
	// /init.
	Initramfs string
	// Cmdline is added to the monitor's kernel command line (which
	// already has the console, what the monitor needs, and
	// [Spec.GuestCmdline]).
	Cmdline string
	// VCPUs and MemoryMiB size the machine; 0 means 1 and 512.
	VCPUs     int
	MemoryMiB int
	// Drives are the virtio block devices, in order. The guest finds a
	// drive by its ID (agent.Run's Workspace and Root fields).
	Drives []Drive
	// Net, when not nil, is the network device.
	Net *Net
	// AllowEmulation lets a monitor without usable KVM emulate the CPU
	// in software (QEMU TCG: 10 to 50 times slower; for development
	// and CI). Without it, a host without KVM is an error.
	AllowEmulation bool
	// EmulatedCPU is the CPU model under emulation; "" is every feature
	// the monitor can emulate (QEMU: max). QEMU's qemu64 boots 0.2 s
	// faster under TCG, but binaries built for x86-64-v2 or later fail
	// on it.
	EmulatedCPU string
	// ConsoleBytes bounds the kept end of the guest's console; 0 means
	// 64 KiB.
	ConsoleBytes int
	// Label, when set, labels the VM's monitor process on the host: in
	// its environment as [LabelEnv]=Label, which a janitor reads from
	// /proc/PID/environ after a crash (QEMU also gets -name). Nothing
	// else of the executor's environment but a PATH reaches the monitor.
	// Up to 200 printable characters without spaces or '='.
	Label string
	// Dir is a directory of the machine's for monitors that keep files
	// (Firecracker: its API and vsock sockets). QEMU keeps none: its
	// channel is a socketpair, its console a ring in memory.
	Dir string
}

// Drive is a virtio block device backed by a file on the host.
type Drive struct {
	// ID names the drive for the guest: 1 to 20 of A-Z a-z 0-9 _ -.
	// QEMU passes it as the virtio-blk serial, which the guest reads
	// from /sys/block/vdX/serial. A monitor without serials (Firecracker)
	// passes the mapping on the kernel command line instead.
	ID       string
	Path     string
	ReadOnly bool
	// Direct bypasses the host's page cache (QEMU cache=none, O_DIRECT):
	// for a file or device whose content the host changes while the VM
	// runs (a root slot re-pointed between steps). The file system
	// holding Path must support O_DIRECT (tmpfs may not).
	Direct bool
}

// Net is a virtio-net device on an existing tap device, and the
// guest's side of it, which the agent configures at boot (eth0).
type Net struct {
	Tap string // the host's tap device
	MAC string // "" lets the monitor choose
	// Address is the guest's IPv4 address and prefix; Gateway its
	// default route (optional); DNS its resolvers, written to each
	// step's /etc/resolv.conf (none: the image's own).
	Address netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
}

// GuestCmdline returns the kernel command line arguments by which every
// monitor tells the agent its network and drives: execd.ip, execd.gw,
// execd.dns, execd.mac (package guestnet), and execd.drives (the drive IDs in attachment order, for
// monitors that cannot give a drive a serial). Monitors add it to the
// command line.
func (s *Spec) GuestCmdline() string {
	var args []string
	if n := s.Net; n != nil && n.Address.IsValid() {
		args = append(args, guestnet.Config{Address: n.Address, Gateway: n.Gateway, DNS: n.DNS, MAC: n.MAC}.Cmdline())
	}
	if len(s.Drives) > 0 {
		ids := make([]string, len(s.Drives))
		for i, d := range s.Drives {
			ids[i] = d.ID
		}
		args = append(args, "execd.drives="+strings.Join(ids, ","))
	}
	return strings.Join(args, " ")
}

// Machine is a booted VM whose agent said Hello.
type Machine interface {
	// Agent is the connection to the guest's agent.
	Agent() *agent.Conn
	// Wait waits for the VM to end (the guest powered off, or Kill) and
	// returns the monitor's error, if any.
	Wait() error
	// Kill stops the VM at once. It is idempotent and safe to call
	// concurrently with Wait; Wait (or Done) tells when it is gone.
	Kill() error
	// Done is closed when the VM has ended.
	Done() <-chan struct{}
	// Console returns the end of the guest's console output, for error
	// messages.
	Console() string
}

// Monitor starts machines.
type Monitor interface {
	// Name is the monitor's name (qemu, firecracker).
	Name() string
	// Check reports whether machines can start here, with software
	// emulation or not; the error says what is missing and how to get
	// it (wrapping ErrNoKVM when only emulation is missing).
	Check(ctx context.Context, allowEmulation bool) error
	// Version is the monitor's version and how it would run machines,
	// e.g. "qemu 7.2.22 (tcg)".
	Version(ctx context.Context, allowEmulation bool) (string, error)
	// Start boots spec's VM and returns once the guest's agent said
	// Hello; ctx bounds the boot only. A VM that fails to boot is an
	// error quoting the end of its console, and leaves nothing behind.
	Start(ctx context.Context, spec Spec) (Machine, error)
}

// LabelEnv is the environment variable that carries [Spec.Label] in the
// monitor's process. The monitor's environment holds nothing else of
// the executor's but PATH: no secret of the executor reaches it.
const LabelEnv = "EXECD_VM"

// ErrNoKVM wraps the errors of a Start that would need software
// emulation when Spec.AllowEmulation is false.
var ErrNoKVM = errors.New("no usable KVM")

var (
	validID    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,20}$`)
	validLabel = regexp.MustCompile(`^[!-<>-~]{1,200}$`)
)

// Validate checks spec's fields that every monitor needs.
func (s *Spec) Validate() error {
	if s.Kernel == "" || s.Initramfs == "" {
		return errors.New("vm: the spec needs a kernel and an initramfs (executor install vm)")
	}
	if s.VCPUs < 0 || s.VCPUs > 64 || s.MemoryMiB < 0 {
		return fmt.Errorf("vm: %d vCPUs, %d MiB is not a machine", s.VCPUs, s.MemoryMiB)
	}
	if s.Label != "" && !validLabel.MatchString(s.Label) {
		return fmt.Errorf("vm: label %q: want up to 200 printable characters without spaces or '='", s.Label)
	}
	if s.Net != nil {
		if s.Net.Tap == "" {
			return errors.New("vm: the network device has no tap")
		}
		if a := s.Net.Address; a.IsValid() && !a.Addr().Is4() {
			return fmt.Errorf("vm: the guest's address %s is not IPv4", a)
		}
	}
	seen := map[string]bool{}
	for _, d := range s.Drives {
		if !validID.MatchString(d.ID) {
			return fmt.Errorf("vm: drive ID %q: want 1 to 20 of A-Z a-z 0-9 _ -", d.ID)
		}
		if seen[d.ID] {
			return fmt.Errorf("vm: two drives with the ID %q", d.ID)
		}
		seen[d.ID] = true
		if d.Path == "" {
			return fmt.Errorf("vm: drive %q has no file", d.ID)
		}
	}
	return nil
}

// CheckNotPVM reports a KVM that is PVM (kvm_pvm: nested virtualisation
// without hardware support), which boots only PVM-enabled guest kernels,
// not Debian's: every monitor's KVM check asks it.
func CheckNotPVM(device string) error {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return fmt.Errorf("KVM: %s is PVM (kvm_pvm), which boots only PVM guest kernels, not Debian's", device)
	}
	return nil
}
