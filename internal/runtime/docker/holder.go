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
// to join a bridge). The holder is started with the job's first step, in
// that step's image, and removed by Destroy.
//
// gVisor takes a namespace's interfaces into the sandbox's own network
// stack, so the steps of a gvisor job with a network cannot share one:
// each step's container joins the job's bridge network itself.

const (
	labelRole   = "execd.role" // roleHolder on the holder
	roleHolder  = "network"
	hostGateway = "host.docker.internal:host-gateway"
)

// networkMode returns the network mode of the next step's container,
// starting the holder (in image) when the steps share one.
func (s *Sandbox) networkMode(ctx context.Context, image string) (container.NetworkMode, error) {
	s.mu.Lock()
	netID, holder := s.networkID, s.holderID
	s.mu.Unlock()
	own := container.NetworkMode("none")
	if netID != "" {
		own = container.NetworkMode(netID)
	}
	if s.r.cfg.GVisor && netID != "" {
		return own, nil
	}
	if holder == "" {
		var err error
		if holder, err = s.startHolder(ctx, image, own); err != nil {
			return "", err
		}
	}
	return container.NetworkMode("container:" + holder), nil
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
