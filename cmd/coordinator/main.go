// Command coordinator runs the coordinator (serve), and is the command-line
// client of its submission API (jobs, files, executors).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/execd/execd/internal/sandbox/shell"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `coordinator: job queues and the executor API

Usage:
  coordinator quickstart [flags]   everything on this machine: coordinator, executor, a demo job
  coordinator serve [flags]        run the coordinator
  coordinator jobs <command> ...   submit, get, list, cancel, retry jobs; print logs
  coordinator files put|get ...    upload or download file blobs for jobs' files entries
  coordinator executors            list executors
  coordinator version

Run "coordinator <command> -h" for a command's flags. Every flag can also be
set by the environment variable named in its help.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	// The quickstart's in-process executor re-executes this binary as the
	// init of its sandboxes.
	// The quickstart's executor runs in this process, whose program is
	// its shell sandboxes' init.
	shell.MaybeRunInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "coordinator:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "quickstart":
		return quickstart(ctx, args[1:], stdout, stderr)
	case "jobs":
		return jobs(ctx, args[1:], stdout, stderr)
	case "files":
		return files(ctx, args[1:], stdout, stderr)
	case "executors":
		return executors(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// envFlag registers a string flag whose default comes from an environment
// variable, naming the variable in the help text.
func envFlag(fs *flag.FlagSet, name, env, def, help string) *string {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	return fs.String(name, def, fmt.Sprintf("%s (env %s)", help, env))
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
