package firecracker_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/vm/firecracker"
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "firecracker" {
		os.Exit(fakeMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeHost is a directory holding the fake firecracker binary, its
// script, what it records, and a VM's files (kernel, initramfs, disks and
// the VM's Dir). Its path is short: Unix socket paths are.
type fakeHost struct {
	dir string
	bin string
	cfg fakeConfig
}

func newFake(t *testing.T, cfg fakeConfig) *fakeHost {
	t.Helper()
	dir, err := os.MkdirTemp("", "fc")
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{dir: dir, bin: filepath.Join(dir, "firecracker")}
	t.Cleanup(func() {
		if pid := h.pid(); pid > 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("fake firecracker %d still runs at the end of the test", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		os.RemoveAll(dir)
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, h.bin); err != nil {
		t.Fatal(err)
	}
	cfg.Record = filepath.Join(dir, "requests.jsonl")
	cfg.PIDFile = filepath.Join(dir, "pid")
	cfg.Args = filepath.Join(dir, "args")
	h.cfg = cfg
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fake.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// path makes an empty file in the host's directory and returns its path.
func (h *fakeHost) file(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// spec is a small VM with one drive, no network and no vsock.
func (h *fakeHost) spec(t *testing.T) firecracker.Spec {
	return firecracker.Spec{
		Kernel:    h.file(t, "vmlinux"),
		Initrd:    h.file(t, "initramfs"),
		Cmdline:   "console=ttyS0 reboot=k panic=1",
		VCPUs:     1,
		MemoryMiB: 256,
		Drives:    []firecracker.Drive{{ID: "work", Path: h.file(t, "work.img")}},
		Dir:       filepath.Join(h.dir, "vm"),
	}
}

// requests returns what the fake recorded, each as "METHOD PATH BODY"
// with the body's JSON in a canonical form (keys sorted, no spaces).
func (h *fakeHost) requests(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(h.cfg.Record)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		var r record
		if err := json.Unmarshal(s.Bytes(), &r); err != nil {
			t.Fatalf("record %q: %v", s.Text(), err)
		}
		got = append(got, canonical(t, r))
	}
	return got
}

func canonical(t *testing.T, r record) string {
	t.Helper()
	s := r.Method + " " + r.Path
	if len(r.Body) == 0 {
		return s
	}
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		return s + " " + string(r.Body) // not JSON: as sent
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return s + " " + string(b)
}

// req is a wanted request, its body in any JSON layout.
func req(t *testing.T, method, path, body string) string {
	return canonical(t, record{Method: method, Path: path, Body: json.RawMessage(body)})
}

func checkRequests(t *testing.T, h *fakeHost, want []string) {
	t.Helper()
	got := h.requests(t)
	for i := 0; i < max(len(got), len(want)); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("request %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

// pid returns the fake's process ID, 0 if it never ran.
func (h *fakeHost) pid() int {
	b, err := os.ReadFile(h.cfg.PIDFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(string(b))
	return n
}

// checkGone checks that the fake ran, was reaped, and that the VM's
// sockets are gone.
func checkGone(t *testing.T, h *fakeHost, dir string) {
	t.Helper()
	pid := h.pid()
	if pid == 0 {
		t.Fatal("the fake firecracker never ran")
	}
	// A child not reaped would be a zombie, which kill(pid, 0) finds.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) = %v, want ESRCH: the process is still there or not reaped", pid, err)
	}
	// api.sock, vsock.sock, and vsock.sock_<port> of a guest that dials.
	if socks, _ := filepath.Glob(filepath.Join(dir, "*.sock*")); len(socks) > 0 {
		t.Errorf("sockets after the VM ended: %q, want them removed", socks)
	}
}

func checkContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s = %q, want it to contain %q", what, got, w)
		}
	}
}

// waitDone fails the test if m does not end within a while.
func waitDone(t *testing.T, m *firecracker.Machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the VM did not end")
	}
}
