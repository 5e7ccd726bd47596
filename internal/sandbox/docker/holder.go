package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// A job's steps share one network namespace, held by a container that
// does nothing (the holder): each step's container joins it
// (--network container:<holder>) instead of getting a namespace of its
// own, which dockerd makes slowly (about 80 ms for --network none, more
// to join a bridge). The job's first step does not wait for it: it runs
// in a namespace of its own, as a bare `docker run` would, and once that
// step's container has started (so as not to slow its start), the holder
// starts beside it, in that step's image, for the steps after. Destroy
// removes the holder.
//
// gVisor takes a namespace's interfaces into the sandbox's own network
// stack, so the steps of a gvisor job with a network cannot share one:
// each step's container joins the job's bridge network itself.

const (
	labelRole   = "execd.role" // roleHolder on the holder
	roleHolder  = "network"
	hostGateway = "host.docker.internal:host-gateway"
)

// networkMode returns the network mode of the next step's container: the
// holder's, started now if it is not running; or, for the job's first
// step, the job's own network, with startLater set: the caller must then
// call s.holderAfterFirstStep once the step's container started, or
// failed to.
func (s *Sandbox) networkMode(ctx context.Context, image string) (mode container.NetworkMode, startLater bool, err error) {
	s.mu.Lock()
	netID, holder, starting := s.networkID, s.holderID, s.holderStarting
	own := container.NetworkMode("none")
	if netID != "" {
		own = container.NetworkMode(netID)
	}
	if s.r.cfg.GVisor && netID != "" {
		s.mu.Unlock()
		return own, false, nil
	}
	if holder == "" && starting == nil && !s.holderTried {
		if s.opts.Steps == 1 {
			// No step after this one to share the namespace with: a
			// holder would only cost a container (a whole sandbox under
			// gVisor). Should another step come all the same, it starts
			// the holder.
			s.holderTried = true
			s.mu.Unlock()
			return own, false, nil
		}
		s.holderStarting, s.holderTried = make(chan struct{}), true
		s.mu.Unlock()
		return own, true, nil
	}
	s.mu.Unlock()
	if starting != nil {
		select {
		case <-starting:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
		s.mu.Lock()
		holder = s.holderID
		s.mu.Unlock()
	}
	if holder == "" {
		if holder, err = s.startHolder(ctx, image, own); err != nil {
			return "", false, err
		}
	}
	return container.NetworkMode("container:" + holder), false, nil
}

// holderAfterFirstStep starts the holder in the background (in image,
// with the network mode the first step had) when started is true; else
// the next step starts it.
func (s *Sandbox) holderAfterFirstStep(ctx context.Context, image string, network container.NetworkMode, started bool) {
	s.mu.Lock()
	done := s.holderStarting
	s.mu.Unlock()
	finish := func() {
		s.mu.Lock()
		s.holderStarting = nil
		s.mu.Unlock()
		close(done)
	}
	if !started {
		finish()
		return
	}
	go func() {
		defer finish()
		if _, err := s.startHolder(context.WithoutCancel(ctx), image, network); err != nil {
			s.log.Debug("the container holding the job's network did not start; the next step starts it", "err", err)
		}
	}()
}

// startHolder starts the container holding the job's network namespace.
// It is not interrupted by ctx, which would leave a container half made:
// when ctx ends meanwhile, the holder is kept for the next step and ctx's
// error returned.
func (s *Sandbox) startHolder(ctx context.Context, image string, network container.NetworkMode) (string, error) {
	stepCtx := ctx
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	labels := make(map[string]string, len(s.labels)+1)
	for k, v := range s.labels {
		labels[k] = v
	}
	labels[labelRole] = roleHolder
	init := true
	hc := &container.HostConfig{
		NetworkMode: network,
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
		Init:        &init,
		Runtime:     s.r.ociRuntime(),
		LogConfig:   container.LogConfig{Type: "none"},
	}
	if s.r.cfg.AddHostGateway && !network.IsNone() {
		hc.ExtraHosts = []string{hostGateway}
	}
	cfg := &container.Config{
		Image: image,
		// Waits for input that never comes: stdin stays open, unattached.
		Entrypoint: []string{"/bin/sh", "-c", "read _"},
		Cmd:        []string{},
		OpenStdin:  true,
		Labels:     labels,
	}
	name := "execd-" + safeName(s.opts.JobID) + "-network-" + randomHex(3)
	created, err := s.r.cli.ContainerCreate(ctx, cfg, hc, nil, nil, name)
	if err != nil {
		return "", err
	}
	if err := s.r.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		s.removeContainer(ctx, created.ID)
		return "", err
	}
	s.mu.Lock()
	destroyed := s.destroyed
	if !destroyed {
		s.holderID = created.ID
	}
	s.mu.Unlock()
	if destroyed {
		s.removeContainer(ctx, created.ID)
		return "", fmt.Errorf("the sandbox was destroyed")
	}
	if err := stepCtx.Err(); err != nil {
		return "", err
	}
	return created.ID, nil
}

// dropDeadHolder removes the holder when it no longer runs, so that the
// next step starts another, and reports whether it did.
func (s *Sandbox) dropDeadHolder(ctx context.Context) bool {
	s.mu.Lock()
	holder := s.holderID
	s.mu.Unlock()
	if holder == "" {
		return false
	}
	inspect, err := s.r.cli.ContainerInspect(ctx, holder)
	if err == nil && inspect.State != nil && inspect.State.Running {
		return false
	}
	if err != nil && !client.IsErrNotFound(err) {
		return false
	}
	s.log.Warn("the container holding the job's network stopped; starting another", "container", holder)
	s.removeContainer(ctx, holder)
	s.mu.Lock()
	if s.holderID == holder {
		s.holderID = ""
	}
	s.mu.Unlock()
	return true
}
