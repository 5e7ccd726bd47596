package vm_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/netpolicy"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
	"github.com/execd/execd/internal/sandbox/vm"
	"github.com/execd/execd/internal/sandbox/vm/vmnet"
	"github.com/execd/execd/internal/sandbox/vm/vmtest"
	"github.com/execd/execd/internal/testutil"
)

// testImage is the image of the tests' steps, from the local dockerd:
// built by deploy/images/build-test-images.sh.
var testImage = cmp.Or(os.Getenv("EXECD_DOCKER_TEST_IMAGE"), "execd-test/busybox:latest")

var testOwner = fmt.Sprintf("vm-test-%d", os.Getpid())

// settings are what a test runtime is made of, also in the stand-in
// executor the conformance suite kills.
type settings struct {
	Dir     string
	Assets  string
	Network bool
}

func newRuntime(s settings) *vm.Runtime {
	cfg := vm.Config{Owner: testOwner, Dir: s.Dir, AllowEmulation: true, Assets: s.Assets}
	if s.Network {
		cfg.Firewall = &netpolicy.Firewall{}
	}
	return vm.New(cfg)
}

func TestMain(m *testing.M) {
	sandboxtest.RunHelper(func(raw json.RawMessage) (sandbox.Runtime, error) {
		var s settings
		err := json.Unmarshal(raw, &s)
		return newRuntime(s), err
	})
	os.Exit(m.Run())
}

// needRuntime returns a runtime whose machines run under QEMU (by
// software emulation where there is no KVM), or ends the test.
func needRuntime(t *testing.T, s settings) *vm.Runtime {
	t.Helper()
	rt := newRuntime(s)
	if err := rt.Check(context.Background()); err != nil {
		testutil.Missing(t, "qemu", err.Error())
	}
	if err := exec.Command("docker", "image", "inspect", testImage).Run(); err != nil {
		testutil.Missing(t, "docker", "test image "+testImage+": run deploy/images/build-test-images.sh")
	}
	return rt
}

// leftovers lists what of owner's machines (or of one job's) is on the
// host: monitor processes, and network devices labelled with the owner.
func leftovers(t *testing.T, owner, job string) []string {
	var left []string
	for pid, label := range vm.Monitors() {
		if strings.HasPrefix(label, vm.LabelPrefix+owner+":") && (job == "" || strings.HasPrefix(label, vm.LabelPrefix+owner+":"+job+":")) {
			left = append(left, fmt.Sprintf("monitor %d %s", pid, label))
		}
	}
	taps, err := vmnet.Taps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for tap, l := range taps {
		if l.Owner == owner {
			left = append(left, "tap "+tap)
		}
	}
	return left
}

// TestConformance runs the sandbox conformance suite against micro-VMs.
func TestConformance(t *testing.T) {
	s := settings{Dir: filepath.Join(t.TempDir(), testOwner), Assets: vmtest.Need(t).Dir, Network: os.Geteuid() == 0}
	lockDir(t, s.Dir)
	sandboxtest.Run(t, sandboxtest.Harness{
		Runtime: func(t *testing.T) sandbox.Runtime { return needRuntime(t, s) },
		Image:   testImage,
		Owner:   testOwner,
		Left: func(_ sandbox.Sandbox, opts sandbox.Options) []string {
			return leftovers(t, opts.Owner, opts.JobID)
		},
		Leftovers: func(t *testing.T, opts sandbox.Options) []string { return leftovers(t, opts.Owner, "") },
		Settings:  s,
		Emulated:  needRuntime(t, s).Emulated(),
		PrepareErrors: []sandboxtest.PrepareError{
			{Name: "tiny memory", Modify: func(o *sandbox.Options) { o.MemoryBytes = 1 << 20 }, Want: "minimum"},
		},
	})
}

// lockDir holds dir's lock as a running executor holds its directory's,
// so that other executors' janitors on this host (tests run beside)
// leave the test's machines alone.
func lockDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}
