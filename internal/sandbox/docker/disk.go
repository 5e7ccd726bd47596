package docker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
)

// A step can write to the host's disk in two places: its workspace
// (bounded by package hostdir) and its container's root file system.
// With runc, the root's writes go to the container's writable layer on
// dockerd's storage; docker bounds it (--storage-opt size) only for the
// overlay2 driver on xfs mounted with project quotas (pquota), and for
// btrfs and zfs. With gVisor they go to runsc's overlay, which
// --overlay2=root:memory keeps in the sandbox's memory, bounded by the
// memory limit. diskBound tells which applies on this host.

// diskBound is what Check learnt of whether a step's root file system
// writes are bounded.
type diskBound struct {
	known   bool
	bounded bool
	// layerQuota: runc containers get StorageOpt size (false for gVisor).
	layerQuota bool
	// why says what bounds the writes, or why nothing does and the fix.
	why string
}

// boundsDisk reports whether Options.DiskBytes bounds everything a step
// writes to the host's disk: the workspace and the container's root.
// It is known once Check ran.
func (r *Runtime) boundsDisk() bool {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	return r.disk.bounded
}

// DiskBound says what bounds a step's writes to its container's root
// file system, or why nothing does and how to fix it; "" before Check.
func (r *Runtime) DiskBound() string {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	return r.disk.why
}

// layerQuota reports whether step containers get a writable layer of
// the job's disk limit.
func (r *Runtime) layerQuota() bool {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	return r.disk.layerQuota
}

// checkDisk finds out, once, what bounds the root file system's writes.
func (r *Runtime) checkDisk(ctx context.Context, info system.Info) {
	r.checkMu.Lock()
	known := r.disk.known
	r.checkMu.Unlock()
	if known {
		return
	}
	var d diskBound
	if r.cfg.GVisor {
		d = gvisorDisk(info.Runtimes[r.cfg.GVisorRuntime])
	} else {
		var err error
		if d, err = r.probeLayerQuota(ctx, info); err != nil {
			return // try again at the next Check
		}
	}
	d.known = true
	r.checkMu.Lock()
	r.disk = d
	r.checkMu.Unlock()
}

// gvisorDisk: runsc keeps the root's writes in memory with
// --overlay2=root:memory (or all:memory).
func gvisorDisk(rt system.RuntimeWithStatus) diskBound {
	for _, a := range rt.Args {
		if v, ok := strings.CutPrefix(a, "--overlay2="); ok && strings.HasSuffix(v, ":memory") {
			return diskBound{bounded: true, why: "runsc keeps the root file system's writes in memory (" + a + "), within the job's memory limit"}
		}
	}
	return diskBound{why: "runsc keeps the root file system's writes on the host's disk, unbounded: register it with --overlay2=root:memory (run `executor install gvisor`)"}
}

// layerQuotaDrivers bound a container's writable layer with
// StorageOpt size, overlay2 only on xfs with project quotas.
var layerQuotaDrivers = []string{"overlay2", "btrfs", "zfs"}

// probeLayerQuota asks dockerd whether it bounds a container's writable
// layer: by creating (never starting) a container of a local image with
// StorageOpt size, which dockerd refuses when its storage cannot.
func (r *Runtime) probeLayerQuota(ctx context.Context, info system.Info) (diskBound, error) {
	unbounded := func(why string) diskBound {
		return diskBound{why: fmt.Sprintf("a step's writes to its container's root file system land on dockerd's storage unbounded (%s): "+
			"put dockerd's data-root (%s) on xfs mounted with -o pquota (overlay2), or use EXECUTOR_RUNTIME=gvisor", why, info.DockerRootDir)}
	}
	if !slices.Contains(layerQuotaDrivers, info.Driver) {
		return unbounded("storage driver " + info.Driver + " has no size option"), nil
	}
	images, err := r.cli.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return diskBound{}, err
	}
	if len(images) == 0 {
		// Nothing to probe with; the next Check tries again.
		return diskBound{}, errors.New("no local image")
	}
	resp, err := r.cli.ContainerCreate(ctx, &container.Config{Image: images[0].ID, Labels: map[string]string{labelManaged: "probe"}},
		&container.HostConfig{StorageOpt: map[string]string{"size": strconv.Itoa(64 << 20)}}, nil, nil, "")
	if err != nil {
		if strings.Contains(err.Error(), "storage-opt") || strings.Contains(err.Error(), "quota") {
			return unbounded(strings.TrimPrefix(err.Error(), "Error response from daemon: ")), nil
		}
		return diskBound{}, err
	}
	if err := r.cli.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true}); err != nil {
		r.cfg.Logger.Warn("docker: remove the storage probe container", "id", resp.ID, "err", err)
	}
	return diskBound{bounded: true, layerQuota: true, why: "dockerd bounds each step container's writable layer (" + info.Driver + " size option) to the job's disk limit"}, nil
}

// layerFull reports whether a step container's writable layer holds as
// much as the job's disk limit allows (what a step writing past it
// leaves).
func (s *Sandbox) layerFull(ctx context.Context, id string) bool {
	if !s.r.layerQuota() || s.opts.DiskBytes <= 0 {
		return false
	}
	c, _, err := s.r.cli.ContainerInspectWithRaw(ctx, id, true)
	return err == nil && c.SizeRw != nil && *c.SizeRw >= s.opts.DiskBytes-(1<<20)
}
