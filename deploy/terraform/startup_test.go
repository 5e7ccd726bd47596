package terraform_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/daemon"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/testutil/netns"
)

// The stand-in cloud network: the coordinator and the release server on
// the "network" side, the instance on the other, linked by a veth pair.
const (
	netSideAddr  = "10.213.0.1"
	instanceAddr = "10.213.0.2"
	instanceName = "execd-instance"
	// At least 20 characters, as the coordinator requires.
	proxyPassword = "startup-test-secret-0123456789"
	apiToken      = "startup-test-api-token-0123456789"
	// busyboxImage is the tests' image in the host's dockerd
	// (deploy/images/build-test-images.sh).
	busyboxImage = "execd-test/busybox:latest"
)

// TestStartupScriptBootsLiveExecutor renders the executor instances'
// start-up script with OpenTofu (modules/startup, as the AWS and Google
// modules do), boots a throw-away Debian root with systemd as init in
// systemd-nspawn, and has systemd run the script at boot as a cloud runs
// user data. The script downloads the executor from a release URL
// (checked against its SHA-256), writes the environment file, installs
// docker's registry mirror and starts the executor under systemd, which
// must show up in `coordinator executors` of a real coordinator. A job
// submitted then runs on the instance, its image pulled through the
// registry mirror (the mirror's own configuration, pulling through from a
// registry standing in for Docker Hub). With EXECUTOR_NUM_TOTAL_JOBS=1
// the executor then exits cleanly and the machine powers itself off, as
// the reference's instances do.
func TestStartupScriptBootsLiveExecutor(t *testing.T) {
	inst := newInstanceWorld(t)
	inst.startMirror(t)
	script := inst.render(t, inst.executorSHA)

	m := inst.boot(t, script)
	if !m.waitExecutor(t, 4*time.Minute) {
		t.Fatalf("the executor never showed up in `coordinator executors`\n%s", m.diagnose())
	}

	env := filepath.Join(m.root, "etc/execd/executor.env")
	if fi, err := os.Stat(env); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("executor.env: %v, mode %v; want 0600 (it holds the coordinator's secret)", err, fi.Mode())
	}
	daemon, err := os.ReadFile(filepath.Join(m.root, "etc/docker/daemon.json"))
	if err != nil || !strings.Contains(string(daemon), inst.mirrorURL()) {
		t.Errorf("docker's daemon.json does not list the registry mirror %s: %v\n%s", inst.mirrorURL(), err, daemon)
	}
	// executor validate, in the script, finds dockerd able to use the
	// http:// mirror (an insecure registry).
	if log, err := os.ReadFile(filepath.Join(m.root, startupLog)); err != nil || bytes.Contains(log, []byte("mirror  the registry mirror")) {
		t.Errorf("the start-up log warns about the registry mirror (%v):\n%s", err, log)
	}
	got, err := os.ReadFile(filepath.Join(m.root, "usr/local/bin/executor"))
	if sum := sha256.Sum256(got); err != nil || hex.EncodeToString(sum[:]) != inst.executorSHA {
		t.Errorf("the instance's executor is not the release's: %v", err)
	}

	m.writableCgroups(t)
	// A job, whose image only the mirror has. Its network policy lets it
	// reach the mirror, and nothing else private (the coordinator).
	spec, err := json.Marshal(map[string]any{"dockerSteps": []map[string]any{{
		"image": inst.image,
		"commands": []string{
			"echo the answer is $((6 * 7))",
			// busybox's nc: its wget needs what a static glibc lacks.
			fmt.Sprintf(`printf 'GET /v2/ HTTP/1.0\r\n\r\n' | nc -w 5 %s | head -n 1`, strings.Replace(inst.mirrorAddr, ":", " ", 1)),
			fmt.Sprintf("nc -w 5 %s </dev/null && echo the coordinator is reachable || echo the coordinator is unreachable", strings.Replace(inst.coordAddr, ":", " ", 1)),
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(specFile, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := inst.coordinatorCLI("jobs", "submit", "-queue", "batches", specFile)
	var job struct{ ID int }
	if err != nil || json.Unmarshal([]byte(out), &job) != nil || job.ID == 0 {
		t.Fatalf("jobs submit: %v\n%s", err, out)
	}
	id := strconv.Itoa(job.ID)
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		out, _ = inst.coordinatorCLI("jobs", "get", "-queue", "batches", id)
		if !strings.Contains(out, `"state": "queued"`) && !strings.Contains(out, `"state": "processing"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not finish:\n%s\n%s", id, out, m.diagnose())
		}
	}
	logs, _ := inst.coordinatorCLI("jobs", "logs", "-queue", "batches", id)
	if !strings.Contains(out, `"state": "completed"`) || !strings.Contains(out, `"workerHostname": "`+instanceName+"-") ||
		!strings.Contains(logs, "stdout: the answer is 42") || !strings.Contains(logs, "pulling "+inst.mirrorAddr+"/library/"+inst.image) ||
		!strings.Contains(logs, "stdout: HTTP/1.0 200 OK") || !strings.Contains(logs, "stdout: the coordinator is unreachable") {
		t.Fatalf("job %s:\n%s\nlogs:\n%s\n%s", id, out, logs, m.diagnose())
	}

	// The coordinator's secret is in the environment file only: not in the
	// start-up log, the console or the journal.
	journal, _ := exec.Command("journalctl", "--no-pager", "-D", filepath.Join(m.root, "var/log/journal")).CombinedOutput()
	for name, text := range map[string][]byte{"journal": journal, "console": readFile(m.log), "start-up log": readFile(filepath.Join(m.root, startupLog))} {
		if len(text) == 0 {
			t.Errorf("the instance's %s is empty", name)
		}
		if bytes.Contains(text, []byte(proxyPassword)) {
			t.Errorf("the instance's %s holds the coordinator's secret", name)
		}
	}

	// EXECUTOR_NUM_TOTAL_JOBS is 1: the executor exits cleanly and the
	// unit's ExecStopPost powers the machine off; nspawn then exits 0.
	select {
	case <-m.stopped:
		if m.err != nil {
			t.Errorf("the instance stopped with %v, want a clean power-off\n%s", m.err, m.diagnose())
		}
	case <-time.After(3 * time.Minute):
		t.Errorf("the instance did not power itself off after EXECUTOR_NUM_TOTAL_JOBS\n%s", m.diagnose())
	}
}

// TestStartupScriptRefusesTamperedRelease: a release whose executor does not
// match executor_sha256 is never installed or started.
func TestStartupScriptRefusesTamperedRelease(t *testing.T) {
	inst := newInstanceWorld(t)
	script := inst.render(t, strings.Repeat("0", 64))

	m := inst.boot(t, script)
	log := filepath.Join(m.root, startupLog)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if m.startupFailed() {
			break
		}
		time.Sleep(time.Second)
	}
	data, _ := os.ReadFile(log)
	if !bytes.Contains(data, []byte("checksum did NOT match")) {
		t.Fatalf("the start-up log does not report the checksum mismatch:\n%s\n%s", data, m.diagnose())
	}
	for _, p := range []string{"usr/local/bin/executor", "etc/systemd/system/executor.service", "etc/execd/executor.env"} {
		if _, err := os.Stat(filepath.Join(m.root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a checksum mismatch (%v); the script must stop before it", p, err)
		}
	}
	if out, _ := inst.coordinatorCLI("executors"); strings.Contains(out, instanceName) {
		t.Errorf("an executor registered from a tampered release:\n%s", out)
	}
}

// instanceWorld is what a test instance needs around it: the release's
// binaries served over HTTP, a coordinator and, once startMirror ran, the
// registry mirror, all in the network namespace the instance's veth
// leads to.
type instanceWorld struct {
	repo, tofu, rootTemplate string
	ns, vmNS                 string
	bin                      string // the coordinator binary
	executorSHA              string
	releaseURL               string
	coordAddr, mirrorAddr    string // host:port; mirrorAddr once startMirror ran
	image                    string // a Docker Hub name only the mirror has
}

// startupLog is the start-up script's log, in the instance's root.
const startupLog = "var/log/execd-startup.log"

func newInstanceWorld(t *testing.T) *instanceWorld {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "nspawn", "needs root")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		testutil.Missing(t, "nspawn", "systemd-nspawn: apt-get install systemd-container")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	w := &instanceWorld{repo: repo}
	// Where deploy/images/build-instance-root.sh makes it.
	w.rootTemplate = cmp.Or(os.Getenv("EXECD_INSTANCE_ROOT"), "/var/cache/execd/instance-root")
	if _, err := os.Stat(filepath.Join(w.rootTemplate, ".execd-instance-root")); err != nil {
		testutil.Missing(t, "nspawn", "no instance root: run deploy/images/build-instance-root.sh")
	}
	w.tofu = findTofu(t, repo)

	// Unique per process: stale namespaces of a killed run do not collide,
	// and are removed here once their test process is gone.
	id := os.Getpid()
	removeStaleNamespaces()
	w.ns, w.vmNS = fmt.Sprintf("execd-su%d-net", id), fmt.Sprintf("execd-su%d-vm", id)
	netns.Add(t, w.ns)
	netns.Add(t, w.vmNS)
	netns.Link(t, w.ns, fmt.Sprintf("su%d", id), netSideAddr+"/24", w.vmNS, instanceAddr+"/24", netSideAddr)

	// The release: the binaries a release URL serves.
	release := t.TempDir()
	build := exec.Command("go", "build", "-o", release+"/", "./cmd/executor", "./cmd/execd-sandbox-init", "./cmd/coordinator")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exe, err := os.ReadFile(filepath.Join(release, "executor"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(exe)
	w.executorSHA = hex.EncodeToString(sum[:])
	w.bin = filepath.Join(release, "coordinator")

	var l net.Listener
	if err := netns.Do(w.ns, func() (err error) {
		l, err = net.Listen("tcp", netSideAddr+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(release))}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	w.releaseURL = "http://" + l.Addr().String() + "/"

	w.startCoordinator(t)
	return w
}

// mirrorURL is EXECUTOR_DOCKER_REGISTRY_MIRROR_URL: none before startMirror.
func (w *instanceWorld) mirrorURL() string {
	if w.mirrorAddr == "" {
		return ""
	}
	return "http://" + w.mirrorAddr
}

// startMirror starts the registry mirror, with its start-up script's
// configuration, where the instance's EXECUTOR_DOCKER_REGISTRY_MIRROR_URL
// points, as a pull-through cache of an upstream holding the tests' busybox
// image as an official Docker Hub image.
func (w *instanceWorld) startMirror(t *testing.T) {
	t.Helper()
	tmpl, err := os.ReadFile(mirrorTemplate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(registryBinary); err != nil {
		testutil.Missing(t, "registry", fmt.Sprintf("%v: apt-get install docker-registry", err))
	}
	busybox, err := name.ParseReference(busyboxImage)
	if err != nil {
		t.Fatal(err)
	}
	img, err := daemon.Image(busybox)
	if err != nil {
		testutil.Missing(t, "docker", fmt.Sprintf("%s from dockerd (deploy/images/build-test-images.sh): %v", busyboxImage, err))
	}

	upstream := startRegistryAt(t, "upstream", nil, registryAt{ns: w.ns, ip: netSideAddr, port: "5100", debugPort: "5101"})
	tag := strconv.Itoa(os.Getpid())
	ref, err := name.ParseReference(upstream.host+"/library/execd-startup-test:"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(nsTransport(w.ns))); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	w.image = "execd-startup-test:" + tag

	config, err := renderMirrorConfig(tmpl, "http://"+upstream.host, filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatalf("%s: %v", mirrorTemplate, err)
	}
	mirror := startRegistryAt(t, "mirror", config, registryAt{ns: w.ns, ip: netSideAddr, port: "5000", debugPort: "5001"})
	w.mirrorAddr = mirror.host
}

// removeStaleNamespaces deletes the network namespaces of this test's
// runs whose process has died (killed before its cleanups).
func removeStaleNamespaces() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		var pid int
		var side string
		if n, _ := fmt.Sscanf(e.Name(), "execd-su%d-%s", &pid, &side); n != 2 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// findTofu returns OpenTofu from PATH or the repository's .tools/bin,
// where .ci/run builds it.
func findTofu(t *testing.T, repo string) string {
	t.Helper()
	if p, err := exec.LookPath("tofu"); err == nil {
		return p
	}
	p := filepath.Join(repo, ".tools/bin/tofu")
	if _, err := os.Stat(p); err != nil {
		testutil.Missing(t, "tofu", "no tofu in PATH or .tools/bin (.ci/run builds it)")
	}
	return p
}

func (w *instanceWorld) startCoordinator(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"executors.accessToken": %q, "api.accessToken": %q}`, proxyPassword, apiToken)
	if err := os.WriteFile(filepath.Join(dir, "site-config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := netSideAddr + ":3080"
	w.coordAddr = addr
	logs, err := os.Create(filepath.Join(dir, "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", w.ns, w.bin, "serve", "--addr", addr, "--data-dir", dir)
	cmd.Stdout, cmd.Stderr = logs, logs
	p, err := startTied(cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		logs.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := w.coordinatorCLI("executors"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(logs.Name())
			t.Fatalf("the coordinator did not answer; its log:\n%s", data)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// coordinatorCLI runs `coordinator <args>` against the test's coordinator,
// as an operator does.
func (w *instanceWorld) coordinatorCLI(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", w.ns, w.bin}, args...)...)
	cmd.Env = append(os.Environ(), "EXECD_URL=http://"+w.coordAddr, "EXECD_API_TOKEN="+apiToken)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// render renders the executor start-up script with OpenTofu from the
// startup module, with the settings of a docker-runtime instance whose
// executor stops after one job (and powers the machine off).
func (w *instanceWorld) render(t *testing.T, sha string) string {
	t.Helper()
	dir := t.TempDir()
	main := fmt.Sprintf(`
module "startup" {
  source                              = %q
  executor_release_url                = %q
  executor_sha256                     = %q
  sourcegraph_external_url            = %q
  sourcegraph_executor_proxy_password = %q
  queues                              = ["batches"]
  use_firecracker                     = false
  num_total_jobs                      = 1
  docker_registry_mirror              = %q
}

output "executor_script" {
  value     = module.startup.executor_script
  sensitive = true
}
`, filepath.Join(w.repo, "deploy/terraform/modules/startup"), w.releaseURL, sha, "http://"+w.coordAddr, proxyPassword, w.mirrorURL())
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tofurc"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tofu := func(args ...string) string {
		cmd := exec.Command(w.tofu, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(dir, "tofurc"), "TF_IN_AUTOMATION=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("tofu %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	tofu("init", "-input=false", "-no-color")
	tofu("apply", "-auto-approve", "-input=false", "-no-color")
	return tofu("output", "-raw", "executor_script")
}

// machine is a booted instance.
type machine struct {
	w    *instanceWorld
	root string
	log  string
	// stopped is closed when systemd-nspawn has exited, with err.
	stopped chan struct{}
	err     error
	nspawn  int // systemd-nspawn's pid
}

// writableCgroups remounts the container's cgroup v1 hierarchies
// read-write. On a host whose init is not systemd (CI's), systemd-nspawn
// cannot give the container cgroups of its own and mounts the host's
// read-only; a machine's dockerd needs them writable to start the job
// containers. Done after boot, so that the container's systemd has set up
// its own units without them, as it did.
func (m *machine) writableCgroups(t *testing.T) {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(m.nspawn)).Output()
	init, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || init == "" {
		t.Fatalf("the container's init: %v %s", err, out)
	}
	script := `for d in /sys/fs/cgroup/*/; do
  case $(stat -f -c %T "$d") in cgroupfs) mount -o remount,bind,rw "$d" ;; esac
done`
	if out, err := exec.Command("nsenter", "-t", init, "-m", "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("remount the container's cgroups read-write: %v\n%s", err, out)
	}
}

// startupUnit runs the start-up script once at boot, as a cloud's agent
// (cloud-init, google-startup-scripts) runs an instance's user data.
const startupUnit = `[Unit]
Description=The instance's start-up script (user data)
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/execd-startup-script
# For the test: how the script ended.
ExecStopPost=/bin/sh -c 'echo "$SERVICE_RESULT" >/var/lib/execd-startup.result'

[Install]
WantedBy=multi-user.target
`

// boot copies the instance root, installs script as its start-up script
// and boots it with systemd-nspawn in the instance's network namespace.
func (w *instanceWorld) boot(t *testing.T, scriptText string) *machine {
	t.Helper()
	m := &machine{w: w, root: filepath.Join(t.TempDir(), "root"), stopped: make(chan struct{})}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", w.rootTemplate, m.root).CombinedOutput(); err != nil {
		t.Fatalf("copy the instance root: %v\n%s", err, out)
	}
	script := filepath.Join(m.root, "usr/local/sbin/execd-startup-script")
	unit := filepath.Join(m.root, "etc/systemd/system/execd-startup.service")
	wants := filepath.Join(m.root, "etc/systemd/system/multi-user.target.wants/execd-startup.service")
	// A persistent journal, read by diagnose after the machine stops.
	journal := filepath.Join(m.root, "var/log/journal/x")
	for _, p := range []string{script, unit, wants, journal} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(
		// The instance's name, as a cloud sets it; the executor's name starts with it.
		os.WriteFile(filepath.Join(m.root, "etc/hostname"), []byte(instanceName+"\n"), 0o644),
		os.WriteFile(script, []byte(scriptText), 0o700),
		os.WriteFile(unit, []byte(startupUnit), 0o644),
		os.Symlink("/etc/systemd/system/execd-startup.service", wants),
	); err != nil {
		t.Fatal(err)
	}

	m.log = filepath.Join(filepath.Dir(m.root), "console.log")
	console, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "systemd-nspawn", "--quiet", "-D", m.root, "--boot",
		"--register=no", "--keep-unit", "--machine="+instanceName,
		"--network-namespace-path=/run/netns/"+w.vmNS,
		// Its own network namespace: dockerd and the executor's firewall
		// rules need CAP_NET_ADMIN there, as on a machine of their own.
		"--capability=CAP_NET_ADMIN",
		// runc gives each container a session keyring, which nspawn's
		// default system call filter forbids.
		"--system-call-filter=add_key keyctl")
	cmd.Stdout, cmd.Stderr = console, console
	// SIGTERM asks nspawn to power the container off; it is killed if that
	// takes longer than the wait delay.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	// SIGTERM powers the container off, should the test binary die.
	p, err := startTied(cmd, syscall.SIGTERM)
	if err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	m.nspawn = cmd.Process.Pid
	go func() {
		<-p.done
		m.err = p.err
		close(m.stopped)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.stopped:
		case <-time.After(45 * time.Second):
			t.Errorf("systemd-nspawn did not stop")
		}
		console.Close()
	})
	return m
}

// waitExecutor waits until the instance's executor is listed as active by
// `coordinator executors`.
func (m *machine) waitExecutor(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		out, err := m.w.coordinatorCLI("executors")
		for _, line := range strings.Split(out, "\n") {
			if err == nil && strings.HasPrefix(line, "●") && strings.Contains(line, instanceName) && strings.Contains(line, "batches") {
				t.Logf("coordinator executors:\n%s", out)
				return true
			}
		}
		if m.startupFailed() {
			t.Logf("the start-up script failed")
			return false
		}
		select {
		case <-m.stopped:
			t.Logf("the instance stopped: %v", m.err)
			return false
		case <-time.After(time.Second):
		}
	}
	return false
}

// startupFailed reports whether the start-up script has ended in failure.
func (m *machine) startupFailed() bool {
	result, err := os.ReadFile(filepath.Join(m.root, "var/lib/execd-startup.result"))
	return err == nil && strings.TrimSpace(string(result)) != "success"
}

// readFile returns the contents of a file, nothing if it cannot be read.
func readFile(name string) []byte {
	data, _ := os.ReadFile(name)
	return data
}

// diagnose returns the end of the instance's console and start-up logs.
func (m *machine) diagnose() string {
	var b strings.Builder
	for _, f := range []string{m.log, filepath.Join(m.root, startupLog)} {
		data, _ := os.ReadFile(f)
		if len(data) > 6000 {
			data = data[len(data)-6000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", f, data)
	}
	out, _ := exec.Command("journalctl", "--no-pager", "-D", filepath.Join(m.root, "var/log/journal"), "-u", "executor", "-n", "60").CombinedOutput()
	fmt.Fprintf(&b, "--- journalctl -u executor\n%s\n", out)
	return b.String()
}
