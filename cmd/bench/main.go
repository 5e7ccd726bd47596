// Command bench measures execd against the goals of the performance issue,
// on this machine, in one run:
//
//	bench [-runs N] [-benchstat FILE] pickup|throughput|logs|sandbox|scale|fault|cancel|overhead|build|all
//
// Each scenario runs N times (3 by default) with fixed sizes and prints one
// line per figure: the median over the runs, the spread (minimum–maximum)
// and, where the issue sets one, the goal and whether it is met. With
// -benchstat it also writes each run to FILE as a Go benchmark result
// line, for benchstat to compare with stored results. docs/benchmarks.md
// describes every scenario.
//
// It runs as root on Linux (the shell sandbox needs namespaces and cgroups),
// from within the module (it builds the coordinator and executor commands
// for the scenarios that run them as processes).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/execd/execd/internal/sandbox/shell"
)

// A scenario measures its figures over b.runs runs.
type scenario struct {
	name string
	run  func(ctx context.Context, b *bench) ([]*figure, error)
}

// scenarios lists the scenarios in the order "all" runs them.
func scenarios() []scenario {
	return []scenario{
		{"pickup", pickup},
		{"throughput", throughput},
		{"logs", logs},
		{"sandbox", sandboxStart},
		{"vm", vmStart},
		{"scale", scale},
		{"fault", fault},
		{"cancel", cancel},
		{"overhead", overhead},
		{"build", build},
	}
}

func main() {
	// The in-process executor's shell sandboxes re-execute this binary.
	shell.MaybeRunInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 3, "runs of each scenario; figures are the median over them")
	benchstatOut := fs.String("benchstat", "", "also write each run as a Go benchmark line to `file`, for benchstat")
	verbose := fs.Bool("v", false, "log progress to standard error")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process (coordinator and executor included where they run in it) to `file`")
	all := scenarios()
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench [flags] scenario...|all\nscenarios:")
		for _, s := range all {
			fmt.Fprintf(stderr, " %s", s.name)
		}
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 || *runs < 1 {
		fs.Usage()
		return errors.New("want a scenario and -runs of at least 1")
	}
	var chosen []scenario
	for _, name := range fs.Args() {
		if name == "all" {
			chosen = append(chosen, all...)
			continue
		}
		i := slices.IndexFunc(all, func(s scenario) bool { return s.name == name })
		if i < 0 {
			fs.Usage()
			return fmt.Errorf("unknown scenario %q", name)
		}
		chosen = append(chosen, all[i])
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	b, err := newBench(*runs, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		return err
	}
	defer b.close()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var bs io.Writer = io.Discard
	if *benchstatOut != "" {
		f, err := os.Create(*benchstatOut)
		if err != nil {
			return fmt.Errorf("-benchstat: %w", err)
		}
		defer f.Close()
		bs = f
		// benchstat's configuration lines: the machine, as go test prints it.
		fmt.Fprintf(f, "goos: %s\ngoarch: %s\npkg: github.com/execd/execd/cmd/bench\ncpu: %s\n", goruntime.GOOS, goruntime.GOARCH, b.cpu())
	}
	fmt.Fprintf(stdout, "# %s\n", b.machine())
	var failed []string
	for _, s := range chosen {
		start := time.Now()
		figs, err := s.run(ctx, b)
		writeText(stdout, figs)
		fmt.Fprintf(stdout, "# %s took %s\n", s.name, time.Since(start).Round(time.Second))
		writeBenchstat(bs, figs)
		if err != nil {
			failed = append(failed, s.name)
			fmt.Fprintf(stderr, "bench: %s: %v\n", s.name, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}
