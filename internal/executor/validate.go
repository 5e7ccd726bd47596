package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/sandbox/diskimage"
	"github.com/execd/execd/internal/sandbox/netpolicy"
)

// Validate checks what the executor needs, with the configuration read
// through getenv, and prints a line per check with the fix for what fails.
// It reports whether the executor can run.
func Validate(ctx context.Context, getenv func(string) string, runtimes Runtimes, out io.Writer) bool {
	ok := true
	report := func(check string, err error, detail string) {
		if err != nil {
			ok = false
			fmt.Fprintf(out, "FAIL  %-14s %v\n", check, err)
			return
		}
		fmt.Fprintf(out, "ok    %-14s %s\n", check, detail)
	}
	cfg, err := LoadConfig(getenv)
	report("configuration", err, "environment variables valid")
	if err != nil {
		return false
	}
	warnings := cfg.FitHost(ThisHost())
	for _, w := range warnings {
		fmt.Fprintf(out, "warn  %-14s %s (lower the variable to silence this)\n", "job limits", w)
	}
	if len(warnings) == 0 {
		fmt.Fprintf(out, "ok    %-14s %d CPUs and %s of memory per job fit this machine\n", "job limits", cfg.JobCPUs, formatSize(cfg.JobMemory))
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &queueclient.Client{BaseURL: cfg.FrontendURL, Secret: cfg.FrontendPassword, HTTP: &http.Client{Timeout: 10 * time.Second}}
	err = client.TestAuth(ctx)
	var se *queueclient.StatusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusUnauthorized:
		err = fmt.Errorf("%s refused the secret: set EXECUTOR_FRONTEND_PASSWORD to the executors.accessToken of its site config", cfg.FrontendURL)
	case errors.As(err, &se) && se.Code == http.StatusInternalServerError:
		err = fmt.Errorf("%s has no executors.accessToken in its site config: set one (at least 20 characters)", cfg.FrontendURL)
	case err != nil:
		err = fmt.Errorf("%s is not reachable: %v (check EXECUTOR_FRONTEND_URL and the network)", cfg.FrontendURL, err)
	}
	report("coordinator", err, cfg.FrontendURL+" accepts the secret")

	git, err := GitVersion()
	report("git", err, git)

	logger := slog.New(slog.DiscardHandler)
	cfg.Name = Name()
	all := runtimes(ctx, cfg, logger)
	for _, rt := range all {
		if err := rt.Check(ctx); err != nil {
			fmt.Fprintf(out, "-     runtime %-6s unavailable: %v\n", rt.Name(), err)
		} else {
			fmt.Fprintf(out, "ok    runtime %-6s available\n", rt.Name())
			// What bounds a step's writes outside its workspace.
			if d, ok := rt.(interface{ DiskBound() string }); ok && d.DiskBound() != "" {
				if rt.Capabilities().Limits.Disk {
					fmt.Fprintf(out, "ok    %-6s disk    %s\n", rt.Name(), d.DiskBound())
				} else {
					fmt.Fprintf(out, "warn  %-6s disk    %s\n", rt.Name(), d.DiskBound())
				}
			}
		}
		// Registry mirrors dockerd cannot pull from as configured.
		if m, ok := rt.(interface{ MirrorWarnings() []string }); ok {
			for _, w := range m.MirrorWarnings() {
				fmt.Fprintf(out, "warn  %-6s mirror  %s\n", rt.Name(), w)
			}
		}
		// The micro-VM runtime's monitors: which one, and why not the others.
		if e, ok := rt.(interface {
			Explain(context.Context) []string
		}); ok {
			for _, line := range e.Explain(ctx) {
				fmt.Fprintf(out, "%s\n", line)
			}
		}
		// The shell runtime's init program.
		if s, ok := rt.(interface{ InitProgram() string }); ok {
			if init := s.InitProgram(); init != "" {
				fmt.Fprintf(out, "ok    shell init     %s\n", init)
			} else {
				fmt.Fprintf(out, "-     shell init     the executor itself, slower to start each step: install execd-sandbox-init next to the executor, or set EXECUTOR_SHELL_INIT\n")
			}
		}
	}
	if err := diskimage.Check(ctx); err != nil {
		fmt.Fprintf(out, "-     workspaces     not bounded: %v\n", err)
	} else {
		fmt.Fprintf(out, "ok    workspaces     each a file system of %s (EXECUTOR_FIRECRACKER_DISK_SPACE)\n", formatSize(cfg.DiskSpace))
	}
	// The docker and gvisor runtimes need the firewall for the network
	// policy of EXECUTOR_JOB_NETWORK=internet jobs; the shell runtime does not.
	if err := netpolicy.Check(ctx); err != nil {
		fmt.Fprintf(out, "-     firewall       unavailable: %v (the docker and gvisor runtimes need it for EXECUTOR_JOB_NETWORK=internet)\n", err)
	} else {
		fmt.Fprintf(out, "ok    firewall       iptables can install the job network policy\n")
	}
	rt, why, err := selectRuntime(ctx, cfg, all)
	detail := ""
	if err == nil {
		detail = rt.Name() + " (" + why + ")"
	}
	report("runtime", err, detail)
	return ok
}
