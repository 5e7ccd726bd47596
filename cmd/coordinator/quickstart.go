package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/execd/execd/internal/coordinator"
	"github.com/execd/execd/internal/executor"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/shell"
)

const demoRepo = "github.com/execd/demo"

// quickstart runs everything on one machine: a coordinator on SQLite in
// the data dir, an in-process executor on the best runtime the machine
// offers, and a demo job whose log it streams; then it keeps serving.
func quickstart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := envFlag(fs, "addr", "EXECD_ADDR", "127.0.0.1:3080", "address to listen on")
	dataDir := envFlag(fs, "data-dir", "EXECD_DATA_DIR", "./data", "directory of the database, site config, demo repository and logs (reused by later runs)")
	noDemo := fs.Bool("no-demo-job", false, "do not submit the demo job")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Absolute from here on: the workspaces under it are mounted into
	// sandboxes, and the paths printed must work from any directory.
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", *dataDir, err)
	}
	dataDir = &dir
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(*dataDir, "quickstart.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logger := newLogger(logFile)

	reposDir := filepath.Join(*dataDir, "repos")
	commit, err := ensureDemoRepo(filepath.Join(reposDir, demoRepo))
	if err != nil {
		return fmt.Errorf("demo repository: %w", err)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is a coordinator already running? choose another with --addr)", *addr, err)
	}
	url := "http://" + l.Addr().String()
	c, err := coordinator.New(ctx, coordinator.Options{DataDir: *dataDir, ReposDir: reposDir, Logger: logger, Version: version, ExternalURL: externalURL(l.Addr())})
	if err != nil {
		l.Close()
		return err
	}
	defer c.Close()
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- c.Serve(serveCtx, l) }()
	cfg := c.Config().Current()

	// The executor runs in this process, with the embedded defaults, on
	// the shell runtime: the demo job uses the host's git in its step,
	// which only the shell runtime offers (container runtimes run the
	// step's image, and no image is pulled offline), and the coordinator
	// links no other.
	execCfg, err := executor.LoadConfig(mapEnv(map[string]string{
		"EXECUTOR_RUNTIME":           "shell",
		"EXECUTOR_FRONTEND_URL":      url,
		"EXECUTOR_FRONTEND_PASSWORD": cfg.ExecutorsAccessToken,
		"EXECUTOR_QUEUE_NAMES":       strings.Join(cfg.Queues, ","),
		"EXECUTOR_METRICS_ADDR":      "off",
		"EXECUTOR_WORKSPACE_ROOT":    filepath.Join(*dataDir, "workspaces"),
		"EXECUTOR_JOB_MEMORY":        "2G",
		"EXECUTOR_JOB_NUM_CPUS":      "2",
	}))
	if err != nil {
		return err
	}
	execCfg.Version = version
	drain, stopDrain := context.WithCancel(context.Background())
	hard, stopHard := context.WithCancel(context.Background())
	executorDone := make(chan error, 1)
	go func() { executorDone <- executor.Run(drain, hard, execCfg, shellOnly, logger) }()
	defer func() {
		stopDrain()
		stopHard()
		<-executorDone
		stopServe()
		<-served
	}()

	fmt.Fprintf(stdout, "execd quickstart: coordinator at %s with an executor in this process\n", url)
	fmt.Fprintf(stdout, "  data dir: %s (logs: %s)\n\n", *dataDir, logPath)
	api := &jobsapi.Client{BaseURL: url, Token: cfg.APIAccessToken}
	if !*noDemo {
		if err := runDemoJob(ctx, api, commit, stdout); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	fmt.Fprintf(stdout, `
The coordinator keeps serving until Ctrl-C.
  URL:                     %s
  web UI:                  %s/ (sign in with the API token)
  API token:               %s
  executors' secret:       %s
  site config:             %s

Try:
  export EXECD_URL=%s EXECD_API_TOKEN=%s
  go run ./cmd/coordinator jobs list -queue batches
  go run ./cmd/coordinator executors
  curl -s -H "Authorization: token $EXECD_API_TOKEN" $EXECD_URL/api/queues/batches/jobs/1
Run more executors on other machines with:
  EXECUTOR_FRONTEND_URL=%s EXECUTOR_FRONTEND_PASSWORD=%s EXECUTOR_QUEUE_NAME=batches executor run
`, url, url, cfg.APIAccessToken, cfg.ExecutorsAccessToken, c.Config().Path(), url, cfg.APIAccessToken, url, cfg.ExecutorsAccessToken)
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping")
		return nil
	case err := <-executorDone:
		executorDone <- err
		return fmt.Errorf("the executor stopped: %v (see %s)", err, logPath)
	}
}

// shellOnly is the quickstart executor's runtime: the shell sandbox, whose
// init is this program. The coordinator links no container runtime.
func shellOnly(_ context.Context, cfg executor.Config, logger *slog.Logger) []sandbox.Runtime {
	return []sandbox.Runtime{shell.New(shell.Config{WorkspaceRoot: cfg.WorkspaceRoot, Logger: logger})}
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runDemoJob submits the demo job and streams its log with a progress line.
func runDemoJob(ctx context.Context, api *jobsapi.Client, commit string, w io.Writer) error {
	const secret = "demo-secret-value-1234"
	var req jobsapi.SubmitRequest
	req.RepositoryName = demoRepo
	req.Commit = commit
	req.FetchTags = true
	req.Files = map[string]protocol.VirtualFile{"hello.txt": {Content: []byte("Hello from a job file!\n")}}
	req.DockerSteps = []protocol.DockerStep{{
		Key:   "demo",
		Image: "alpine:3",
		Env:   []string{"DEMO_SECRET=" + secret},
		Commands: []string{
			"cat hello.txt",
			"echo \"checked out $(git describe --tags) of " + demoRepo + "\"",
			"sh ./build.sh",
			"echo \"a secret never leaves the executor: $DEMO_SECRET\"",
		},
	}}
	req.RedactedValues = map[string]string{secret: "[REDACTED]"}
	job, err := api.Submit(ctx, "batches", req)
	if err != nil {
		return fmt.Errorf("submit the demo job: %w", err)
	}
	fmt.Fprintf(w, "submitted demo job %d to queue batches; its log:\n\n", job.ID)
	start := time.Now()
	state := ""
	var lp logPrinter
	for {
		j, err := api.Logs(ctx, "batches", job.ID, lp.offsets(), 0)
		if err != nil {
			return err
		}
		// A new running state is announced before its output, the final
		// state after the last of it.
		finished := j.State != "queued" && j.State != "processing"
		changed := j.State != state
		state = j.State
		if changed && !finished {
			fmt.Fprintf(w, "-- job %d: %s (%.1fs)\n", job.ID, state, time.Since(start).Seconds())
		}
		lp.print(w, j)
		if changed && finished {
			fmt.Fprintf(w, "-- job %d: %s (%.1fs)\n", job.ID, state, time.Since(start).Seconds())
		}
		if finished {
			if state != "completed" {
				fmt.Fprintf(w, "-- the demo job did not complete: %s\n", j.FailureMessage)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ensureDemoRepo creates the demo repository if it does not exist and
// returns the commit to check out.
func ensureDemoRepo(dir string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=execd", "GIT_AUTHOR_EMAIL=demo@execd.invalid", "GIT_COMMITTER_NAME=execd", "GIT_COMMITTER_EMAIL=demo@execd.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return git("rev-parse", "HEAD")
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if _, err := exec.LookPath("git"); err != nil {
		return "", errors.New("git is not installed: install it (apt-get install git)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string]string{
		"README.md": "# demo\n\nA repository the quickstart's demo job checks out.\n",
		"build.sh":  "for step in compile test package; do echo \"$step...\"; sleep 0.3; done\necho build ok\n",
	}
	if _, err := git("init", "-q", "-b", "main"); err != nil {
		return "", err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	for _, args := range [][]string{{"add", "."}, {"commit", "-q", "-m", "demo"}, {"tag", "v1.0.0"}} {
		if _, err := git(args...); err != nil {
			return "", err
		}
	}
	return git("rev-parse", "HEAD")
}
