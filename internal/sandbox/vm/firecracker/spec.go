package firecracker

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// A Spec describes one micro-VM.
type Spec struct {
	// Kernel is the guest kernel (an uncompressed vmlinux on x86_64, as
	// Firecracker requires); Initrd the initramfs the guest boots from
	// (its init is the guest agent); Cmdline the kernel's command line.
	Kernel, Initrd, Cmdline string

	// VCPUs is 1 or an even number up to 32, as the reference executor
	// requires for Firecracker; MemoryMiB the guest's memory.
	VCPUs     int
	MemoryMiB int

	// Drives are the guest's block devices, attached in this order
	// (/dev/vda, /dev/vdb, ... in a guest that probes them in order). None
	// is the root device: the guest boots from Initrd.
	Drives []Drive

	// Tap is the host's tap device for the guest's one network interface
	// (eth0), "" for no network; MAC its guest address, "" to let
	// Firecracker choose.
	Tap, MAC string

	// RxBytesPerSec and TxBytesPerSec limit what the guest receives and
	// sends on its network interface, in bytes a second; 0 is unlimited.
	RxBytesPerSec, TxBytesPerSec int64

	// AgentPort is the vsock port of the guest agent; 0 means no vsock
	// device (and [Machine.Agent] fails).
	AgentPort uint32

	// AgentDials says the guest agent connects to the host on AgentPort
	// (a guest-initiated connection, which Firecracker forwards to the
	// Unix socket <Dir>/vsock.sock_<AgentPort> that Start listens on)
	// instead of listening on AgentPort in the guest (a host-initiated
	// connection with the CONNECT handshake).
	AgentDials bool

	// Label is put in the firecracker process's environment as
	// EXECD_VM=<Label>, for a janitor to find it after its executor died
	// (as vmm.Spec.Label). Nothing else of the executor's environment is
	// passed on: the process gets only that and a fixed PATH.
	Label string

	// Dir holds the VM's sockets (api.sock, vsock.sock) and logs
	// (console.log, firecracker.log). It is made if missing. Its path must
	// be short: a Unix socket's path has at most 107 bytes.
	Dir string
}

// A Drive is a block device of the guest, backed by a host file.
type Drive struct {
	// ID names the drive in the API ([Machine.UpdateDrive]): ASCII
	// letters, digits and underscores.
	ID       string
	Path     string
	ReadOnly bool
}

const (
	maxVCPUs = 32     // Firecracker's limit
	maxUnix  = 107    // bytes of a Unix socket path (sun_path less its NUL)
	guestCID = 3      // the guest's vsock context ID; 2 is the host
	ifaceID  = "eth0" // the one network interface
)

// Socket and log file names in Spec.Dir.
const (
	apiSocket   = "api.sock"
	vsockSocket = "vsock.sock"
	consoleLog  = "console.log"
	vmmLog      = "firecracker.log"
)

// validate checks what Firecracker would refuse, or what this package
// does not support, before a process is started.
func (s *Spec) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Kernel == "" {
		bad("no kernel")
	}
	if s.VCPUs != 1 && (s.VCPUs < 2 || s.VCPUs > maxVCPUs || s.VCPUs%2 != 0) {
		bad("%d vCPUs: Firecracker VMs have 1 or an even number of vCPUs, at most %d", s.VCPUs, maxVCPUs)
	}
	if s.MemoryMiB <= 0 {
		bad("memory of %d MiB: must be positive", s.MemoryMiB)
	}
	seen := map[string]bool{}
	for i, d := range s.Drives {
		switch {
		case !validID(d.ID):
			bad("drive %d: ID %q: must be ASCII letters, digits or underscores", i, d.ID)
		case seen[d.ID]:
			bad("drive %d: ID %q used twice", i, d.ID)
		}
		seen[d.ID] = true
		if d.Path == "" {
			bad("drive %q: no path", d.ID)
		}
	}
	if s.Tap == "" {
		if s.MAC != "" || s.RxBytesPerSec != 0 || s.TxBytesPerSec != 0 {
			bad("a MAC address or bandwidth limit without a tap device")
		}
	} else if len(s.Tap) > 15 || strings.ContainsAny(s.Tap, "/ \t\n") {
		bad("tap %q: not a network interface name", s.Tap)
	}
	if s.MAC != "" {
		if hw, err := net.ParseMAC(s.MAC); err != nil || len(hw) != 6 {
			bad("MAC %q: not a 6-byte Ethernet address", s.MAC)
		}
	}
	if s.AgentDials && s.AgentPort == 0 {
		bad("AgentDials without an AgentPort")
	}
	if strings.ContainsRune(s.Label, 0) {
		bad("Label has a NUL byte")
	}
	if s.RxBytesPerSec < 0 || s.TxBytesPerSec < 0 {
		bad("negative bandwidth limit")
	}
	if s.Dir == "" {
		bad("no Dir")
	} else if p := filepath.Join(s.Dir, vsockSocket+"_4294967295"); len(p) > maxUnix {
		bad("Dir %q: too long for a Unix socket path (%s is %d bytes, at most %d)", s.Dir, p, len(p), maxUnix)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("firecracker: invalid spec: %w", err)
	}
	return nil
}

// absolute returns a copy of s with absolute host paths (Firecracker
// resolves relative ones against its own working directory) and the MAC
// address in the colon-separated form Firecracker parses.
func (s Spec) absolute() (Spec, error) {
	if s.MAC != "" {
		hw, err := net.ParseMAC(s.MAC)
		if err != nil {
			return s, err
		}
		s.MAC = hw.String()
	}
	var err error
	abs := func(p *string) {
		if *p != "" && err == nil {
			*p, err = filepath.Abs(*p)
		}
	}
	abs(&s.Kernel)
	abs(&s.Initrd)
	abs(&s.Dir)
	s.Drives = append([]Drive(nil), s.Drives...)
	for i := range s.Drives {
		abs(&s.Drives[i].Path)
	}
	return s, err
}

// agentSocket is the Unix socket Firecracker forwards the guest's
// connections to AgentPort to, "" when the guest does not dial.
func (s *Spec) agentSocket() string {
	if !s.AgentDials {
		return ""
	}
	return filepath.Join(s.Dir, fmt.Sprintf("%s_%d", vsockSocket, s.AgentPort))
}

func validID(id string) bool {
	if id == "" {
		return false
	}
	for _, c := range id {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// instanceID makes Firecracker's --id (letters, digits and hyphens, 1 to 64
// of them) from the VM's directory name, so that `ps` tells VMs apart.
func instanceID(dir string) string {
	id := []byte(filepath.Base(dir))
	for i, c := range id {
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			id[i] = '-'
		}
	}
	if len(id) > 64 {
		id = id[len(id)-64:]
	}
	if strings.Trim(string(id), "-") == "" {
		return "execd-vm"
	}
	return string(id)
}
