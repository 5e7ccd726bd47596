// Command executor pulls jobs from a coordinator (or a Sourcegraph
// instance) and runs them in sandboxes.
//
//	executor run        run jobs until stopped (SIGTERM drains; a second SIGTERM stops)
//	executor validate   check the configuration, the coordinator, git and the runtimes
//	executor install [--dry-run] docker|gvisor|vm|all   prepare a Debian or Ubuntu host
//	executor test-vm    boot a VM and run a command in it
//	executor version
//
// It is configured by environment variables; see README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/execd/execd/internal/executor"
	"github.com/execd/execd/internal/sandbox/shell"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `executor: runs jobs of a coordinator in sandboxes

Usage:
  executor run        run jobs until stopped (SIGTERM drains; a second one stops running jobs)
  executor validate   check the configuration, the coordinator, git and the sandbox runtimes
  executor install [--dry-run] docker|gvisor|vm|all
                      install and configure docker, gVisor (runsc), the VM guest and the firewall (Debian, Ubuntu)
  executor test-vm [flags] [-- command...]
                      boot a VM with the installed guest and run a command in it
  executor version

Configured by environment variables: EXECUTOR_FRONTEND_URL,
EXECUTOR_FRONTEND_PASSWORD and EXECUTOR_QUEUE_NAME are required; see the
README for the others.
`

func main() {
	shell.MaybeRunInit()
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		// Nothing this process inherited may reach a step or a host
		// command (git) it starts.
		if err := shell.CloseInheritedOnExec(); err != nil {
			fmt.Fprintln(stderr, "executor: close inherited descriptors:", err)
			return 1
		}
		return runExecutor(getenv, stderr)
	case "validate":
		if !executor.Validate(context.Background(), getenv, runtimes, stdout) {
			return 1
		}
		return 0
	case "install":
		return runInstall(args[1:], getenv, stdout, stderr)
	case "test-vm":
		return runTestVM(args[1:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "executor: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// runExecutor runs until stopped: the first SIGTERM or SIGINT drains (no
// new jobs; running jobs finish), the second stops running jobs.
func runExecutor(getenv func(string) string, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := executor.LoadConfig(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "executor: invalid configuration:\n%v\n", err)
		return 2
	}
	cfg.Version = version
	drain, stopDrain := context.WithCancel(context.Background())
	hard, stopHard := context.WithCancel(context.Background())
	defer stopDrain()
	defer stopHard()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		logger.Info("stopping: finishing running jobs, taking no new ones (signal again to stop them)")
		stopDrain()
		<-signals
		logger.Warn("stopping now: running jobs are stopped and marked failed")
		stopHard()
	}()
	if err := executor.Run(drain, hard, cfg, runtimes, logger); err != nil {
		logger.Error("executor failed", "err", err)
		return 1
	}
	logger.Info("executor stopped")
	return 0
}
