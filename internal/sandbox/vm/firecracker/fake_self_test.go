package firecracker_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFake_refuses checks that the fake refuses what Firecracker refuses,
// so that the tests' requests passing it means something beyond their
// exact bodies.
func TestFake_refuses(t *testing.T) {
	h := newFake(t, fakeConfig{})
	sock := filepath.Join(h.dir, "api.sock")
	cmd := exec.Command(h.bin, "--api-sock", sock, "--id", "self-test")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the fake does not serve its API")
		}
	}
	kernel := h.file(t, "vmlinux")
	for _, tt := range []struct{ method, path, body, want string }{
		{"PUT", "/machine-config", `{"vcpu_count": 3, "mem_size_mib": 128, "smt": true}`, "The number of vCPUs must be"},
		{"PUT", "/machine-config", `{"vcpu_count": 33, "mem_size_mib": 128}`, "The number of vCPUs must be"},
		{"PUT", "/machine-config", `{"vcpu_count": 2, "mem_size_mib": 128, "cpus": 2}`, "unknown field `cpus`"},
		{"PUT", "/machine-config", `{"vcpu_count": "2", "mem_size_mib": 128}`, "invalid type for field `vcpu_count`"},
		{"PUT", "/machine-config", `{"vcpu_count": 2}`, "missing field `mem_size_mib`"},
		{"PUT", "/boot-source", `{"kernel_image_path": "/nonexistent"}`, "The kernel file cannot be opened"},
		{"PUT", "/drives/a", `{"drive_id": "b", "path_on_host": "` + kernel + `", "is_root_device": false, "is_read_only": true}`, "does not match"},
		{"PUT", "/drives/a", `{"drive_id": "a", "path_on_host": "` + kernel + `", "is_root_device": false}`, "is_read_only is required"},
		{"PATCH", "/drives/a", `{"drive_id": "a", "path_on_host": "` + kernel + `"}`, "not supported before starting"},
		{"PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "rx_rate_limiter": {"bandwidth": {"size": 1}}}`, "missing field `refill_time`"},
		{"PUT", "/network-interfaces/eth0", `{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06-00-00-00-00-01"}`, "invalid MAC"},
		{"PUT", "/logger", `{"level": "Loud"}`, "invalid type for field `level`"},
		{"PUT", "/actions", `{"action_type": "InstanceStart"}`, "without kernel configuration"},
		{"PUT", "/actions", `{"action_type": "Reboot"}`, "invalid type for field `action_type`"},
		{"GET", "/machines", ``, "Invalid request method and/or path"},
	} {
		req, _ := http.NewRequest(tt.method, "http://localhost"+tt.path, strings.NewReader(tt.body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			FaultMessage string `json:"fault_message"`
		}
		json.Unmarshal(b, &e)
		if resp.StatusCode != 400 || !strings.Contains(e.FaultMessage, tt.want) {
			t.Errorf("%s %s %s = %d %s, want 400 with a fault_message containing %q", tt.method, tt.path, tt.body, resp.StatusCode, b, tt.want)
		}
	}
}
