package executor

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	sandbox "github.com/execd/execd/internal/runtime"
	"github.com/execd/execd/internal/runtime/shell"
)

// MaybeRunSandboxInit runs the shell sandbox's in-namespace set-up when this
// process was re-executed as a sandbox's init; otherwise it returns.
func MaybeRunSandboxInit() { shell.MaybeRunInit() }

// runtimes lists the sandbox runtimes, most isolating first: the order in
// which EXECUTOR_RUNTIME=auto tries them.
func runtimes(logger *slog.Logger) []sandbox.Runtime {
	return []sandbox.Runtime{
		shell.New(shell.Config{Logger: logger}),
	}
}

// plannedRuntimes are runtimes not built yet, named so that choosing one
// gets a clear answer.
var plannedRuntimes = map[string]string{
	"firecracker": "the firecracker runtime is not available in this build; use EXECUTOR_RUNTIME=gvisor, docker or shell",
	"gvisor":      "the gvisor runtime is not available in this build; use EXECUTOR_RUNTIME=shell",
	"docker":      "the docker runtime is not available in this build; use EXECUTOR_RUNTIME=shell",
}

// selectRuntime returns the configured runtime, or with auto the first one
// whose Check passes, and why it was chosen.
func selectRuntime(ctx context.Context, cfg Config, logger *slog.Logger) (sandbox.Runtime, string, error) {
	all := runtimes(logger)
	if cfg.Runtime != "auto" {
		for _, rt := range all {
			if rt.Name() == cfg.Runtime {
				if err := rt.Check(ctx); err != nil {
					return nil, "", fmt.Errorf("EXECUTOR_RUNTIME=%s cannot run here: %w", cfg.Runtime, err)
				}
				return rt, "EXECUTOR_RUNTIME=" + cfg.Runtime, nil
			}
		}
		return nil, "", fmt.Errorf("EXECUTOR_RUNTIME=%s: %s", cfg.Runtime, plannedRuntimes[cfg.Runtime])
	}
	var skipped []string
	for _, rt := range all {
		err := rt.Check(ctx)
		if err == nil {
			why := "EXECUTOR_RUNTIME=auto: the most isolating runtime available"
			if len(skipped) > 0 {
				why += " (" + strings.Join(skipped, "; ") + ")"
			}
			return rt, why, nil
		}
		skipped = append(skipped, rt.Name()+": "+err.Error())
	}
	return nil, "", fmt.Errorf("no sandbox runtime can run on this host: %s", strings.Join(skipped, "; "))
}

// defaultNetwork is a runtime's network policy when EXECUTOR_JOB_NETWORK
// is unset: the shell sandbox has no network.
func defaultNetwork(runtime string) sandbox.Network {
	if runtime == "shell" {
		return sandbox.NetworkNone
	}
	return sandbox.NetworkInternet
}
