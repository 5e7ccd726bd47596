package vm

import (
	"cmp"
	"log/slog"

	"github.com/execd/execd/internal/sandbox"
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
	Logger                            *slog.Logger

	// noMonitor says why no monitor can run here, when none can.
	noMonitor string
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
