package firecracker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/vm/firecracker"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// js is s as a JSON string.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading from the agent: %q, %v", line, err)
	}
	return line
}

// start starts a VM of spec on the fake; the test fails if it cannot.
func start(t *testing.T, ctx context.Context, h *fakeHost, spec firecracker.Spec) *firecracker.Machine {
	t.Helper()
	m, err := firecracker.Start(ctx, h.bin, spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// dialAgent connects to m's agent and checks the fake guest's first line.
func dialAgent(t *testing.T, ctx context.Context, m *firecracker.Machine) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := m.Agent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if got, want := readLine(t, r), "hello from the guest\n"; got != want {
		t.Errorf("first line from the agent = %q, want %q (bytes after the handshake's OK line lost?)", got, want)
	}
	return conn, r
}

// ping checks that the fake guest's agent echoes what it is sent.
func ping(t *testing.T, conn net.Conn, r *bufio.Reader) {
	t.Helper()
	fmt.Fprintf(conn, "ping\n")
	if got, want := readLine(t, r), "echo: ping\n"; got != want {
		t.Errorf("agent answered %q, want %q", got, want)
	}
}

func TestStart_everyDevice(t *testing.T) {
	h := newFake(t, fakeConfig{Console: "Linux version 6.1.0 (fake)\nexecd-vm-agent: ready\n", AgentPort: 52})
	spec := h.spec(t)
	spec.VCPUs, spec.MemoryMiB = 2, 512
	spec.Drives = append(spec.Drives, firecracker.Drive{ID: "image_0", Path: h.file(t, "image.erofs"), ReadOnly: true})
	spec.Tap, spec.MAC = "fc-tap0", "06-00-AC-10-00-02" // sent as Firecracker parses it
	spec.RxBytesPerSec, spec.TxBytesPerSec = 10_000_000, 5_000_000
	spec.AgentPort = 52
	spec.Label = "execd-vm:executor-1:job-42"
	t.Setenv("EXECUTOR_FRONTEND_PASSWORD", "not for the VMM")
	ctx := testContext(t)

	m := start(t, ctx, h, spec)
	defer m.Kill()

	conn, r := dialAgent(t, ctx, m)
	ping(t, conn, r)
	conn.Close()

	job := h.file(t, "job.img")
	if err := m.UpdateDrive(ctx, "work", job); err != nil {
		t.Fatal(err)
	}

	vm := spec.Dir
	checkRequests(t, h, []string{
		req(t, "PUT", "/logger", `{"log_path": `+js(vm+"/firecracker.log")+`, "level": "Warning", "show_level": true, "show_log_origin": false}`),
		req(t, "PUT", "/boot-source", `{"kernel_image_path": `+js(spec.Kernel)+`, "initrd_path": `+js(spec.Initrd)+`, "boot_args": "console=ttyS0 reboot=k panic=1"}`),
		req(t, "PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 512}`),
		req(t, "PUT", "/drives/work", `{"drive_id": "work", "path_on_host": `+js(spec.Drives[0].Path)+`, "is_root_device": false, "is_read_only": false}`),
		req(t, "PUT", "/drives/image_0", `{"drive_id": "image_0", "path_on_host": `+js(spec.Drives[1].Path)+`, "is_root_device": false, "is_read_only": true}`),
		req(t, "PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "fc-tap0", "guest_mac": "06:00:ac:10:00:02",
			"rx_rate_limiter": {"bandwidth": {"size": 10000000, "refill_time": 1000}},
			"tx_rate_limiter": {"bandwidth": {"size": 5000000, "refill_time": 1000}}}`),
		req(t, "PUT", "/vsock", `{"guest_cid": 3, "uds_path": `+js(vm+"/vsock.sock")+`}`),
		req(t, "PUT", "/actions", `{"action_type": "InstanceStart"}`),
		"VSOCK CONNECT 52",
		req(t, "PATCH", "/drives/work", `{"drive_id": "work", "path_on_host": `+js(job)+`}`),
	})

	args, err := os.ReadFile(h.cfg.Args)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(args), "--api-sock\n"+vm+"/api.sock\n--id\nvm"; got != want {
		t.Errorf("firecracker's arguments = %q, want %q", got, want)
	}
	env, err := os.ReadFile(h.cfg.Args + ".env")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(env), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nEXECD_VM=execd-vm:executor-1:job-42"; got != want {
		t.Errorf("firecracker's environment = %q, want %q", got, want)
	}
	checkContains(t, "Console()", string(m.Console()), "execd-vm-agent: ready\n", "[firecracker.log]\n", "fake guest started")
	consoleFile, _ := os.ReadFile(filepath.Join(vm, "console.log"))
	checkContains(t, "console.log", string(consoleFile), "Linux version 6.1.0 (fake)\n")

	if err := m.Kill(); err != nil {
		t.Errorf("Kill() = %v", err)
	}
	if err := m.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait() after Kill = %v, want the kill", err)
	}
	checkGone(t, h, vm)
	if err := m.Kill(); err != nil {
		t.Errorf("second Kill() = %v, want nil", err)
	}
}

func TestStart_minimal(t *testing.T) {
	h := newFake(t, fakeConfig{})
	spec := h.spec(t)
	spec.Initrd, spec.Cmdline, spec.Drives = "", "", nil
	m := start(t, testContext(t), h, spec)
	defer m.Kill()
	checkRequests(t, h, []string{
		req(t, "PUT", "/logger", `{"log_path": `+js(spec.Dir+"/firecracker.log")+`, "level": "Warning", "show_level": true, "show_log_origin": false}`),
		req(t, "PUT", "/boot-source", `{"kernel_image_path": `+js(spec.Kernel)+`}`),
		req(t, "PUT", "/machine-config", `{"vcpu_count": 1, "mem_size_mib": 256}`),
		req(t, "PUT", "/actions", `{"action_type": "InstanceStart"}`),
	})
	if _, err := m.Agent(testContext(t)); err == nil || !strings.Contains(err.Error(), "no vsock") {
		t.Errorf("Agent() without AgentPort = %v, want an error saying there is no vsock device", err)
	}
}

func TestStart_relativePaths(t *testing.T) {
	h := newFake(t, fakeConfig{})
	spec := h.spec(t)
	t.Chdir(h.dir)
	spec.Kernel, spec.Initrd, spec.Cmdline, spec.Drives[0].Path, spec.Dir = "vmlinux", "./initramfs", "", "work.img", "vm"
	m := start(t, testContext(t), h, spec)
	defer m.Kill()
	got := h.requests(t)
	want := req(t, "PUT", "/boot-source", `{"kernel_image_path": `+js(h.dir+"/vmlinux")+`, "initrd_path": `+js(h.dir+"/initramfs")+`}`)
	if len(got) < 2 || got[1] != want {
		t.Errorf("requests = %q, want the second to be %s", got, want)
	}
	wantDrive := req(t, "PUT", "/drives/work", `{"drive_id": "work", "path_on_host": `+js(h.dir+"/work.img")+`, "is_root_device": false, "is_read_only": false}`)
	if len(got) < 4 || got[3] != wantDrive {
		t.Errorf("requests = %q, want the fourth to be %s", got, wantDrive)
	}
	if m.Dir() != h.dir+"/vm" {
		t.Errorf("Dir() = %q, want %q", m.Dir(), h.dir+"/vm")
	}
}

func TestStart_staleSockets(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 52})
	spec := h.spec(t)
	spec.AgentPort = 52
	os.MkdirAll(spec.Dir, 0o700)
	for _, name := range []string{"api.sock", "vsock.sock"} {
		os.WriteFile(filepath.Join(spec.Dir, name), nil, 0o600)
	}
	m, err := firecracker.Start(testContext(t), h.bin, spec)
	if err != nil {
		t.Fatalf("Start with the sockets of an earlier VM in Dir: %v", err)
	}
	m.Kill()
	checkGone(t, h, spec.Dir)
}

func TestStart_faultMessage(t *testing.T) {
	h := newFake(t, fakeConfig{})
	spec := h.spec(t)
	os.Remove(spec.Kernel)
	_, err := firecracker.Start(testContext(t), h.bin, spec)
	var apiErr *firecracker.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("Start with no kernel file = %v, want an *APIError", err)
	}
	want := firecracker.APIError{Method: "PUT", Path: "/boot-source", StatusCode: 400,
		FaultMessage: "Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)"}
	if *apiErr != want {
		t.Errorf("error = %+v, want %+v", *apiErr, want)
	}
	checkContains(t, "error", err.Error(), "PUT /boot-source: 400 Bad Request: Boot source error: The kernel file cannot be opened")
	checkGone(t, h, spec.Dir)
	if got := h.requests(t); len(got) != 2 {
		t.Errorf("requests = %q, want the logger's and the boot source's only", got)
	}
}

// A failure after the vsock socket exists: InstanceStart refused.
func TestStart_failedInstanceStart(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 52, Fail: map[string]string{
		"PUT /actions": "Start microvm error: Cannot configure virtual machine: Kvm error: Error creating KVM object: No such file or directory (os error 2)",
	}})
	spec := h.spec(t)
	spec.AgentPort = 52
	_, err := firecracker.Start(testContext(t), h.bin, spec)
	checkContains(t, "error", fmt.Sprint(err), "PUT /actions: 400 Bad Request: Start microvm error: Cannot configure virtual machine: Kvm error")
	checkGone(t, h, spec.Dir)
}

func TestStart_invalidSpec(t *testing.T) {
	h := newFake(t, fakeConfig{})
	for _, tt := range []struct {
		name   string
		change func(*firecracker.Spec)
		want   string
	}{
		{"3 vCPUs", func(s *firecracker.Spec) { s.VCPUs = 3 }, "3 vCPUs: Firecracker VMs have 1 or an even number of vCPUs"},
		{"0 vCPUs", func(s *firecracker.Spec) { s.VCPUs = 0 }, "0 vCPUs"},
		{"34 vCPUs", func(s *firecracker.Spec) { s.VCPUs = 34 }, "34 vCPUs"},
		{"no memory", func(s *firecracker.Spec) { s.MemoryMiB = 0 }, "memory of 0 MiB"},
		{"no kernel", func(s *firecracker.Spec) { s.Kernel = "" }, "no kernel"},
		{"drive ID", func(s *firecracker.Spec) { s.Drives[0].ID = "work-1" }, `ID "work-1": must be ASCII letters, digits or underscores`},
		{"drive twice", func(s *firecracker.Spec) { s.Drives = append(s.Drives, s.Drives[0]) }, `ID "work" used twice`},
		{"MAC without tap", func(s *firecracker.Spec) { s.MAC = "06:00:00:00:00:01" }, "without a tap device"},
		{"limit without tap", func(s *firecracker.Spec) { s.RxBytesPerSec = 1 }, "without a tap device"},
		{"bad MAC", func(s *firecracker.Spec) { s.Tap, s.MAC = "tap0", "06:00:00:00:01" }, "not a 6-byte Ethernet address"},
		{"bad tap", func(s *firecracker.Spec) { s.Tap = "a-very-long-tap-name" }, "not a network interface name"},
		{"negative limit", func(s *firecracker.Spec) { s.Tap, s.TxBytesPerSec = "tap0", -1 }, "negative bandwidth limit"},
		{"long Dir", func(s *firecracker.Spec) { s.Dir = "/" + strings.Repeat("d", 100) }, "too long for a Unix socket path"},
		{"no Dir", func(s *firecracker.Spec) { s.Dir = "" }, "no Dir"},
		{"dials without port", func(s *firecracker.Spec) { s.AgentDials = true }, "AgentDials without an AgentPort"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := h.spec(t)
			tt.change(&spec)
			m, err := firecracker.Start(testContext(t), h.bin, spec)
			if err == nil {
				m.Kill()
				t.Fatal("Start succeeded")
			}
			checkContains(t, "error", err.Error(), "invalid spec", tt.want)
		})
	}
	if h.pid() != 0 {
		t.Error("firecracker was started for an invalid spec")
	}
}

func TestStart_noBinary(t *testing.T) {
	h := newFake(t, fakeConfig{})
	_, err := firecracker.Start(testContext(t), filepath.Join(h.dir, "missing"), h.spec(t))
	checkContains(t, "error", fmt.Sprint(err), "no usable", "releases")
}

func TestStart_crash(t *testing.T) {
	h := newFake(t, fakeConfig{CrashAtStart: "Error creating the Kvm object: Permission denied (os error 13)"})
	spec := h.spec(t)
	_, err := firecracker.Start(testContext(t), h.bin, spec)
	checkContains(t, "error", fmt.Sprint(err), "exit status 1", "Error creating the Kvm object: Permission denied")
	checkGone(t, h, spec.Dir)
}

func TestStart_canceledWhileWaitingForAPI(t *testing.T) {
	h := newFake(t, fakeConfig{DelayAPI: time.Minute})
	spec := h.spec(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := firecracker.Start(ctx, h.bin, spec)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start = %v, want the context's deadline", err)
	}
	checkGone(t, h, spec.Dir)
}

func TestStart_canceledDuringRequest(t *testing.T) {
	h := newFake(t, fakeConfig{Hang: "PUT /machine-config"})
	spec := h.spec(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := firecracker.Start(ctx, h.bin, spec)
	checkContains(t, "error", fmt.Sprint(err), "PUT /machine-config", "deadline exceeded")
	checkGone(t, h, spec.Dir)
}

func TestMachine_Agent_retriesWhileGuestBoots(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 52, AgentRefusals: 3})
	spec := h.spec(t)
	spec.AgentPort = 52
	ctx := testContext(t)
	m := start(t, ctx, h, spec)
	defer m.Kill()
	conn, _ := dialAgent(t, ctx, m)
	defer conn.Close()
	got := h.requests(t)
	if n := len(got); n < 4 || strings.Join(got[n-4:], ",") != "VSOCK CONNECT 52,VSOCK CONNECT 52,VSOCK CONNECT 52,VSOCK CONNECT 52" {
		t.Errorf("requests = %q, want 4 CONNECT 52 at the end", got)
	}
}

func TestMachine_Agent_nobodyListens(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 52})
	spec := h.spec(t)
	spec.AgentPort = 1024 // nothing listens there in the fake guest
	m := start(t, testContext(t), h, spec)
	defer m.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := m.Agent(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Agent() = %v, want the context's deadline", err)
	}
	// Firecracker's closing the connection was taken as "not yet": an
	// error not worth a retry would have come before the deadline.
	checkContains(t, "error", fmt.Sprint(err), "vsock port 1024")
}

func TestMachine_Agent_vmExits(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 52})
	spec := h.spec(t)
	spec.AgentPort = 1024
	m := start(t, testContext(t), h, spec)
	time.AfterFunc(100*time.Millisecond, func() { m.Kill() })
	_, err := m.Agent(testContext(t)) // must not wait for its 30 s
	checkContains(t, "error", fmt.Sprint(err), "firecracker exited")
}

func TestMachine_Wait_guestPowersOff(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 52})
	spec := h.spec(t)
	spec.AgentPort = 52
	ctx := testContext(t)
	m := start(t, ctx, h, spec)
	conn, err := m.Agent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "poweroff\n")
	io.Copy(io.Discard, conn)
	conn.Close()
	waitDone(t, m)
	if err := m.Wait(); err != nil {
		t.Errorf("Wait() after the guest powered off = %v, want nil", err)
	}
	checkGone(t, h, spec.Dir)
	if err := m.Kill(); err != nil {
		t.Errorf("Kill() after exit = %v, want nil", err)
	}
	if err := m.UpdateDrive(ctx, "work", spec.Drives[0].Path); err == nil {
		t.Error("UpdateDrive on an exited VM succeeded")
	}
}

func TestMachine_UpdateDrive_errors(t *testing.T) {
	h := newFake(t, fakeConfig{})
	spec := h.spec(t)
	ctx := testContext(t)
	m := start(t, ctx, h, spec)
	defer m.Kill()
	err := m.UpdateDrive(ctx, "scratch", spec.Drives[0].Path)
	var apiErr *firecracker.APIError
	if !errors.As(err, &apiErr) || apiErr.Method != "PATCH" || apiErr.Path != "/drives/scratch" ||
		!strings.Contains(apiErr.FaultMessage, "Unable to patch the block device") {
		t.Errorf("UpdateDrive of an unknown drive = %#v", err)
	}
	n := len(h.requests(t))
	if err := m.UpdateDrive(ctx, "../actions", spec.Drives[0].Path); err == nil {
		t.Error("UpdateDrive with an ID that is not one succeeded")
	}
	if got := len(h.requests(t)); got != n {
		t.Errorf("an invalid drive ID was sent to Firecracker")
	}
}

func TestMachine_Agent_guestDials(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 1024, GuestDials: true})
	spec := h.spec(t)
	spec.AgentPort, spec.AgentDials = 1024, true
	os.MkdirAll(spec.Dir, 0o700)
	os.WriteFile(filepath.Join(spec.Dir, "vsock.sock_1024"), nil, 0o600) // of an earlier VM
	ctx := testContext(t)
	m := start(t, ctx, h, spec)
	defer m.Kill()
	conn, r := dialAgent(t, ctx, m)
	ping(t, conn, r)
	got := h.requests(t)
	if n := len(got); n < 3 || got[n-3] != req(t, "PUT", "/vsock", `{"guest_cid": 3, "uds_path": `+js(spec.Dir+"/vsock.sock")+`}`) ||
		got[n-1] != "VSOCK guest connects to vsock.sock_1024" {
		t.Errorf("requests = %q, want PUT /vsock, InstanceStart, then the guest's connection", got)
	}
	m.Kill()
	checkGone(t, h, spec.Dir)
}

func TestMachine_Agent_guestNeverDials(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 1024})
	spec := h.spec(t)
	spec.AgentPort, spec.AgentDials = 1024, true
	m := start(t, testContext(t), h, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := m.Agent(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Agent() = %v, want the context's deadline", err)
	}
	time.AfterFunc(100*time.Millisecond, func() { m.Kill() })
	_, err := m.Agent(testContext(t))
	checkContains(t, "error", fmt.Sprint(err), "waiting for the guest agent to connect to vsock port 1024", "firecracker exited")
	checkGone(t, h, spec.Dir)
}

func TestStart_guestDials_failure(t *testing.T) {
	h := newFake(t, fakeConfig{AgentPort: 1024, GuestDials: true, Fail: map[string]string{"PUT /actions": "Start microvm error: no KVM"}})
	spec := h.spec(t)
	spec.AgentPort, spec.AgentDials = 1024, true
	_, err := firecracker.Start(testContext(t), h.bin, spec)
	checkContains(t, "error", fmt.Sprint(err), "Start microvm error: no KVM")
	checkGone(t, h, spec.Dir)
}
