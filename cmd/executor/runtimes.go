package main

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/execd/execd/internal/executor"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/sandbox/dockerconfig"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/shell"
	"github.com/execd/execd/internal/sandbox/vm"
)

// runtimes lists the sandbox runtimes, most isolating first: the order in
// which EXECUTOR_RUNTIME=auto tries them.
func runtimes(ctx context.Context, cfg executor.Config, logger *slog.Logger) []sandbox.Runtime {
	dc := docker.Config{
		RegistryMirrors:  cfg.DockerRegistryMirrors,
		AdditionalMounts: cfg.DockerAdditionalMount,
		AddHostGateway:   cfg.DockerAddHostGateway,
		AuthConfig:       cfg.DockerAuthConfig,
		Logger:           logger,
	}
	// One for all runtimes: it resolves the registry mirrors' names.
	fw := firewall(cfg, logger)
	if cfg.JobNetwork != string(sandbox.NetworkNone) {
		dc.Firewall = fw
	} else {
		// No job of ours gets a network, but the janitor still removes
		// the firewall rules that dead executors' jobs left.
		dc.Firewall = cleanupOnly{fw}
	}
	gvisor := dc
	gvisor.GVisor = true
	vc := vm.Config{
		Owner: cfg.Name, Dir: filepath.Join(cfg.WorkspaceRoot, cfg.Name),
		Machine: sandbox.Options{
			Owner: cfg.Name, CPUs: cfg.JobCPUs, MemoryBytes: cfg.JobMemory, DiskBytes: cfg.DiskSpace,
			Network: sandbox.Network(cmp.Or(cfg.JobNetwork, string(sandbox.NetworkInternet))),
		},
		WarmPool: cfg.VMWarmPool, Monitor: cfg.VMMonitor, AllowEmulation: cfg.VMAllowEmulation, Assets: cfg.VMAssets,
		BandwidthIngress: cfg.BandwidthIngress, BandwidthEgress: cfg.BandwidthEgress,
		RegistryMirrors: cfg.DockerRegistryMirrors, RegistryAuth: registryAuth(cfg, logger),
		Logger: logger,
	}
	if cfg.JobNetwork != string(sandbox.NetworkNone) {
		vc.Firewall = fw
	}
	return []sandbox.Runtime{
		vm.New(vc),
		docker.New(gvisor),
		docker.New(dc),
		shell.New(shell.Config{Init: shellInit(ctx, cfg, logger), WorkspaceRoot: cfg.WorkspaceRoot, Logger: logger}),
	}
}

// sandboxInitName is the shell runtime's init program, installed next to
// the executor.
const sandboxInitName = "execd-sandbox-init"

// shellInit resolves EXECUTOR_SHELL_INIT into the shell runtime's
// Config.Init: with auto, execd-sandbox-init next to the executor's own
// program if it is there and of this release, else the executor itself
// (""), which is several milliseconds slower to start each step.
func shellInit(ctx context.Context, cfg executor.Config, logger *slog.Logger) string {
	switch cfg.ShellInit {
	case "self":
		return ""
	case "auto":
	default:
		return cfg.ShellInit // checked by the runtime's Check
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return ""
	}
	candidate := filepath.Join(filepath.Dir(exe), sandboxInitName)
	if _, err := os.Stat(candidate); err != nil {
		return ""
	}
	if err := shell.CheckInit(ctx, candidate); err != nil {
		logger.Warn("the executor is its own sandbox init, slower to start each step: "+sandboxInitName+" next to it is not usable", "err", err)
		return ""
	}
	return candidate
}

// firewall is the network policy of the jobs' networks: docker's
// resolvers may be reached on port 53 even when private, the registry
// mirrors on their port, and the host when EXECUTOR_DOCKER_ADD_HOST_GATEWAY
// asks for it.
func firewall(cfg executor.Config, logger *slog.Logger) *netpolicy.Firewall {
	resolvers, err := netpolicy.Resolvers()
	if err != nil {
		logger.Warn("cannot list the host's DNS resolvers; jobs' networks may not resolve names through private ones", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mirrors, err := executor.MirrorServices(ctx, cfg.DockerRegistryMirrors, net.DefaultResolver.LookupNetIP)
	if err != nil {
		logger.Warn("jobs cannot reach these registry mirrors if they are private", "err", err)
	}
	return &netpolicy.Firewall{AllowDNS: resolvers, AllowTCP: mirrors, AllowHost: cfg.DockerAddHostGateway, Logger: logger}
}

// cleanupOnly is the firewall of an executor whose jobs have no network:
// it installs no rules, asks nothing of the host (no Check: a host
// without iptables may run such jobs), and removes rules that are left.
type cleanupOnly struct{ fw *netpolicy.Firewall }

func (c cleanupOnly) Apply(context.Context, string, netip.Prefix) error {
	return errors.New("EXECUTOR_JOB_NETWORK=none: jobs get no network")
}

// Remove removes bridge's rules; where the firewall cannot be used there
// are none.
func (c cleanupOnly) Remove(ctx context.Context, bridge string) error {
	if c.fw.Check(ctx) != nil {
		return nil
	}
	return c.fw.Remove(ctx, bridge)
}

// Bridges lists the bridges with rules; none where the firewall cannot
// be used.
func (c cleanupOnly) Bridges(ctx context.Context) ([]string, error) {
	if c.fw.Check(ctx) != nil {
		return nil, nil
	}
	return c.fw.Bridges(ctx)
}

// registryAuth is EXECUTOR_DOCKER_AUTH_CONFIG's credentials (checked by
// the configuration).
func registryAuth(cfg executor.Config, logger *slog.Logger) map[string]string {
	if cfg.DockerAuthConfig == "" {
		return nil
	}
	auths, err := dockerconfig.ParseAuthConfig(cfg.DockerAuthConfig)
	if err != nil {
		logger.Warn("EXECUTOR_DOCKER_AUTH_CONFIG", "err", err)
	}
	return auths
}
