package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/execd/execd/internal/phase"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/dockerconfig"
	"github.com/execd/execd/internal/sandbox/hostdir"
)

const (
	// stopGrace is how long a cancelled step's container has between
	// SIGTERM and SIGKILL.
	stopGrace = 2 * time.Second
	// maxScriptArg is the longest script passed as an argument of sh -c
	// (Linux limits one argument to 128 KiB); longer ones are copied into
	// the container as scriptPath.
	maxScriptArg = 128<<10 - 1
	scriptPath   = "/.execd-step.sh"
	// cleanupTimeout bounds the removal of a sandbox's containers and
	// network, which outlives the job's context.
	cleanupTimeout = time.Minute
	// gvisorTasks is the allowance for gVisor's own host tasks in a
	// sandbox's process limit.
	gvisorTasks = 64
)

// Sandbox is one job's docker sandbox: its network, and a container per
// step.
//
// Run must not be called concurrently (see [sandbox.Sandbox]); Destroy may
// be called at any time, from any goroutine.
type Sandbox struct {
	r    *Runtime
	log  *slog.Logger
	opts sandbox.Options // Prepare's, the workspace's symbolic links resolved
	id   string          // random, in names and the execd.sandbox label
	// auths are the credentials images are pulled with: registry ->
	// base64 user:password.
	auths  map[string]string
	labels map[string]string
	// ws is the job's workspace; nil if Prepare failed before making it.
	ws *hostdir.Workspace

	mu        sync.Mutex
	prepared  bool
	destroyed bool
	// The job's network; empty for sandbox.NetworkNone.
	networkID, networkName, bridge string
	// holderID is the container whose network namespace the steps join,
	// once the first step started it (see [Sandbox.networkMode]);
	// holderStarting is closed when its start in the background ends, and
	// holderTried is set once that start began.
	holderID       string
	holderStarting chan struct{}
	holderTried    bool
	// removing counts the step containers being removed in the
	// background; Destroy waits for them.
	removing sync.WaitGroup
}

// Pull makes image available, pulling it when it is missing, with
// progress written to out. See [sandbox.Puller].
func (s *Sandbox) Pull(ctx context.Context, image string, out io.Writer) error {
	if err := s.usable(); err != nil {
		return err
	}
	_, err := s.r.ensureImage(ctx, image, s.auths, out, true)
	return err
}

func (s *Sandbox) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.prepared || s.destroyed {
		return errors.New("docker: sandbox failed to prepare or was destroyed")
	}
	return nil
}

// Run runs step in a new container of its image. See [sandbox.Sandbox]
// and the package documentation.
func (s *Sandbox) Run(ctx context.Context, step sandbox.Step, out sandbox.Output) (sandbox.Result, error) {
	if err := s.usable(); err != nil {
		return sandbox.Result{}, err
	}
	stdout, stderr := orDiscard(out.Stdout), orDiscard(out.Stderr)
	if err := sandbox.CheckDir(s.opts.Workspace, step.Dir); err != nil {
		return sandbox.Result{}, fmt.Errorf("docker: step %q: %w", step.Key, err)
	}
	cfg, hostCfg, script, err := s.containerSpec(step)
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("docker: step %q: %w", step.Key, err)
	}
	endCheck := phase.Start(ctx, phase.ImageCheck)
	ref, err := s.r.ensureImage(ctx, step.Image, s.auths, stderr, false)
	endCheck()
	if err != nil {
		return sandbox.Result{}, err
	}
	cfg.Image = ref
	res, err := s.runContainer(ctx, step, cfg, hostCfg, script, stdout, stderr)
	if err != nil && ctx.Err() == nil && s.dropDeadHolder(ctx) {
		// The container holding the job's network stopped: start another
		// and try again.
		res, err = s.runContainer(ctx, step, cfg, hostCfg, script, stdout, stderr)
	}
	return res, err
}

// runContainer creates the step's container, runs it and removes it.
func (s *Sandbox) runContainer(ctx context.Context, step sandbox.Step, cfg *container.Config, hostCfg *container.HostConfig,
	script []byte, stdout, stderr io.Writer) (sandbox.Result, error) {
	netMode, holderLater, err := s.networkMode(ctx, cfg.Image)
	if err != nil {
		return s.failed(ctx, err, "starting the container that holds the job's network")
	}
	var onStart func() // called once the container started
	if holderLater {
		holderStarted := false
		onStart = func() {
			holderStarted = true
			s.holderAfterFirstStep(ctx, cfg.Image, netMode, true)
		}
		defer func() {
			if !holderStarted {
				s.holderAfterFirstStep(ctx, cfg.Image, netMode, false)
			}
		}()
	}
	hc := *hostCfg
	hc.NetworkMode = netMode
	if !netMode.IsContainer() && s.r.cfg.AddHostGateway && !netMode.IsNone() {
		hc.ExtraHosts = []string{hostGateway}
	}
	name := "execd-" + safeName(s.opts.JobID) + "-" + safeName(step.Key) + "-" + randomHex(3)
	// Not interrupted by ctx: a request abandoned midway may still make
	// the container, out of the sandbox's sight.
	end := phase.Start(ctx, phase.ContainerCreate)
	created, err := s.r.cli.ContainerCreate(context.WithoutCancel(ctx), cfg, &hc, nil, nil, name)
	end()
	if err != nil {
		return s.failed(ctx, err, "creating the container of step "+strconv.Quote(step.Key))
	}
	for _, w := range created.Warnings {
		s.log.Debug("container created with a warning", "step", step.Key, "warning", w)
	}
	defer func() {
		if ctx.Err() != nil {
			// A stopped step's container goes at once: cancellation is
			// rare, and what it stops should be gone when Run returns.
			s.removeContainer(ctx, created.ID)
			return
		}
		// In the background: the step's result does not wait for it
		// (Destroy does).
		s.removeLater(ctx, created.ID)
	}()
	if ctx.Err() != nil {
		return sandbox.Result{ExitCode: -1}, ctx.Err()
	}
	if script != nil {
		tarball, err := scriptTar(script)
		if err == nil {
			err = s.r.cli.CopyToContainer(ctx, created.ID, "/", tarball, container.CopyToContainerOptions{})
		}
		if err != nil {
			return s.failed(ctx, err, "copying the script of step "+strconv.Quote(step.Key))
		}
	}
	return s.run(ctx, created.ID, stdout, stderr, onStart)
}

// run starts container id, calls onStart (when not nil) once it started,
// streams its output and waits for it to exit, or stops it when ctx ends.
func (s *Sandbox) run(ctx context.Context, id string, stdout, stderr io.Writer, onStart func()) (sandbox.Result, error) {
	cli := s.r.cli
	endStart := phase.Start(ctx, phase.ContainerStart)
	// Attached before the start, so that no output is missed.
	attach, err := cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return s.failed(ctx, err, "attaching to the container")
	}
	defer attach.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(stdout, stderr, attach.Reader)
		copied <- err
	}()

	// The wait is registered before the start too, and outlives ctx so
	// that a stopped container's exit is still seen.
	waitCtx, stopWaiting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWaiting()
	exited, waitErr := cli.ContainerWait(waitCtx, id, container.WaitConditionNextExit)
	defer func() {
		// Unblock the client's goroutine, whichever way it ends.
		go func() {
			select {
			case <-exited:
			case <-waitErr:
			}
		}()
	}()
	if err := cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return s.failed(ctx, err, "starting the container")
	}
	endStart()
	endWait := phase.Start(ctx, phase.ContainerWait)
	if onStart != nil {
		onStart()
	}

	var status int64
	select {
	case <-ctx.Done():
		s.stop(ctx, id)
		attach.Close()
		return sandbox.Result{ExitCode: -1}, ctx.Err()
	case w := <-exited:
		if w.Error != nil && w.Error.Message != "" {
			return sandbox.Result{}, fmt.Errorf("docker: wait for the container: %s", w.Error.Message)
		}
		status = w.StatusCode
	case err := <-waitErr:
		return s.failed(ctx, err, "waiting for the container")
	}
	// The output ends with the container's; it may lag behind its exit.
	select {
	case err := <-copied:
		if err != nil {
			s.log.Warn("container output stream ended with an error", "container", id, "err", err)
		}
	case <-time.After(10 * time.Second):
		s.log.Warn("container output did not end 10s after the container exited", "container", id)
	}
	if s.usable() != nil {
		return sandbox.Result{}, errors.New("docker: the sandbox was destroyed while the step ran")
	}
	endWait()
	if status == 0 {
		// Succeeded: whatever else an inspection says (a process other
		// than the step's shell killed for memory) is no failure.
		return sandbox.Result{}, nil
	}
	defer phase.Start(ctx, phase.ContainerInspect)()
	inspect, err := cli.ContainerInspect(context.WithoutCancel(ctx), id)
	if err != nil {
		return sandbox.Result{}, fmt.Errorf("%w (inspecting the exited container)", s.r.daemonError(err))
	}
	res := sandbox.Result{ExitCode: inspect.State.ExitCode, OOMKilled: inspect.State.OOMKilled}
	if res.ExitCode == 0 {
		// A process other than the step's shell may have been killed and
		// the step succeeded all the same: not a failure.
		res.OOMKilled = false
	} else {
		res.DiskFull = s.ws.Full() || s.layerFull(context.WithoutCancel(ctx), id)
	}
	return res, nil
}

// failed returns the error of a failed request about a step's container:
// ctx's when it ended (the request failed because of it).
func (s *Sandbox) failed(ctx context.Context, err error, doing string) (sandbox.Result, error) {
	if ctx.Err() != nil {
		return sandbox.Result{ExitCode: -1}, ctx.Err()
	}
	return sandbox.Result{}, fmt.Errorf("%w (%s)", s.r.daemonError(err), doing)
}

// stop stops a cancelled step's container: SIGTERM, then SIGKILL after
// stopGrace.
func (s *Sandbox) stop(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace+10*time.Second)
	defer cancel()
	timeout := int(stopGrace / time.Second)
	if err := s.r.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &timeout}); err != nil && !client.IsErrNotFound(err) {
		s.log.Warn("stop container", "container", id, "err", err)
	}
}

// removeLater removes a step's container in the background; Destroy
// waits for it. Once the sandbox is destroyed, it removes it at once.
func (s *Sandbox) removeLater(ctx context.Context, id string) {
	s.mu.Lock()
	destroyed := s.destroyed
	if !destroyed {
		// Under mu, ordered before Destroy's Wait, which sets destroyed
		// first.
		s.removing.Add(1)
	}
	s.mu.Unlock()
	remove := func() {
		defer phase.Start(ctx, phase.ContainerRemove)()
		s.removeContainer(ctx, id)
	}
	if destroyed {
		remove()
		return
	}
	go func() {
		defer s.removing.Done()
		remove()
	}()
}

// removeContainer removes a step's container, even when ctx has ended.
func (s *Sandbox) removeContainer(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.r.removeContainer(ctx, id); err != nil {
		s.log.Warn("remove container; Destroy or the janitor will retry", "container", id, "err", err)
	}
}

// removeContainer removes a container, killing it, and waits for a
// removal already under way (dockerd's own auto-removal, or the janitor
// and a job's teardown at once) to end.
func (r *Runtime) removeContainer(ctx context.Context, id string) error {
	err := r.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || client.IsErrNotFound(err) {
		return nil
	}
	if !strings.Contains(err.Error(), "is already in progress") {
		return err
	}
	for {
		if _, err := r.cli.ContainerInspect(ctx, id); client.IsErrNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s: its removal under way did not end: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// removeContainers removes every container of the sandbox.
func (s *Sandbox) removeContainers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	list, err := s.r.cli.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", labelSandbox+"="+s.id)),
	})
	if err != nil {
		return s.r.daemonError(err)
	}
	var errs []error
	for _, c := range list {
		if err := s.r.removeContainer(ctx, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	return errors.Join(errs...)
}

// containerSpec checks step and returns its container's configuration
// (without the image and network), and the script to copy into the
// container when it is too long for an argument.
func (s *Sandbox) containerSpec(step sandbox.Step) (*container.Config, *container.HostConfig, []byte, error) {
	if step.Image == "" {
		return nil, nil, nil, errors.New("no image: the docker runtime runs each step in a container of the step's image")
	}
	dir := step.Dir
	if dir == "" {
		dir = "."
	}
	if !filepath.IsLocal(dir) {
		return nil, nil, nil, fmt.Errorf("directory %q is not inside the workspace", step.Dir)
	}
	for i, kv := range step.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" || strings.ContainsRune(kv, 0) {
			// Not quoted: the value may be a secret.
			return nil, nil, nil, fmt.Errorf("environment entry %d is not NAME=value", i)
		}
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	for i, c := range step.Commands {
		if strings.ContainsRune(c, 0) {
			return nil, nil, nil, fmt.Errorf("command %d contains a NUL byte", i)
		}
		b.WriteString(c)
		b.WriteString("\n")
	}
	labels := make(map[string]string, len(s.labels)+1)
	for k, v := range s.labels {
		labels[k] = v
	}
	labels[labelStep] = step.Key
	cfg := &container.Config{
		Entrypoint:   []string{"/bin/sh", "-c", b.String()},
		Cmd:          []string{},
		Env:          step.Env,
		WorkingDir:   path.Join(dockerconfig.Workspace, filepath.ToSlash(filepath.Clean(dir))),
		Labels:       labels,
		AttachStdout: true,
		AttachStderr: true,
	}
	var script []byte
	if b.Len() > maxScriptArg {
		cfg.Entrypoint = []string{"/bin/sh", scriptPath}
		script = []byte(b.String())
	}
	return cfg, s.hostConfig(), script, nil
}

// hostConfig returns a step container's limits, mounts and privileges.
func (s *Sandbox) hostConfig() *container.HostConfig {
	opts := s.opts
	init := true
	hc := &container.HostConfig{
		Mounts: append([]mount.Mount{{Type: mount.TypeBind, Source: opts.Workspace, Target: dockerconfig.Workspace}},
			s.r.set.mounts...),
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
		// A minimal init (docker-init) as PID 1: it forwards signals to
		// the step's shell and reaps orphans.
		Init:    &init,
		Runtime: s.r.ociRuntime(),
		// Output reaches the job's log through the attached stream; the
		// daemon need not keep a copy.
		LogConfig: container.LogConfig{Type: "none"},
	}
	if opts.CPUs > 0 {
		hc.NanoCPUs = int64(opts.CPUs) * 1e9
	}
	if opts.DiskBytes > 0 && s.r.layerQuota() {
		hc.StorageOpt = map[string]string{"size": strconv.FormatInt(opts.DiskBytes, 10)}
	}
	if opts.MemoryBytes > 0 {
		// No swap: memory plus swap is the memory limit.
		hc.Memory = opts.MemoryBytes
		hc.MemorySwap = opts.MemoryBytes
	}
	if opts.PIDs > 0 {
		pids := int64(opts.PIDs)
		if s.r.cfg.GVisor {
			// The limit applies to the host tasks of the whole gVisor
			// sandbox: its kernel's own threads (about 35), and a stub
			// thread besides each process of the step.
			pids = 2*pids + gvisorTasks
		}
		hc.PidsLimit = &pids
	}
	return hc
}

// scriptTar returns a tar archive holding the script at scriptPath.
func scriptTar(script []byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(scriptPath, "/"), Mode: 0o444, Size: int64(len(script)), ModTime: time.Now()})
	if err == nil {
		_, err = tw.Write(script)
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("archive the script: %w", err)
	}
	return &buf, nil
}

// Destroy removes the sandbox's containers, the firewall rules of its
// network and the network. It is idempotent, and runs even when ctx is
// already cancelled.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.mu.Lock()
	s.destroyed = true
	prepared, netID, bridge, starting := s.prepared, s.networkID, s.bridge, s.holderStarting
	s.networkID, s.bridge, s.holderID = "", "", ""
	s.mu.Unlock()
	if !prepared && netID == "" {
		// Prepare failed before creating anything but the workspace.
		return s.removeWorkspace()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	// Step containers being removed; none is added once destroyed is set.
	s.removing.Wait()
	if starting != nil {
		// A holder being made now would hold on to the network; seeing
		// the sandbox destroyed, it removes itself.
		select {
		case <-starting:
		case <-ctx.Done():
		}
	}
	err := s.removeContainers(ctx)
	if netID != "" {
		end := phase.Start(ctx, phase.NetworkRemove)
		err = errors.Join(err, s.r.removeNetwork(ctx, netID, bridge))
		end()
	}
	if err != nil {
		// Keep what is left for a second call, or the janitor.
		s.mu.Lock()
		if s.networkID == "" {
			s.networkID, s.bridge = netID, bridge
		}
		s.mu.Unlock()
		return fmt.Errorf("docker: destroy sandbox: %w", err)
	}
	if err := s.removeWorkspace(); err != nil {
		return err
	}
	s.log.Debug("sandbox destroyed")
	return nil
}

// Workspace is the job's workspace. See [sandbox.Sandbox].
func (s *Sandbox) Workspace() sandbox.Workspace { return s.ws }

// removeWorkspace removes the job's workspace, once nothing mounts it.
func (s *Sandbox) removeWorkspace() error {
	if s.ws == nil {
		return nil
	}
	if err := s.ws.Remove(); err != nil {
		return fmt.Errorf("docker: destroy sandbox: %w", err)
	}
	return nil
}

// removeNetwork removes a job network's firewall rules and the network.
// A network that is gone is not an error.
func (r *Runtime) removeNetwork(ctx context.Context, id, bridge string) error {
	var errs []error
	if r.cfg.Firewall != nil && bridge != "" {
		if err := r.cfg.Firewall.Remove(ctx, bridge); err != nil {
			errs = append(errs, fmt.Errorf("remove the network policy of bridge %s: %w", bridge, err))
		}
	}
	if err := r.cli.NetworkRemove(ctx, id); err != nil && !client.IsErrNotFound(err) {
		errs = append(errs, fmt.Errorf("remove network %s: %w", id, r.daemonError(err)))
	}
	return errors.Join(errs...)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
