package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

// Overhead sizes and inputs.
const (
	// overheadJobs trivial jobs of each kind per run, interleaved.
	overheadJobs = 8
	// overheadBuildModule is the real build: its source comes from the Go
	// module proxy (it has no dependencies).
	overheadBuildModule = "github.com/gorilla/mux@v1.8.1"
	overheadBuildScript = "go build ./... && go vet ./... && go test ./..."
	// goImageRepo is the toolchain image made from the host's GOROOT,
	// tagged with the Go version.
	goImageRepo = "execd-bench/go"
)

// buildEnv is the environment of the build, on the host and in
// containers: a cold build cache of its own (GOCACHE is made empty for
// each build), no network, no toolchain switch, no cgo (the image has no
// C compiler).
func buildEnv(cache string) []string {
	return []string{"GOCACHE=" + cache, "GOPATH=" + cache + "/gopath", "HOME=" + cache, "GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local", "GOPROXY=off", "CGO_ENABLED=0", "GOTELEMETRY=off"}
}

// overheadKind is one kind of trivial job: ours through an executor of a
// queue, or a bare command.
type overheadKind struct {
	name  string   // figure name under overhead/
	queue string   // ours: the queue of its executor
	env   []string // ours: the executor's environment overrides, KEY=value
	bare  []string // bare: the command
}

// overhead measures what a job costs beyond its container: a one-step
// `true` job submitted through the submission API to a coordinator (in
// this process, SQLite) and run by the executor command (a process of its
// own per runtime), from the start of the submit request to the job seen
// completed (polled every 5 ms), beside the bare `docker run --rm` of the
// same step, interleaved in one run: docker with no network against
// `docker run --rm --network none`, docker with the internet (its own
// bridge and firewall) against `docker run --rm` on a bridge network made
// for the run, gvisor against `docker run --rm --runtime runsc --network
// none`, and the shell runtime for scale. Each executor logs each job's
// phases; their medians are figures too (with -v, each job's line is
// shown). The ratios are ours over bare, per run.
func overhead(ctx context.Context, b *bench) ([]*figure, error) {
	if why := dockerMissing(ctx); why != "" {
		fmt.Fprintf(os.Stderr, "bench: overhead: skipped: %s\n", why)
		return nil, nil
	}
	kinds := []overheadKind{
		{name: "docker", queue: "docker", env: []string{"EXECUTOR_RUNTIME=docker", "EXECUTOR_JOB_NETWORK=none"}},
		{name: "bare/docker-run", bare: []string{"docker", "run", "--rm", "--network=none", sandboxImage, "true"}},
		{name: "docker/network=internet", queue: "dockernet", env: []string{"EXECUTOR_RUNTIME=docker", "EXECUTOR_JOB_NETWORK=internet"}},
		{name: "bare/docker-run/network=bridge"}, // its bridge is made below
		{name: "gvisor", queue: "gvisor", env: []string{"EXECUTOR_RUNTIME=gvisor", "EXECUTOR_JOB_NETWORK=none"}},
		{name: "bare/docker-run-runsc", bare: []string{"docker", "run", "--rm", "--runtime=runsc", "--network=none", sandboxImage, "true"}},
		{name: "shell", queue: "shell", env: []string{"EXECUTOR_RUNTIME=shell"}},
	}
	bridge := fmt.Sprintf("execd-bench-overhead-%d", os.Getpid())
	if out, err := exec.CommandContext(ctx, "docker", "network", "create", bridge).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker network create: %v: %s", err, bytes.TrimSpace(out))
	}
	defer exec.Command("docker", "network", "rm", bridge).Run()
	kinds[3].bare = []string{"docker", "run", "--rm", "--network=" + bridge, sandboxImage, "true"}
	co, logPaths, stop, err := startExecutors(ctx, b, kinds)
	if err != nil {
		return nil, err
	}
	defer stop()
	figs, err := b.repeat(ctx, func(int) ([]sample, error) {
		jobs := map[string][]string{} // queue -> the UIDs of its jobs
		times := make([][]time.Duration, len(kinds))
		for range overheadJobs {
			for i, k := range kinds {
				var d time.Duration
				var err error
				if k.queue != "" {
					var uid string
					d, uid, err = trivialJob(ctx, co.api, k.queue)
					jobs[k.queue] = append(jobs[k.queue], uid)
				} else {
					d, err = timeRun(ctx, k.bare, nil, "")
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", k.name, err)
				}
				times[i] = append(times[i], d)
			}
		}
		var out []sample
		p50 := map[string]float64{}
		for i, k := range kinds {
			slices.Sort(times[i])
			p50[k.name] = ms(percentile(times[i], 50))
			out = append(out, sample{name: "overhead/" + k.name + "/submit-to-completed/p50", unit: "ms", value: p50[k.name], note: fmt.Sprintf("n=%d", overheadJobs)})
		}
		for _, r := range [][2]string{
			{"docker", "bare/docker-run"},
			{"docker/network=internet", "bare/docker-run/network=bridge"},
			{"gvisor", "bare/docker-run-runsc"},
		} {
			out = append(out, sample{name: "overhead/" + r[0] + "/over-bare", unit: "x", value: p50[r[0]] / p50[r[1]]})
		}
		for _, k := range kinds {
			if k.queue == "" || k.queue == "shell" {
				continue
			}
			phases, err := jobPhases(logPaths[k.queue], jobs[k.queue], b.logger)
			if err != nil {
				return nil, err
			}
			out = append(out, phases.samples("overhead/"+k.name+"/phase/")...)
		}
		return out, nil
	})
	for _, f := range figs {
		switch f.name {
		case "overhead/docker/over-bare", "overhead/gvisor/over-bare":
			f.goal = &goal{value: 1.3}
		case "overhead/docker/network=internet/over-bare":
			f.goal = &goal{value: 1.5}
		}
	}
	return figs, err
}

// build measures a real build, go build, vet and test of gorilla/mux
// with a cold build cache: on the host, in bare `docker run --rm
// --runtime runsc`, and as a job on gvisor (no network), one of each per
// run. It is skipped, saying why, when the module's source or the
// toolchain image cannot be had.
func build(ctx context.Context, b *bench) ([]*figure, error) {
	if why := dockerMissing(ctx); why != "" {
		fmt.Fprintf(os.Stderr, "bench: build: skipped: %s\n", why)
		return nil, nil
	}
	src, goImage, why := overheadBuildInputs(ctx, b)
	if why != "" {
		fmt.Fprintf(os.Stderr, "bench: build: skipped: %s\n", why)
		return nil, nil
	}
	// The executor's default memory limit (12G) and every CPU, not the
	// 2G the other scenarios use: the build's page cache (the build
	// cache, the overlay's upper layer) counts toward the memory limit,
	// and bare runsc has none. (dockerd refuses more CPUs than the host
	// has.)
	co, logPaths, stop, err := startExecutors(ctx, b, []overheadKind{
		{name: "gvisor", queue: "gvisor", env: []string{"EXECUTOR_RUNTIME=gvisor", "EXECUTOR_JOB_NETWORK=none",
			"EXECUTOR_JOB_MEMORY=12G", fmt.Sprintf("EXECUTOR_JOB_NUM_CPUS=%d", goruntime.NumCPU())}},
	})
	if err != nil {
		return nil, err
	}
	defer stop()
	figs, err := b.repeat(ctx, func(int) ([]sample, error) {
		out, uid, err := overheadBuild(ctx, b, co.api, src, goImage)
		if err != nil {
			return nil, err
		}
		phases, err := jobPhases(logPaths["gvisor"], []string{uid}, b.logger)
		if err != nil {
			return nil, err
		}
		return append(out, phases.samples("build/gvisor/phase/")...), nil
	})
	for _, f := range figs {
		if f.name == "build/gvisor-over-host" {
			f.goal = &goal{value: 1.5}
		}
	}
	return figs, err
}

// startExecutors starts a coordinator (in this process, SQLite) with a
// queue for each kind that has one, and an executor process for each
// such queue; it runs a first job on each, not measured, so that they
// are up and waiting, and the image's files in the page cache. It
// returns the executors' logs by queue.
func startExecutors(ctx context.Context, b *bench, kinds []overheadKind) (co *coord, logPaths map[string]string, stop func(), err error) {
	execBin, err := b.binary(ctx, "executor")
	if err != nil {
		return nil, nil, nil, err
	}
	dir, err := b.tempDir("overhead")
	if err != nil {
		return nil, nil, nil, err
	}
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stopAll()
		}
	}()
	var queues []string
	for _, k := range kinds {
		if k.queue != "" {
			queues = append(queues, k.queue)
		}
	}
	co, err = startCoordinator(ctx, dir, "", overheadSiteConfig(queues))
	if err != nil {
		return nil, nil, nil, err
	}
	stops = append(stops, co.stop)
	logPaths = map[string]string{}
	for _, k := range kinds {
		if k.queue == "" {
			continue
		}
		logPath := filepath.Join(dir, k.queue+".log")
		logs, err := os.Create(logPath)
		if err != nil {
			return nil, nil, nil, err
		}
		stops = append(stops, func() { logs.Close() })
		// A workspace root each: executors starting at once in one root
		// may remove each other's directory before it is locked.
		env := executorEnv(co.url, k.queue, filepath.Join(dir, "workspaces-"+k.queue), nil)
		for _, kv := range k.env {
			name, value, _ := strings.Cut(kv, "=")
			env[name] = value
		}
		p, err := startProcess(execBin, []string{"run"}, env, logs)
		if err != nil {
			return nil, nil, nil, err
		}
		stops = append(stops, func() { stopProcess(p) })
		logPaths[k.queue] = logPath
	}
	for _, k := range kinds {
		if k.queue != "" {
			if _, _, err := trivialJob(ctx, co.api, k.queue); err != nil {
				return nil, nil, nil, fmt.Errorf("warm-up of %s: %w\n%s", k.name, err, tail(logPaths[k.queue]))
			}
		}
	}
	return co, logPaths, stopAll, nil
}

// overheadSiteConfig is a site config with the fixed secrets and queues.
func overheadSiteConfig(queues []string) string {
	quoted := make([]string, len(queues))
	for i, q := range queues {
		quoted[i] = fmt.Sprintf("%q", q)
	}
	return fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q, "executors.queues": [%s]}`,
		execSecret, apiToken, strings.Join(quoted, ", "))
}

// trivialJob submits a job of one step `true` to queue and returns the
// time from the start of the submit request to the job seen completed.
func trivialJob(ctx context.Context, api *jobsapi.Client, queue string) (time.Duration, string, error) {
	var req jobsapi.SubmitRequest
	req.DockerSteps = []protocol.DockerStep{{Key: "true", Image: sandboxImage, Commands: []string{"true"}}}
	return runJob(ctx, api, queue, req, 5*time.Millisecond, time.Minute)
}

// runJob submits req to queue and returns the time from the start of the
// submit request to the job seen completed (polled every interval), and
// the job's UID.
func runJob(ctx context.Context, api *jobsapi.Client, queue string, req jobsapi.SubmitRequest, interval, timeout time.Duration) (time.Duration, string, error) {
	start := time.Now()
	j, err := api.Submit(ctx, queue, req)
	if err != nil {
		return 0, "", fmt.Errorf("submit: %w", err)
	}
	if _, err := pollJob(ctx, api, queue, j.ID, interval, timeout, inState("completed")); err != nil {
		return 0, "", err
	}
	return time.Since(start), protocol.JobUID(j.ID, queue), nil
}

// timeRun runs args, in dir when not empty, with env added to this
// process's environment, and returns how long it took.
func timeRun(ctx context.Context, args, env []string, dir string) (time.Duration, error) {
	var output bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = &output, &output, dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, lastLines(output.String(), 20))
	}
	return time.Since(start), nil
}

// phaseTimes are the phases of jobs, from executors' "job phases" lines.
type phaseTimes struct {
	order []string
	times map[string][]time.Duration
}

// phaseAttr is one phase of a "job phases" log line, as slog's text
// handler writes it: phases.container.create=81.2ms.
var phaseAttr = regexp.MustCompile(`\bphases\.([a-z.]+)=(\S+)`)

// jobPhases reads the "job phases" lines of jobs (job UIDs) from an
// executor's log, waiting up to 10 s for them: a job's line comes once
// its teardown is over, after it was seen completed.
func jobPhases(path string, jobs []string, logger *slog.Logger) (*phaseTimes, error) {
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		lines = lines[:0]
		for line := range strings.Lines(string(data)) {
			if !strings.Contains(line, `msg="job phases"`) {
				continue
			}
			if slices.ContainsFunc(jobs, func(uid string) bool { return strings.Contains(line, " job="+uid+" ") }) {
				lines = append(lines, line)
			}
		}
		if len(lines) == len(jobs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := &phaseTimes{times: map[string][]time.Duration{}}
	for _, line := range lines {
		logger.Info("executor: " + strings.TrimSpace(line))
		for _, m := range phaseAttr.FindAllStringSubmatch(line, -1) {
			d, err := time.ParseDuration(m[2])
			if err != nil {
				continue
			}
			if _, ok := p.times[m[1]]; !ok {
				p.order = append(p.order, m[1])
			}
			p.times[m[1]] = append(p.times[m[1]], d)
		}
	}
	return p, nil
}

// samples are the medians of each phase over the jobs (a phase absent
// from a job counts as 0 in it).
func (p *phaseTimes) samples(prefix string) []sample {
	n := len(p.times["total"])
	var out []sample
	for _, name := range p.order {
		ds := slices.Clone(p.times[name])
		for len(ds) < n {
			ds = append(ds, 0)
		}
		slices.Sort(ds)
		out = append(out, sample{name: prefix + name, unit: "ms", value: ms(percentile(ds, 50)), note: fmt.Sprintf("n=%d", n)})
	}
	return out
}

// overheadBuildInputs returns the build's source directory and toolchain
// image, or why the build cannot be measured.
func overheadBuildInputs(ctx context.Context, b *bench) (src, image, why string) {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", overheadBuildModule).Output()
	if err != nil {
		return "", "", fmt.Sprintf("go mod download %s: %v (the Go module proxy must be reachable, or the module in the module cache)", overheadBuildModule, err)
	}
	m := regexp.MustCompile(`"Dir": "([^"]+)"`).FindSubmatch(out)
	if m == nil {
		return "", "", fmt.Sprintf("go mod download %s gave no directory: %s", overheadBuildModule, out)
	}
	image, err = goToolchainImage(ctx, b)
	if err != nil {
		return "", "", "the toolchain image could not be built: " + err.Error()
	}
	return string(m[1]), image, ""
}

// goToolchainImage returns an image holding this host's Go toolchain at
// /usr/local/go and busybox-static, made without a registry (docker
// import) unless one of this Go version exists.
func goToolchainImage(ctx context.Context, b *bench) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w", err)
	}
	goroot, version, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	tag := goImageRepo + ":" + version
	if exec.CommandContext(ctx, "docker", "image", "inspect", tag).Run() == nil {
		return tag, nil
	}
	busybox := "/bin/busybox"
	if out, err := exec.CommandContext(ctx, "file", "-L", busybox).Output(); err != nil || !bytes.Contains(out, []byte("statically linked")) {
		return "", fmt.Errorf("need a static busybox at %s: apt-get install busybox-static", busybox)
	}
	root, err := b.tempDir("go-image")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root)
	for _, d := range []string{"bin", "etc", "tmp", "root", "proc", "sys", "dev", "workspace", "usr/local"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return "", err
	}
	steps := [][]string{
		{"cp", busybox, filepath.Join(root, "bin/busybox")},
		{"chroot", root, "/bin/busybox", "--install", "-s", "/bin"},
		{"cp", "-a", goroot, filepath.Join(root, "usr/local/go")},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, bytes.TrimSpace(out))
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		return "", err
	}
	tar := exec.CommandContext(ctx, "tar", "-C", root, "--numeric-owner", "--owner=0", "--group=0", "-c", ".")
	imp := exec.CommandContext(ctx, "docker", "import",
		"--change", "ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--change", `CMD ["/bin/sh"]`, "-", tag)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return "", err
	}
	imp.Stdin = pipe
	var impOut bytes.Buffer
	imp.Stdout, imp.Stderr = &impOut, &impOut
	if err := tar.Start(); err != nil {
		return "", err
	}
	impErr := imp.Run()
	if err := errors.Join(tar.Wait(), impErr); err != nil {
		return "", fmt.Errorf("tar | docker import %s: %w: %s", tag, err, bytes.TrimSpace(impOut.Bytes()))
	}
	return tag, nil
}

// overheadBuild runs the build once each: on the host, in bare runsc and
// as a gvisor job; each in a fresh copy of the source, with an empty
// build cache.
func overheadBuild(ctx context.Context, b *bench, api *jobsapi.Client, src, image string) (_ []sample, uid string, _ error) {
	hostDir, err := copySource(b, src)
	if err != nil {
		return nil, "", err
	}
	cache, err := b.tempDir("gocache")
	if err != nil {
		return nil, "", err
	}
	host, err := timeRun(ctx, []string{"sh", "-c", overheadBuildScript}, buildEnv(cache), hostDir)
	if err != nil {
		return nil, "", fmt.Errorf("on the host: %w", err)
	}
	os.RemoveAll(cache)

	bareDir, err := copySource(b, src)
	if err != nil {
		return nil, "", err
	}
	args := []string{"docker", "run", "--rm", "--runtime=runsc", "--network=none", "-v", bareDir + ":/workspace", "-w", "/workspace"}
	for _, kv := range buildEnv("/tmp/gocache") {
		args = append(args, "-e", kv)
	}
	bare, err := timeRun(ctx, append(args, image, "sh", "-c", overheadBuildScript), nil, "")
	if err != nil {
		return nil, "", fmt.Errorf("bare runsc: %w", err)
	}

	var req jobsapi.SubmitRequest
	req.Files = map[string]protocol.VirtualFile{}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		req.Files[filepath.ToSlash(rel)] = protocol.VirtualFile{Content: content}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	req.DockerSteps = []protocol.DockerStep{{Key: "build", Image: image, Env: buildEnv("/tmp/gocache"), Commands: []string{overheadBuildScript}}}
	// Polled every 100 ms, not 5: the polls would take CPU from the
	// build (on two cores, 12,000 requests to the coordinator in this
	// process over a minute's build).
	ours, uid, err := runJob(ctx, api, "gvisor", req, 100*time.Millisecond, 15*time.Minute)
	if err != nil {
		return nil, "", fmt.Errorf("the gvisor job: %w", err)
	}
	return []sample{
		{name: "build/host", unit: "s", value: host.Seconds()},
		{name: "build/bare-runsc", unit: "s", value: bare.Seconds()},
		{name: "build/gvisor", unit: "s", value: ours.Seconds()},
		{name: "build/gvisor-over-host", unit: "x", value: ours.Seconds() / host.Seconds()},
		{name: "build/bare-runsc-over-host", unit: "x", value: bare.Seconds() / host.Seconds()},
		{name: "build/gvisor-over-bare-runsc", unit: "x", value: ours.Seconds() / bare.Seconds()},
	}, uid, nil
}

// copySource copies the module's source (read-only in the module cache)
// into a new writable directory.
func copySource(b *bench, src string) (string, error) {
	dir, err := b.tempDir("src")
	if err != nil {
		return "", err
	}
	if out, err := exec.Command("cp", "-r", src+"/.", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy %s: %v: %s", src, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("chmod %s: %v: %s", dir, err, out)
	}
	return dir, nil
}

// tail returns the end of a log file, for an error message.
func tail(path string) string {
	data, _ := os.ReadFile(path)
	return lastLines(string(data), 30)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
