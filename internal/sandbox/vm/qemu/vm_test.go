package qemu_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/execd/execd/internal/install/vmguest"
	"github.com/execd/execd/internal/sandbox/vm/agent"
	"github.com/execd/execd/internal/sandbox/vm/qemu"
	"github.com/execd/execd/internal/sandbox/vm/vmm"
	"github.com/execd/execd/internal/testutil"
)

// guestFiles is a kernel and an initramfs holding this source tree's
// agent, made once per test binary.
type guestFiles struct {
	kernel, initramfs string
	kernelRelease     string
	err               error
	part              bool // err is a missing part, not a failure
}

var (
	guestOnce sync.Once
	guest     guestFiles
)

// guestDir is the installed guest (executor install vm) whose kernel and
// modules the tests use: EXECD_VM_GUEST_DIR, or the default.
func guestDir() string {
	if d := os.Getenv("EXECD_VM_GUEST_DIR"); d != "" {
		return d
	}
	return vmguest.DefaultDir
}

// needGuest returns the guest's files, skipping (or, in CI, failing)
// when QEMU, the tools or the installed kernel are missing.
func needGuest(t testing.TB) guestFiles {
	t.Helper()
	guestOnce.Do(func() { guest = makeGuest() })
	if guest.err != nil {
		if guest.part {
			testutil.Missing(t, "qemu", guest.err.Error())
		}
		t.Fatal(guest.err)
	}
	return guest
}

func makeGuest() guestFiles {
	for _, p := range []string{"qemu-system-x86_64", "mkfs.ext4", "mkfs.erofs", "debugfs", "go"} {
		if _, err := exec.LookPath(p); err != nil {
			return guestFiles{err: errors.New(p + " is not installed (executor install vm)"), part: true}
		}
	}
	dir := guestDir()
	kernel, _, err := vmguest.Installed(dir)
	if err != nil {
		return guestFiles{err: err, part: true}
	}
	m, err := vmguest.ReadManifest(dir)
	if err != nil {
		return guestFiles{err: err, part: true}
	}
	mods, err := vmguest.InstalledModules(dir)
	if err != nil {
		return guestFiles{err: err}
	}
	tmp, err := os.MkdirTemp("", "execd-vm-test-")
	if err != nil {
		return guestFiles{err: err}
	}
	bin := filepath.Join(tmp, "agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/execd/execd/cmd/execd-vm-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return guestFiles{err: errors.New("build the agent: " + err.Error() + ": " + string(out))}
	}
	agentBin, err := os.ReadFile(bin)
	if err != nil {
		return guestFiles{err: err}
	}
	initramfs := filepath.Join(tmp, "initramfs.cpio")
	bb := vmguest.StaticBusybox("/bin/busybox")
	if bb == nil {
		return guestFiles{err: errors.New("no static /bin/busybox (apt-get install busybox-static)"), part: true}
	}
	if err := (vmguest.Initramfs{Agent: agentBin, Modules: mods, Busybox: bb}).WriteFile(initramfs); err != nil {
		return guestFiles{err: err}
	}
	return guestFiles{kernel: kernel, initramfs: initramfs, kernelRelease: m.KernelRelease}
}

// busyboxRoot makes a busybox root file system directory with a user
// "builder" (1000:1000) and /etc/marker holding marker.
func busyboxRoot(t *testing.T, marker string) string {
	t.Helper()
	bb := vmguest.StaticBusybox("/bin/busybox")
	if bb == nil {
		testutil.Missing(t, "qemu", "no static /bin/busybox (apt-get install busybox-static)")
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "root", "home/builder", "tmp"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755))
	out, err := exec.Command("/bin/busybox", "--list").Output()
	must(t, err)
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(root, "bin", applet))
		}
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000::/home/builder:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nbuilder:x:1000:\nstaff:x:50:\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "etc/marker"), []byte(marker+"\n"), 0o644))
	return root
}

func mkfsExt4(t *testing.T, dir, image, size string) {
	t.Helper()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", dir, image, size).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestVM boots one VM with an ext4 and an erofs busybox root and an
// ext4 workspace, and runs the steps of a job in it.
func TestVM(t *testing.T) {
	g := needGuest(t)
	tmp := t.TempDir()
	extRoot := filepath.Join(tmp, "root.ext4")
	mkfsExt4(t, busyboxRoot(t, "ext4"), extRoot, "16M")
	eroRoot := filepath.Join(tmp, "root.erofs")
	if out, err := exec.Command("mkfs.erofs", "--quiet", "--all-root", eroRoot, busyboxRoot(t, "erofs")).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v: %s", err, out)
	}
	wsDir := filepath.Join(tmp, "ws")
	must(t, os.MkdirAll(filepath.Join(wsDir, "sub"), 0o777))
	must(t, os.WriteFile(filepath.Join(wsDir, "sub/in.txt"), []byte("from the host\n"), 0o644))
	ws := filepath.Join(tmp, "ws.ext4")
	mkfsExt4(t, wsDir, ws, "32M")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if v, err := (&qemu.Monitor{}).Version(ctx, true); err != nil || !strings.HasPrefix(v, "qemu ") {
		t.Errorf("Version = %q, %v", v, err)
	} else {
		t.Logf("monitor: %s", v)
	}
	start := time.Now()
	m, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{
		Label:  "execd-test-vm:" + t.Name(),
		Kernel: g.kernel, Initramfs: g.initramfs,
		MemoryMiB: 256, AllowEmulation: true,
		Drives: []vmm.Drive{
			{ID: "workspace", Path: ws},
			{ID: "root-ext4", Path: extRoot, ReadOnly: true},
			{ID: "root-erofs", Path: eroRoot, ReadOnly: true, Direct: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	t.Logf("boot to hello: %v", time.Since(start))
	if !labelled("execd-test-vm:" + t.Name()) {
		t.Errorf("no process has %s=execd-test-vm:%s in its environment", vmm.LabelEnv, t.Name())
	}
	if got := m.Agent().Hello().Kernel; got != g.kernelRelease {
		t.Errorf("hello kernel = %q, want %q", got, g.kernelRelease)
	}
	var se *agent.StepError
	if err := m.Agent().MountWorkspace(ctx, "nope"); !errors.As(err, &se) {
		t.Fatalf("mount of a missing drive: %v", err)
	}
	must(t, m.Agent().MountWorkspace(ctx, "workspace"))

	type result struct {
		stdout, stderr string
		exit           agent.Exit
		err            error
	}
	run := func(ctx context.Context, req agent.Run) result {
		t.Helper()
		if req.Root == "" {
			req.Root = "root-ext4"
		}
		req.Workspace = "workspace"
		var stdout, stderr bytes.Buffer
		ex, err := m.Agent().Run(ctx, req, &stdout, &stderr)
		return result{stdout.String(), stderr.String(), ex, err}
	}
	steps := []struct {
		name    string
		req     agent.Run
		stdout  string
		stderr  string
		code    int
		wantErr string
	}{
		{"output and exit code", agent.Run{Commands: []string{"echo out", "echo err >&2", "exit 3"}}, "out\n", "err\n", 3, ""},
		{"set -e", agent.Run{Commands: []string{"false", "echo not reached"}}, "", "", 1, ""},
		{"env", agent.Run{Commands: []string{`echo "$FOO|$HOME|$PATH"`}, Env: []string{"FOO=bar baz"}}, "bar baz|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n", "", 0, ""},
		{"dir", agent.Run{Commands: []string{"pwd", "cat in.txt"}, Dir: "sub"}, "/workspace/sub\nfrom the host\n", "", 0, ""},
		{"missing dir", agent.Run{Commands: []string{"pwd"}, Dir: "nope"}, "", "", 0, `dir "nope" does not exist`},
		{"user by name", agent.Run{Commands: []string{"id -u; id -g; echo $HOME"}, User: "builder"}, "1000\n1000\n/home/builder\n", "", 0, ""},
		{"user by ids", agent.Run{Commands: []string{"id -u; id -g"}, User: "1234:staff"}, "1234\n50\n", "", 0, ""},
		{"unknown user", agent.Run{Commands: []string{"id"}, User: "nobody"}, "", "", 0, "not in the image's /etc/passwd"},
		{"guest kernel", agent.Run{Commands: []string{"uname -r"}}, g.kernelRelease + "\n", "", 0, ""},
		{"loopback up", agent.Run{Commands: []string{"ip link show lo | grep -q UP && echo up"}}, "up\n", "", 0, ""},
		{"initramfs root", agent.Run{Commands: []string{"test -e /init && echo initramfs"}, Root: agent.RootNone}, "initramfs\n", "", 0, ""},
		{"erofs root", agent.Run{Commands: []string{"cat /etc/marker"}, Root: "root-erofs"}, "erofs\n", "", 0, ""},
		{"root write", agent.Run{Commands: []string{"echo x > /etc/written", "cat /etc/written"}}, "x\n", "", 0, ""},
		{"fresh overlay", agent.Run{Commands: []string{"test ! -e /etc/written && echo fresh"}}, "fresh\n", "", 0, ""},
		{"root key", agent.Run{Commands: []string{"cat /etc/marker", "touch /etc/x"}, RootKey: "sha256:ext4"}, "ext4\n", "", 0, ""},
		{"same root key", agent.Run{Commands: []string{"cat /etc/marker", "test ! -e /etc/x"}, RootKey: "sha256:ext4"}, "ext4\n", "", 0, ""},
		{"other root, same drive key", agent.Run{Commands: []string{"cat /etc/marker"}, Root: "root-erofs", RootKey: "sha256:erofs"}, "erofs\n", "", 0, ""},
		{"no such root", agent.Run{Commands: []string{"true"}, Root: "nope"}, "", "", 0, `no drive with the ID "nope"`},
		{"background left", agent.Run{Commands: []string{"sleep 1000 >/dev/null 2>&1 &", "setsid sleep 999 >/dev/null 2>&1 &", "echo started"}}, "started\n", "", 0, ""},
		{"background killed", agent.Run{Commands: []string{"ps -o comm | grep -c sleep || true"}}, "0\n", "", 0, ""},
		{"write workspace", agent.Run{Commands: []string{"echo from the guest > out.txt", "chmod 644 out.txt"}}, "", "", 0, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := run(ctx, s.req)
			if s.wantErr != "" {
				var se *agent.StepError
				if !errors.As(r.err, &se) || !strings.Contains(r.err.Error(), s.wantErr) {
					t.Fatalf("err = %v, want a step error with %q", r.err, s.wantErr)
				}
				if dirErr := strings.Contains(s.wantErr, "dir "); dirErr != (se.Kind == agent.KindDir) {
					t.Errorf("kind = %q", se.Kind)
				}
				return
			}
			if r.err != nil {
				t.Fatalf("Run: %v", r.err)
			}
			if r.stdout != s.stdout || r.stderr != s.stderr || r.exit.Code != s.code {
				t.Errorf("got stdout %q stderr %q code %d, want %q %q %d", r.stdout, r.stderr, r.exit.Code, s.stdout, s.stderr, s.code)
			}
		})
	}

	t.Run("out of memory", func(t *testing.T) {
		r := run(ctx, agent.Run{Commands: []string{"tail /dev/zero"}})
		if r.err != nil || r.exit.Code != 137 || !r.exit.OOMKilled {
			t.Fatalf("got %+v, want code 137, OOM killed", r)
		}
		if r := run(ctx, agent.Run{Commands: []string{"true"}}); r.err != nil || r.exit.OOMKilled {
			t.Fatalf("the next step: %+v", r)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		stepCtx, stop := context.WithCancel(ctx)
		defer stop()
		var canceledAt time.Time
		w := writerFunc(func(p []byte) (int, error) {
			if canceledAt.IsZero() {
				canceledAt = time.Now()
				stop()
			}
			return len(p), nil
		})
		ex, err := m.Agent().Run(stepCtx, agent.Run{Commands: []string{"echo started", "sleep 1000", "echo not reached"}, Root: "root-ext4", Workspace: "workspace"}, w, w)
		if !errors.Is(err, context.Canceled) || !ex.Canceled || ex.Code != 137 {
			t.Fatalf("Run = %+v, %v; want canceled with 137", ex, err)
		}
		t.Logf("canceled step ended %v after the cancel", time.Since(canceledAt))
		if r := run(ctx, agent.Run{Commands: []string{"echo alive"}}); r.err != nil || r.stdout != "alive\n" {
			t.Fatalf("after cancel: %+v", r)
		}
	})

	must(t, m.Agent().Shutdown())
	waited := make(chan error, 1)
	go func() { waited <- m.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the VM did not power off; console:\n%s", m.Console())
	}
	t.Logf("whole VM: %v", time.Since(start))
	out, err := exec.Command("debugfs", "-R", "cat /out.txt", ws).Output()
	if err != nil || string(out) != "from the guest\n" {
		t.Fatalf("workspace's out.txt = %q, %v", out, err)
	}
}

// TestVM_Network: a VM on a tap reaches the host's end of it, with the
// address, route and resolver of the kernel command line.
func TestVM_Network(t *testing.T) {
	g := needGuest(t)
	if os.Geteuid() != 0 {
		t.Skip("making a tap device needs root")
	}
	tap := fmt.Sprintf("execdt%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "tuntap", "add", "dev", tap, "mode", "tap").CombinedOutput(); err != nil {
		t.Fatalf("ip tuntap add: %v: %s", err, out)
	}
	defer exec.Command("ip", "link", "del", tap).Run()
	for _, args := range [][]string{{"addr", "add", "10.254.77.1/30", "dev", tap}, {"link", "set", tap, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{
		Kernel: g.kernel, Initramfs: g.initramfs, MemoryMiB: 256, AllowEmulation: true,
		Net: &vmm.Net{
			Tap:     tap,
			MAC:     "02:00:0a:fe:4d:02", // the guest finds its interface by it
			Address: netip.MustParsePrefix("10.254.77.2/30"),
			Gateway: netip.MustParseAddr("10.254.77.1"),
			DNS:     []netip.Addr{netip.MustParseAddr("10.254.77.1")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	var stdout, stderr bytes.Buffer
	ex, err := m.Agent().Run(ctx, agent.Run{Commands: []string{"ping -c 1 -W 10 10.254.77.1 >/dev/null", "echo reached", "grep nameserver /etc/resolv.conf", "ip route | grep default"}, Root: agent.RootNone}, &stdout, &stderr)
	if err != nil || ex.Code != 0 {
		t.Fatalf("step: %+v, %v; stderr %s; console:\n%s", ex, err, stderr.String(), m.Console())
	}
	if want := "reached\nnameserver 10.254.77.1\ndefault via 10.254.77.1 dev eth0 "; !strings.HasPrefix(stdout.String(), want) {
		t.Errorf("stdout = %q, want %q...", stdout.String(), want)
	}
	m.Agent().Shutdown()
	must(t, m.Wait())
}

// TestVM_HostileGuest: a guest whose init says Hello and then writes
// garbage, or claims a huge frame, fails the step with a protocol error;
// the host goes on.
func TestVM_HostileGuest(t *testing.T) {
	g := needGuest(t)
	mods, err := vmguest.InstalledModules(guestDir())
	must(t, err)
	for name, garbage := range map[string]string{
		"garbage":    `printf 'Zgarbage'`,
		"huge frame": `printf 'o\377\377\377\377'`,
	} {
		t.Run(name, func(t *testing.T) {
			// An init of busybox sh, with the modules the agent would load.
			script := `#!/bin/sh
b=/bin/busybox
$b mount -t devtmpfs dev /dev; $b mount -t proc proc /proc; $b mount -t sysfs sys /sys
for m in /lib/modules/*.ko; do $b insmod $m; done
for p in /sys/class/virtio-ports/*; do [ "$($b cat $p/name)" = org.execd.agent ] && dev=/dev/${p##*/}; done
exec 3<>$dev
printf 'H\000\000\000\015{"version":1}' >&3
` + garbage + ` >&3
$b sleep 1000
`
			initramfs := filepath.Join(t.TempDir(), "hostile.cpio")
			must(t, (vmguest.Initramfs{Agent: []byte(script), Modules: mods, Busybox: vmguest.StaticBusybox("/bin/busybox")}).WriteFile(initramfs))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			m, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{Kernel: g.kernel, Initramfs: initramfs, MemoryMiB: 256, AllowEmulation: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Kill()
			_, err = m.Agent().Run(ctx, agent.Run{Commands: []string{"true"}, Root: agent.RootNone}, io.Discard, io.Discard)
			var pe *agent.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Run = %v, want a protocol error", err)
			}
			t.Logf("the host says: %v", err)
			must(t, m.Kill())
			select {
			case <-m.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the VM still runs 10 s after Kill")
			}
			must(t, m.Wait())
		})
	}
}

// TestStart_BootFailure: a guest that cannot boot is an error quoting its
// console.
func TestStart_BootFailure(t *testing.T) {
	g := needGuest(t)
	bad := filepath.Join(t.TempDir(), "bad.cpio.gz")
	must(t, os.WriteFile(bad, []byte("not an initramfs"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{Kernel: g.kernel, Initramfs: bad, AllowEmulation: true})
	if err == nil || !strings.Contains(err.Error(), "console:") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Fatalf("Start = %v, want an error quoting the kernel's panic", err)
	}
}

// labelled reports whether a process carries name as vmm.LabelEnv.
func labelled(name string) bool {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		env, err := os.ReadFile(filepath.Join("/proc", p.Name(), "environ"))
		if err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+vmm.LabelEnv+"="+name+"\x00")) {
			return true
		}
	}
	return false
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// BenchmarkTrueStep boots a VM, runs `true` in the initramfs's root and
// shuts the VM down: one whole step, from QEMU's start to its exit. It
// reports the boot (QEMU's start to the agent's Hello) apart.
func BenchmarkTrueStep(b *testing.B) {
	g := needGuest(b)
	var boot time.Duration
	for b.Loop() {
		ctx := context.Background()
		start := time.Now()
		m, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{Kernel: g.kernel, Initramfs: g.initramfs, AllowEmulation: true, MemoryMiB: 256})
		if err != nil {
			b.Fatal(err)
		}
		boot += time.Since(start)
		ex, err := m.Agent().Run(ctx, agent.Run{Commands: []string{"true"}, Root: agent.RootNone}, nil, nil)
		if err != nil || ex.Code != 0 {
			b.Fatalf("true: %+v, %v", ex, err)
		}
		must(b, m.Agent().Shutdown())
		must(b, m.Wait())
	}
	b.ReportMetric(float64(boot.Milliseconds())/float64(b.N), "boot-ms/op")
}

// BenchmarkStep runs `true` in a running VM: in the initramfs's root;
// in an image root mounted afresh (with a fresh overlay) each step; and
// in the image of the step before (RootKey: the mount is kept).
func BenchmarkStep(b *testing.B) {
	g := needGuest(b)
	root := filepath.Join(b.TempDir(), "root.erofs")
	dir := b.TempDir()
	must(b, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	must(b, os.WriteFile(filepath.Join(dir, "bin/busybox"), vmguest.StaticBusybox("/bin/busybox"), 0o755))
	must(b, os.Symlink("busybox", filepath.Join(dir, "bin/sh")))
	must(b, os.Symlink("busybox", filepath.Join(dir, "bin/true")))
	if out, err := exec.Command("mkfs.erofs", "--quiet", "--all-root", root, dir).CombinedOutput(); err != nil {
		b.Fatalf("mkfs.erofs: %v: %s", err, out)
	}
	ctx := context.Background()
	m, err := (&qemu.Monitor{}).Start(ctx, vmm.Spec{Kernel: g.kernel, Initramfs: g.initramfs, AllowEmulation: true, MemoryMiB: 256,
		Drives: []vmm.Drive{{ID: "root", Path: root, ReadOnly: true}}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Kill()
	for _, c := range []struct{ name, root, key string }{
		{"initramfs", agent.RootNone, ""},
		{"image", "root", ""},
		{"same-image", "root", "sha256:1"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				ex, err := m.Agent().Run(ctx, agent.Run{Commands: []string{"true"}, Root: c.root, RootKey: c.key}, nil, nil)
				if err != nil || ex.Code != 0 {
					b.Fatalf("true: %+v, %v", ex, err)
				}
			}
		})
	}
}
