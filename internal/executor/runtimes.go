package executor

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/execd/execd/internal/sandbox"
)

// Runtimes makes the sandbox runtimes an executor may use, most
// isolating first: the order in which EXECUTOR_RUNTIME=auto tries them.
// The program registers them (cmd/executor: gvisor, docker, shell; the
// quickstart: shell), so that this package links none.
type Runtimes func(ctx context.Context, cfg Config, logger *slog.Logger) []sandbox.Runtime

// selectRuntime returns the configured runtime, or with auto the first one
// whose Check passes, and why it was chosen.
func selectRuntime(ctx context.Context, cfg Config, all []sandbox.Runtime) (sandbox.Runtime, string, error) {
	if cfg.Runtime != "auto" {
		for _, rt := range all {
			if rt.Name() == cfg.Runtime {
				if err := rt.Check(ctx); err != nil {
					return nil, "", fmt.Errorf("EXECUTOR_RUNTIME=%s cannot run here: %w", cfg.Runtime, err)
				}
				if n := sandbox.Network(cfg.JobNetwork); n != "" && !rt.Capabilities().Supports(n) {
					return nil, "", fmt.Errorf("EXECUTOR_JOB_NETWORK=%s: the %s runtime cannot give a job that network; choose another runtime or network", n, rt.Name())
				}
				return rt, "EXECUTOR_RUNTIME=" + cfg.Runtime, nil
			}
		}
		var names []string
		for _, rt := range all {
			names = append(names, rt.Name())
		}
		return nil, "", fmt.Errorf("EXECUTOR_RUNTIME=%s: this program runs only %s", cfg.Runtime, strings.Join(names, ", "))
	}
	var skipped []string
	for _, rt := range all {
		err := rt.Check(ctx)
		// A runtime may run here and still not be one to pick unasked
		// (virtual machines in software emulation).
		if a, ok := rt.(interface{ AutoSelectable(context.Context) error }); ok && err == nil {
			err = a.AutoSelectable(ctx)
		}
		if n := sandbox.Network(cfg.JobNetwork); err == nil && n != "" && !rt.Capabilities().Supports(n) {
			err = fmt.Errorf("EXECUTOR_JOB_NETWORK=%s: the %s runtime cannot give a job that network", n, rt.Name())
		}
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
