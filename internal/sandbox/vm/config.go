package vm

import (
	"cmp"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/vm/qemu"
	"github.com/execd/execd/internal/sandbox/vm/rootfs"
	"github.com/execd/execd/internal/sandbox/vm/vmnet"
)

// Config configures the micro-VM runtime.
type Config struct {
	// Owner is the executor's name, in the labels of its machines.
	Owner string
	// Dir holds the machines' files (disk images, sockets, consoles): a
	// directory of the executor's own, which only root can reach and
	// which the workspace janitor removes after a crash.
	Dir string
	// Machine is the shape of the warm pool's machines: the executor's
	// job limits (CPUs, MemoryBytes, DiskBytes) and network. A job of
	// another shape gets a machine booted for it.
	Machine sandbox.Options
	// WarmPool is how many machines wait booted for the next jobs
	// (EXECUTOR_VM_WARM_POOL); 0 boots each job's when it starts.
	WarmPool int
	// Bytes per second a machine may receive and send
	// (EXECUTOR_FIRECRACKER_BANDWIDTH_INGRESS, _EGRESS); 0: no limit.
	BandwidthIngress, BandwidthEgress int64
	// Monitor is "auto" (Firecracker where it can run, else QEMU),
	// "firecracker" or "qemu" (EXECUTOR_VM_MONITOR).
	Monitor string
	// AllowEmulation lets QEMU run machines without KVM, in software
	// (EXECUTOR_VM_ALLOW_EMULATION).
	AllowEmulation bool
	// Assets is where `executor install vm` put the guest; its images/
	// holds the root file system images.
	Assets string
	// Firewall is the jobs' network policy; nil when jobs get no network.
	Firewall *netpolicy.Firewall
	// RegistryMirrors and RegistryAuth are the executor's
	// (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL, EXECUTOR_DOCKER_AUTH_CONFIG).
	RegistryMirrors []string
	RegistryAuth    map[string]string
	Logger          *slog.Logger

	// noMonitor says why no monitor can run here, when none can.
	noMonitor string
}

// New returns the micro-VM runtime of cfg. What cannot run here is
// reported by Check.
func New(cfg Config) *Runtime {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	a := assets{dir: cfg.Assets}
	var m monitor
	q := &qemuMonitor{q: &qemu.Monitor{}, assets: a, allowEmulation: cfg.AllowEmulation}
	switch cfg.Monitor {
	case "", "auto", "qemu":
		m = q
	default:
		cfg.noMonitor = fmt.Sprintf("EXECUTOR_VM_MONITOR=%s: not in this build; use qemu", cfg.Monitor)
	}
	var images imageSource
	cache, err := rootfs.New(rootfs.Config{Dir: filepath.Join(cfg.Assets, "images"), RegistryMirrors: cfg.RegistryMirrors, Auth: cfg.RegistryAuth, Logger: cfg.Logger})
	if err != nil {
		m, cfg.noMonitor = nil, "the image cache: "+err.Error()
	} else {
		images = cacheImages{cache}
	}
	var nets networks
	if cfg.Firewall != nil {
		nets = tapNetworks{vmnet.Config{
			Firewall:  cfg.Firewall,
			Bandwidth: vmnet.Bandwidth{Ingress: cfg.BandwidthIngress, Egress: cfg.BandwidthEgress},
			Logger:    cfg.Logger,
		}}
	}
	return newRuntime(cfg, m, images, nets)
}

// newRuntime returns a runtime with the given parts; nets is nil when
// jobs get no network.
func newRuntime(cfg Config, m monitor, images imageSource, nets networks) *Runtime {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if m == nil && cfg.noMonitor == "" {
		cfg.noMonitor = "no virtual machine monitor"
	}
	return &Runtime{cfg: cfg, monitor: m, images: images, nets: nets}
}
