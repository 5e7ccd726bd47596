package docker_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
	"github.com/execd/execd/internal/testutil"
)

// testImage is the image the tests' steps run in: built without a
// registry by deploy/images/build-test-images.sh.
var testImage = cmp.Or(os.Getenv("EXECD_DOCKER_TEST_IMAGE"), "execd-test/busybox:latest")

var testOwner = fmt.Sprintf("docker-test-%d", os.Getpid())

func TestMain(m *testing.M) {
	sandboxtest.RunHelper(func(settings json.RawMessage) (sandbox.Runtime, error) {
		var cfg docker.Config
		err := json.Unmarshal(settings, &cfg)
		return docker.New(cfg), err
	})
	code := m.Run()
	// Whatever a failed test left behind.
	for _, gvisor := range []bool{false, true} {
		rt := docker.New(docker.Config{GVisor: gvisor})
		if rt.Check(context.Background()) != nil {
			continue
		}
		err := rt.Clean(context.Background(), func(l sandbox.Leftover) bool { return strings.HasPrefix(l.Owner, testOwner) })
		if err != nil {
			fmt.Fprintln(os.Stderr, "remove test containers:", err)
		}
	}
	os.Exit(code)
}

// runtimes are the two flavours every test runs with.
var runtimes = []struct {
	name   string
	gvisor bool
}{
	{"docker", false},
	{"gvisor", true},
}

// forEachRuntime runs f as a subtest for docker and for gvisor, each
// skipped (or failed in CI) when the host cannot run it.
func forEachRuntime(t *testing.T, f func(t *testing.T, rt *docker.Runtime)) {
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) {
			f(t, needRuntime(t, docker.Config{GVisor: r.gvisor}))
		})
	}
}

// needRuntime returns a runtime with cfg, or ends the test when dockerd,
// runsc or the test image is missing (a failure in CI, which provides
// them).
func needRuntime(t testing.TB, cfg docker.Config) *docker.Runtime {
	t.Helper()
	rt := docker.New(cfg)
	part := rt.Name()
	if err := rt.Check(context.Background()); err != nil {
		testutil.Missing(t, part, err.Error())
	}
	if _, err := docker.Client(rt).ImageInspect(context.Background(), testImage); err != nil {
		testutil.Missing(t, part, fmt.Sprintf("test image %s: %v: run deploy/images/build-test-images.sh", testImage, err))
	}
	return rt
}

// prepare prepares a sandbox with opts, defaults filled in: a new job of
// testOwner, a temporary workspace, generous limits and no network. The
// sandbox is destroyed, and its removal checked, when the test ends.
func prepare(t testing.TB, rt *docker.Runtime, opts sandbox.Options) (sandbox.Sandbox, sandbox.Options) {
	t.Helper()
	return sandboxtest.Prepare(t, rt, opts, testOwner, leftOf(t, rt))
}

// leftOf lists the containers and the network of a sandbox of rt.
func leftOf(t testing.TB, rt *docker.Runtime) func(sandbox.Sandbox, sandbox.Options) []string {
	return func(sb sandbox.Sandbox, _ sandbox.Options) []string {
		id, netID, _ := docker.SandboxInfo(sb)
		left := containersOf(t, rt, id)
		if netID != "" && networkExists(t, rt, netID) {
			left = append(left, "network "+netID)
		}
		return left
	}
}

// containersOf returns the IDs of the containers of a sandbox, the one
// holding its network included.
func containersOf(t testing.TB, rt *docker.Runtime, sandboxID string) []string {
	t.Helper()
	return containersLabelled(t, rt, false, docker.LabelSandbox+"="+sandboxID)
}

// stepsOf returns the IDs of the step containers of a sandbox.
func stepsOf(t testing.TB, rt *docker.Runtime, sandboxID string) []string {
	t.Helper()
	return containersLabelled(t, rt, true, docker.LabelSandbox+"="+sandboxID)
}

// containersLabelled lists the containers with every label filter, but
// those holding a job's network when stepsOnly is set.
func containersLabelled(t testing.TB, rt *docker.Runtime, stepsOnly bool, labels ...string) []string {
	t.Helper()
	f := filters.NewArgs()
	for _, l := range labels {
		f.Add("label", l)
	}
	list, err := docker.Client(rt).ContainerList(context.Background(), container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		if !stepsOnly || c.Labels[docker.LabelRole] == "" {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

func networksLabelled(t testing.TB, rt *docker.Runtime, label string) []string {
	t.Helper()
	list, err := docker.Client(rt).NetworkList(context.Background(), network.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", label)),
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range list {
		ids = append(ids, n.ID)
	}
	return ids
}

func networkExists(t testing.TB, rt *docker.Runtime, id string) bool {
	t.Helper()
	_, err := docker.Client(rt).NetworkInspect(context.Background(), id, network.InspectOptions{})
	return err == nil
}

// step returns a step of the test image running commands.
func step(commands ...string) sandbox.Step {
	return sandbox.Step{Key: "test", Image: testImage, Commands: commands}
}

// run runs a step and returns its output.
func run(t testing.TB, sb sandbox.Sandbox, st sandbox.Step) (stdout, stderr string, res sandbox.Result) {
	t.Helper()
	if st.Image == "" {
		st.Image = testImage
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := sb.Run(ctx, st, sandbox.Output{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Run(%q): %v\nstderr:\n%s", st.Commands, err, errb.String())
	}
	return out.String(), errb.String(), res
}

// runOK runs commands and fails the test unless they succeed.
func runOK(t testing.TB, sb sandbox.Sandbox, commands ...string) string {
	t.Helper()
	out, errs, res := run(t, sb, step(commands...))
	if res.ExitCode != 0 {
		t.Fatalf("Run(%q) = exit %d, want 0\nstdout:\n%s\nstderr:\n%s", commands, res.ExitCode, out, errs)
	}
	return out
}

// TestConformance runs the sandbox conformance suite against the docker
// and gvisor runtimes.
func TestConformance(t *testing.T) {
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) {
			var rt *docker.Runtime
			sandboxtest.Run(t, sandboxtest.Harness{
				Runtime: func(t *testing.T) sandbox.Runtime {
					rt = needRuntime(t, docker.Config{GVisor: r.gvisor})
					return rt
				},
				Image: testImage,
				Owner: testOwner,
				Left: func(sb sandbox.Sandbox, opts sandbox.Options) []string {
					return leftOf(t, rt)(sb, opts)
				},
				PrepareErrors: []sandboxtest.PrepareError{
					{Name: "no network", Modify: func(o *sandbox.Options) { o.Network = "" }, Want: "network"},
					{Name: "tiny memory", Modify: func(o *sandbox.Options) { o.MemoryBytes = 1 << 20 }, Want: "minimum"},
					{Name: "bad job credentials", Modify: func(o *sandbox.Options) { o.RegistryAuth = map[string]string{"r.example.com": "!!"} }, Want: "r.example.com"},
				},
				Running: func(t *testing.T, sb sandbox.Sandbox, _ sandbox.Options) []string {
					id, _, _ := docker.SandboxInfo(sb)
					return stepsOf(t, rt, id)
				},
				Leftovers: func(t *testing.T, opts sandbox.Options) []string {
					byJob := docker.LabelJob + "=" + opts.JobID
					left := containersLabelled(t, rt, false, byJob)
					for _, n := range networksLabelled(t, rt, byJob) {
						left = append(left, "network "+n)
					}
					return left
				},
				Settings: docker.Config{GVisor: r.gvisor},
			})
		})
	}
}
