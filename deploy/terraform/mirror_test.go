package terraform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/execd/execd/internal/install"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/diskimage"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/testutil/netns"
)

// mirrorTemplate is the docker registry mirror's start-up script, whose
// REGISTRY_CONFIG heredoc is the registry's configuration.
const mirrorTemplate = "modules/startup/docker-mirror.sh.tftpl"

// registryBinary is Debian's build of the distribution registry (package
// docker-registry, 2.8.2 in bookworm); the cloud mirror runs the
// registry:2.8.3 image, one patch release ahead.
const registryBinary = "/usr/bin/docker-registry"

// TestDockerMirror runs the mirror's registry configuration for real: an
// upstream registry standing in for Docker Hub, the mirror as a
// pull-through cache of it, and a dockerd configured the way `executor
// install docker` configures an executor's, pulling Docker Hub short
// names. Nothing here reaches the internet, so a pull that succeeds went
// through the mirror.
func TestDockerMirror(t *testing.T) {
	// Rendered before anything is looked for: a broken template fails
	// even where the test cannot run.
	tmpl, err := os.ReadFile(mirrorTemplate)
	if err != nil {
		t.Fatal(err)
	}
	mirrorData := filepath.Join(t.TempDir(), "registry")
	config, err := renderMirrorConfig(tmpl, "http://{{upstream}}", mirrorData)
	if err != nil {
		t.Fatalf("%s: %v", mirrorTemplate, err)
	}

	if _, err := os.Stat(registryBinary); err != nil {
		testutil.Missing(t, "registry", fmt.Sprintf("%v: apt-get install docker-registry", err))
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		testutil.Missing(t, "docker", "dockerd: "+err.Error())
	}
	dockerCLI, err := exec.LookPath("docker")
	if err != nil {
		testutil.Missing(t, "docker", "the docker CLI: "+err.Error())
	}

	upstream := startRegistry(t, "upstream", nil)
	tag := strconv.Itoa(os.Getpid())
	// Each image is a Docker Hub official image to dockerd (library/...):
	// one pulled by dockerd, one by the executor's runtime, and one that
	// never reaches the cache.
	pushed := map[string]v1.Image{}
	for _, repo := range []string{"execd-mirror-test", "execd-mirror-test-executor", "execd-mirror-test-uncached"} {
		pushed[repo] = pushImage(t, upstream.host+"/library/"+repo+":"+tag, repo)
	}

	config = bytes.ReplaceAll(config, []byte("{{upstream}}"), []byte(upstream.host))
	mirror := startRegistry(t, "mirror", config)
	mirrorURL := "http://" + mirror.host

	d := startDockerd(t, dockerd, dockerCLI, mirrorURL)

	ref := "execd-mirror-test:" + tag // a Docker Hub short name
	// The rest means little if this fails.
	if !t.Run("pull through the mirror", func(t *testing.T) {
		out, err := d.docker("pull", ref)
		if err != nil {
			t.Fatalf("docker pull %s: %v\n%s\ndockerd's log:\n%s", ref, err, out, d.log())
		}
		want := digestOf(t, pushed["execd-mirror-test"])
		if !strings.Contains(out, "Digest: "+want.String()) {
			t.Errorf("docker pull %s printed\n%s\nwant the pushed digest %s", ref, out, want)
		}
		repoDigests, err := d.docker("image", "inspect", "--format", `{{join .RepoDigests "\n"}}`, ref)
		if err != nil || !strings.Contains(repoDigests, "@"+want.String()) {
			t.Errorf("docker image inspect %s: repo digests %q (%v), want one @%s", ref, repoDigests, err, want)
		}
		// The cache filled: the mirror stores what it served, on its own.
		waitBlobs(t, mirrorData, pushed["execd-mirror-test"])
	}) {
		return
	}

	t.Run("metrics", func(t *testing.T) {
		metrics := get(t, "http://"+mirror.debugHost+"/metrics", "text/plain")
		for _, want := range []string{
			"# TYPE registry_http_requests_total counter",
			`registry_http_requests_total{code="200",handler="manifest",method="get"}`,
			`registry_http_requests_total{code="200",handler="blob",method="get"}`,
			"# TYPE registry_storage_action_seconds histogram",
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("the mirror's Prometheus metrics lack %q:\n%s", want, grepLines(metrics, "# TYPE"))
			}
		}
		// 2.8 has no Prometheus series of its cache (registry_proxy_*):
		// it counts in expvar, and there only its manifest counters tell
		// a miss; its blob counters call every blob request a hit and
		// count no bytes pulled (the storage check above covers blobs).
		p := proxyStats(t, mirror)
		if p.Manifests.Misses != 1 || p.Manifests.BytesPulled == 0 || p.Blobs.BytesPushed == 0 {
			t.Errorf("the mirror's proxy counters %+v: want one manifest pulled from the upstream (a miss), and blobs served", p)
		}
	})

	t.Run("executor pull path", func(t *testing.T) {
		ref := "execd-mirror-test-executor:" + tag
		out, err := executorPull(t, d.host, mirrorURL, ref)
		if err != nil {
			t.Fatalf("Pull(%s): %v\n%s", ref, err, out)
		}
		if want := "pulling " + mirror.host + "/library/" + ref; !strings.Contains(out, want) {
			t.Errorf("Pull output lacks %q:\n%s", want, out)
		}
		want := digestOf(t, pushed["execd-mirror-test-executor"])
		repoDigests, err := d.docker("image", "inspect", "--format", `{{join .RepoDigests "\n"}}`, ref)
		if err != nil || !strings.Contains(repoDigests, "@"+want.String()) {
			t.Errorf("docker image inspect %s: repo digests %q (%v), want one @%s", ref, repoDigests, err, want)
		}
		waitBlobs(t, mirrorData, pushed["execd-mirror-test-executor"])
	})

	// Docker Hub down (or the way to it): what the cache holds still pulls.
	upstream.stop(t)

	t.Run("upstream down", func(t *testing.T) {
		uncached := "execd-mirror-test-uncached:" + tag
		out, err := d.docker("pull", uncached)
		if err == nil {
			t.Fatalf("docker pull %s with the upstream stopped succeeded:\n%s", uncached, out)
		}
		// The mirror answers "manifest unknown"; dockerd then tries Docker
		// Hub and reports only its error (no such host here; with the
		// internet, that the repository does not exist).
		t.Logf("docker pull %s with the upstream stopped: %v\n%s", uncached, err, out)
		if !strings.Contains(out, "registry-1.docker.io") && !strings.Contains(out, "pull access denied") {
			t.Errorf("docker pull %s failed without Docker Hub's error:\n%s", uncached, out)
		}
		if !mirror.logged("manifest unknown", "library/execd-mirror-test-uncached/manifests/"+tag) {
			t.Errorf("the mirror did not answer dockerd's request for %s with manifest unknown:\n%s", uncached, tail(mirror.log(), 20))
		}
		// The executor's own pull names each registry it tried.
		out, err = executorPull(t, d.host, mirrorURL, uncached)
		if want := "pull from " + mirror.host + " failed"; err == nil || !strings.Contains(out, want) {
			t.Errorf("executor Pull(%s) with the upstream stopped: %v, output\n%s\nwant an error, and %q", uncached, err, out, want)
		}

		before := proxyStats(t, mirror)
		if out, err := d.docker("image", "rm", ref); err != nil {
			t.Fatalf("docker image rm %s: %v\n%s", ref, err, out)
		}
		out, err = d.docker("pull", ref)
		if err != nil {
			t.Fatalf("docker pull %s from the cache with the upstream stopped: %v\n%s\ndockerd's log:\n%s", ref, err, out, tail(d.log(), 40))
		}
		if want := digestOf(t, pushed["execd-mirror-test"]); !strings.Contains(out, "Digest: "+want.String()) {
			t.Errorf("docker pull %s from the cache printed\n%s\nwant the pushed digest %s", ref, out, want)
		}
		if after := proxyStats(t, mirror); after.Manifests.Hits <= before.Manifests.Hits || after.Manifests.Misses != before.Manifests.Misses {
			t.Errorf("the mirror's manifest counters went from %+v to %+v: want a hit, no miss", before.Manifests, after.Manifests)
		}
	})

	t.Run("mirror start with upstream down", func(t *testing.T) {
		// 2.8 asks the upstream for its authentication challenge when it
		// starts, and panics when it cannot: on the cloud, docker's
		// --restart always (docker-mirror.sh.tftpl) restarts it until
		// Docker Hub answers.
		r := startRegistryProcess(t, "second mirror", config, onLoopback(t))
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("the mirror started with its upstream down:\n%s", r.log())
		}
		if log := r.log(); !strings.Contains(log, "panic:") || !strings.Contains(log, upstream.host) {
			t.Errorf("the mirror exited without naming its upstream %s:\n%s", upstream.host, log)
		}
	})
}

// renderMirrorConfig returns the registry configuration of the mirror's
// start-up script: its REGISTRY_CONFIG heredoc with the template's
// variables filled in, served on loopback, storing in dataDir and
// caching remote instead of Docker Hub. Each change must apply, so that
// a template that no longer reads as expected fails here.
func renderMirrorConfig(tmpl []byte, remote, dataDir string) ([]byte, error) {
	m := regexp.MustCompile(`(?s)<<'REGISTRY_CONFIG'\n(.*?\n)REGISTRY_CONFIG\n`).FindSubmatch(tmpl)
	if m == nil {
		return nil, errors.New("no <<'REGISTRY_CONFIG' ... REGISTRY_CONFIG heredoc (the registry's configuration)")
	}
	config := string(m[1])
	for _, r := range []struct{ old, new string }{
		// The template's variables (the ports are picked by startRegistry).
		{"${port}", "{{port}}"},
		{"${metrics_port}", "{{debug_port}}"},
		// The container's path, where the script mounts ${data_dir}.
		{"rootdirectory: /var/lib/registry\n", "rootdirectory: " + dataDir + "\n"},
		{"remoteurl: https://registry-1.docker.io\n", "remoteurl: " + remote + "\n"},
		// All interfaces on the cloud; the test's address ({{ip}}) here.
		{"addr: :", "addr: {{ip}}:"},
	} {
		if !strings.Contains(config, r.old) {
			return nil, fmt.Errorf("the REGISTRY_CONFIG heredoc has no %q:\n%s", r.old, config)
		}
		config = strings.ReplaceAll(config, r.old, r.new)
	}
	if v := regexp.MustCompile(`\$\{[^}]*\}`).FindString(config); v != "" {
		return nil, fmt.Errorf("the REGISTRY_CONFIG heredoc uses %s, which this test does not fill in:\n%s", v, config)
	}
	return []byte(config), nil
}

// registryProcess is a running docker-registry.
type registryProcess struct {
	host, debugHost string // ip:port
	client          *http.Client
	cmd             *exec.Cmd
	exited          chan struct{}
	logPath         string
}

// registryAt is where a registry listens: a network namespace ("" for the
// test's own), an address and two ports.
type registryAt struct{ ns, ip, port, debugPort string }

// onLoopback is the test's loopback, with ports that were free a moment
// ago (the registry does not report a port it picked).
func onLoopback(t *testing.T) registryAt {
	return registryAt{ip: "127.0.0.1", port: freePort(t), debugPort: freePort(t)}
}

// startRegistry starts the registry with config on loopback and waits
// until it answers; see startRegistryAt.
func startRegistry(t *testing.T, label string, config []byte) *registryProcess {
	t.Helper()
	return startRegistryAt(t, label, config, onLoopback(t))
}

// startRegistryAt starts the registry with config, in which {{ip}},
// {{port}} and {{debug_port}} are replaced by at's, and waits until it
// answers. A nil config is a plain registry.
func startRegistryAt(t *testing.T, label string, config []byte, at registryAt) *registryProcess {
	t.Helper()
	r := startRegistryProcess(t, label, config, at)
	waitFor(t, label+" registry", r.exited, r.log, func() bool {
		resp, err := r.client.Get("http://" + r.host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// startRegistryProcess starts the registry as startRegistryAt does,
// without waiting for it.
func startRegistryProcess(t *testing.T, label string, config []byte, at registryAt) *registryProcess {
	t.Helper()
	dir := t.TempDir()
	if config == nil {
		config = []byte("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + filepath.Join(dir, "data") +
			"\nhttp:\n  addr: {{ip}}:{{port}}\n")
	}
	r := &registryProcess{
		host:      net.JoinHostPort(at.ip, at.port),
		debugHost: net.JoinHostPort(at.ip, at.debugPort),
		client:    nsClient(at.ns),
		logPath:   filepath.Join(dir, "log"),
	}
	config = bytes.ReplaceAll(config, []byte("{{ip}}"), []byte(at.ip))
	config = bytes.ReplaceAll(config, []byte("{{port}}"), []byte(at.port))
	config = bytes.ReplaceAll(config, []byte("{{debug_port}}"), []byte(at.debugPort))
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, config, 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	r.cmd = exec.Command(registryBinary, "serve", configPath)
	if at.ns != "" {
		r.cmd = exec.Command("ip", "netns", "exec", at.ns, registryBinary, "serve", configPath)
	}
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	// Gone with the test binary, even one killed before its cleanups.
	p, err := startTied(r.cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatalf("start the %s registry: %v", label, err)
	}
	r.exited = p.done
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("the %s registry's configuration:\n%s\nthe end of its log:\n%s", label, config, tail(r.log(), 30))
		}
	})
	return r
}

func (r *registryProcess) log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// logged reports whether a line of the registry's log has every one of
// subs.
func (r *registryProcess) logged(subs ...string) bool {
	for _, line := range strings.Split(r.log(), "\n") {
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(line, s) }) {
			return true
		}
	}
	return false
}

// stop stops the registry now, before the test ends.
func (r *registryProcess) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatalf("stop the registry on %s: %v", r.host, err)
	}
	<-r.exited
}

// executorPull pulls ref as the executor's docker runtime does
// (internal/sandbox/docker/pull.go): a Docker Hub image from the registry
// mirror itself, then from Docker Hub, through the dockerd at host. It
// returns the pull's output.
func executorPull(t *testing.T, host, mirrorURL, ref string) (string, error) {
	t.Helper()
	rt := docker.New(docker.Config{Host: host, RegistryMirrors: []string{mirrorURL}})
	sb, err := rt.Prepare(context.Background(), sandboxtest.Options(t, sandbox.Options{}, "mirror-test"))
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	defer func() {
		if err := sb.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}()
	var out strings.Builder
	err = sb.(sandbox.Puller).Pull(context.Background(), ref, &out)
	return out.String(), err
}

// pushImage pushes a small image (one layer, one file naming it) to ref.
func pushImage(t *testing.T, ref, content string) v1.Image {
	t.Helper()
	layer, err := crane.Layer(map[string][]byte{"hello.txt": []byte(content + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	// dockerd refuses an image of no platform.
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// waitBlobs waits until the registry storing in dataDir holds img's
// manifest, config and layers: a pull-through cache stores a blob in the
// background while it serves it.
func waitBlobs(t *testing.T, dataDir string, img v1.Image) {
	t.Helper()
	want := []v1.Hash{digestOf(t, img)}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, cfg)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, d)
	}
	blobPath := func(h v1.Hash) string {
		return filepath.Join(dataDir, "docker/registry/v2/blobs", h.Algorithm, h.Hex[:2], h.Hex, "data")
	}
	var missing []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		missing = missing[:0]
		for _, h := range want {
			if _, err := os.Stat(blobPath(h)); err != nil {
				missing = append(missing, h.String())
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mirror's storage %s lacks the blobs %s after the pull", dataDir, missing)
		}
	}
}

// throwawayDockerd is a dockerd of the test's own, beside any other.
type throwawayDockerd struct {
	host           string // unix:///...
	cli, dockerCfg string
	logPath        string
}

// startDockerd starts a dockerd in a new directory under /tmp (the
// socket's path must be short) with a daemon.json made by
// install.MergeDaemonConfig, as `executor install docker` writes it. It
// makes no bridge and leaves the host's firewall alone.
func startDockerd(t *testing.T, dockerd, cli, mirrorURL string) *throwawayDockerd {
	t.Helper()
	root, err := os.MkdirTemp("/tmp", "execd-mirror-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Once dockerd is gone: what it mounted, then its files.
		if err := diskimage.UnmountUnder(root); err != nil {
			t.Errorf("unmount under %s: %v", root, err)
		}
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("remove dockerd's directory: %v", err)
		}
	})
	if err := install.CheckMirror(mirrorURL); err != nil {
		t.Fatal(err)
	}
	merged, err := install.MergeDaemonConfig(nil, install.DaemonSettings{RegistryMirrors: []string{mirrorURL}})
	if err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(root, "daemon.json")
	if err := os.WriteFile(configPath, merged.Content, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &throwawayDockerd{
		host:      "unix://" + filepath.Join(root, "docker.sock"),
		cli:       cli,
		dockerCfg: filepath.Join(root, "cli"), // no credential helpers of the host's
		logPath:   filepath.Join(root, "dockerd.log"),
	}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// A containerd namespace of its own, in case dockerd shares the
	// host's containerd (it does when /run/containerd/containerd.sock
	// exists); vfs, as the pulled images are tiny and it mounts nothing.
	ns := filepath.Base(root)
	cmd := exec.Command(dockerd,
		"--config-file", configPath,
		"--data-root", filepath.Join(root, "data"),
		"--exec-root", filepath.Join(root, "exec"),
		"--pidfile", filepath.Join(root, "dockerd.pid"),
		"-H", d.host,
		"--bridge=none", "--iptables=false", "--ip-forward=false",
		"--storage-driver=vfs",
		"--containerd-namespace", ns, "--containerd-plugins-namespace", ns+"-plugins",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a containerd it starts goes with it. Told
	// to stop if the test binary dies before its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := startTied(cmd, syscall.SIGTERM)
	if err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := p.done
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("dockerd did not stop in 30s; killing it")
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("the end of the test's dockerd's log:\n%s", tail(d.log(), 40))
		}
	})
	waitFor(t, "dockerd", exited, d.log, func() bool {
		_, err := d.docker("version")
		return err == nil
	})
	// What `executor install docker` checks after restarting dockerd.
	if out, err := d.docker("info", "--format", "{{json .RegistryConfig.Mirrors}}"); err != nil || !strings.Contains(out, mirrorURL) {
		t.Fatalf("dockerd does not use the registry mirror %s: %s (%v)", mirrorURL, out, err)
	}
	return d
}

// docker runs the docker CLI against the test's dockerd, returning its
// output and error output together.
func (d *throwawayDockerd) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, append([]string{"-H", d.host}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+d.dockerCfg)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *throwawayDockerd) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// waitFor waits up to a minute for ready, failing early when the
// process exits.
func waitFor(t *testing.T, what string, exited <-chan struct{}, log func() string, ready func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ready(); time.Sleep(100 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("the %s exited:\n%s", what, log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %s is not ready after a minute:\n%s", what, log())
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// tiedProcess is a process started by startTied.
type tiedProcess struct {
	done chan struct{} // closed when it has exited
	err  error         // cmd.Wait's, once done is closed
}

// startTied starts cmd so that it gets sig when the test binary dies, even
// killed before its cleanups. The death signal follows the thread that
// started the child, and a goroutine that locked its thread into a network
// namespace (netns.Do) ends that thread when it returns: so the child is
// started from a thread of its own that lives as long as the child.
func startTied(cmd *exec.Cmd, sig syscall.Signal) (*tiedProcess, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	p := &tiedProcess{done: make(chan struct{})}
	started := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, <-started
}

// nsClient is an HTTP client whose connections are made in network
// namespace ns (the test's own for ""), so it reaches servers there.
func nsClient(ns string) *http.Client {
	return &http.Client{Transport: nsTransport(ns)}
}

func nsTransport(ns string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		// A socket stays in the namespace it was made in, whichever
		// thread uses it later.
		err = netns.Do(ns, func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
}

// get returns the body of url, which must be of the media type ct.
func get(t *testing.T, url, ct string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, body)
	}
	if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, ct) {
		t.Errorf("GET %s: Content-Type %q, want %s", url, got, ct)
	}
	return string(body)
}

// proxyCounters are a pull-through cache's counters, for blobs or for
// manifests, in the registry's expvar.
type proxyCounters struct {
	Requests, Hits, Misses, BytesPulled, BytesPushed int64
}

// proxyStats returns the registry's pull-through cache counters, from
// /debug/vars on its debug address.
func proxyStats(t *testing.T, r *registryProcess) (p struct{ Blobs, Manifests proxyCounters }) {
	t.Helper()
	body := get(t, "http://"+r.debugHost+"/debug/vars", "application/json")
	var vars struct {
		Registry struct {
			Proxy *struct{ Blobs, Manifests proxyCounters }
		}
	}
	if err := json.Unmarshal([]byte(body), &vars); err != nil || vars.Registry.Proxy == nil {
		t.Fatalf("the registry's /debug/vars has no registry.proxy counters (%v):\n%s", err, body)
	}
	return *vars.Registry.Proxy
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
