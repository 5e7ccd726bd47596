//go:build linux

package guest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/sandbox/vm/agent"
)

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\nbuilder:x:1000:1001::/home/b:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nstaff:x:50:\n"), 0o644)
	tests := []struct {
		user     string
		uid, gid int // -1: root, no credential
		home     string
		err      string
	}{
		{"", -1, -1, "/root", ""},
		{"root", -1, -1, "/root", ""},
		{"0", -1, -1, "/root", ""},
		{"builder", 1000, 1001, "/home/b", ""},
		{"1000", 1000, 1001, "/home/b", ""},
		{"2000", 2000, 2000, "/", ""},
		{"2000:7", 2000, 7, "/", ""},
		{"builder:staff", 1000, 50, "/home/b", ""},
		{"nobody", 0, 0, "", "not in the image's /etc/passwd"},
		{"builder:wheel", 0, 0, "", "not in the image's /etc/group"},
	}
	for _, tt := range tests {
		cred, home, err := resolveUser(root, tt.user)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.user, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.user, err)
			continue
		}
		uid, gid := -1, -1
		if cred != nil {
			uid, gid = int(cred.Uid), int(cred.Gid)
		}
		if uid != tt.uid || gid != tt.gid || home != tt.home {
			t.Errorf("%q = %d:%d %s, want %d:%d %s", tt.user, uid, gid, home, tt.uid, tt.gid, tt.home)
		}
	}
}

func TestCheckRequest(t *testing.T) {
	script, _, err := checkRequest(agent.Run{Commands: []string{"a", "b"}, Root: "r"})
	if err != nil || script != "set -e\na\nb\n" {
		t.Fatalf("script %q, %v", script, err)
	}
	for _, bad := range []agent.Run{
		{Root: ""},
		{Root: "r", Dir: "../x"},
		{Root: "r", Env: []string{"NOEQUALS"}},
		{Root: "r", Env: []string{"=v"}},
		{Root: "r", Commands: []string{"a\x00b"}},
	} {
		if _, _, err := checkRequest(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	env := withDefaults([]string{"PATH=/x"}, "/h")
	if strings.Join(env, " ") != "PATH=/x HOME=/h" {
		t.Errorf("env = %q", env)
	}
}

func TestFindPort(t *testing.T) {
	dir := t.TempDir()
	for dev, name := range map[string]string{"vport0p0": "", "vport0p1": "other", "vport1p1": PortName} {
		os.MkdirAll(filepath.Join(dir, dev), 0o755)
		os.WriteFile(filepath.Join(dir, dev, "name"), []byte(name+"\n"), 0o644)
	}
	if got, err := findPort(dir, PortName); err != nil || got != "vport1p1" {
		t.Fatalf("findPort = %q, %v", got, err)
	}
	if v, ok := cmdlineValue("console=ttyS0 execd.vsock=52 quiet", "execd.vsock"); !ok || v != "52" {
		t.Errorf("cmdlineValue = %q %v", v, ok)
	}
}

func TestFindDrive(t *testing.T) {
	dir := t.TempDir()
	for dev, serial := range map[string]string{"vda": "workspace", "vdb": "root-1", "vdc": ""} {
		os.MkdirAll(filepath.Join(dir, dev), 0o755)
		os.WriteFile(filepath.Join(dir, dev, "serial"), []byte(serial), 0o644)
	}
	if got, err := findDrive(dir, "root-1"); err != nil || got != "/dev/vdb" {
		t.Errorf("findDrive(root-1) = %q, %v", got, err)
	}
	if got, err := findDrive(dir, "vdc"); err != nil || got != "/dev/vdc" {
		t.Errorf("findDrive(vdc) = %q, %v", got, err)
	}
	for dev := range map[string]bool{"vdd": true, "vde": true} {
		os.MkdirAll(filepath.Join(dir, dev), 0o755) // no serial: Firecracker
	}
	driveOrder = "a,b,c,ws,rootfs"
	defer func() { driveOrder = "" }()
	if got, err := findDrive(dir, "rootfs"); err != nil || got != "/dev/vde" {
		t.Errorf("findDrive(rootfs) = %q, %v", got, err)
	}
	if _, err := findDrive(dir, "a"); err == nil {
		t.Error("drive a found on vda, which has another serial")
	}
	if _, err := findDrive(dir, "../etc"); err == nil {
		t.Error("a path as drive ID was accepted")
	}
}

// TestServe_Refuses: the agent answers messages a host must not send with
// Error and stays up; a frame it cannot read ends the conversation.
func TestServe_Refuses(t *testing.T) {
	host, g := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- newServer(g).serve() }()
	r := agent.NewReader(host)
	host.SetDeadline(time.Now().Add(10 * time.Second))
	if typ, _, err := r.Next(); err != nil || typ != agent.TypeHello {
		t.Fatalf("first frame %v, %v", typ, err)
	}
	expectError := func(what string) {
		t.Helper()
		typ, p, err := r.Next()
		if err != nil || typ != agent.TypeError || !strings.Contains(string(p), what) {
			t.Fatalf("got %v %q %v, want an Error with %q", typ, p, err, what)
		}
	}
	agent.WriteMessage(host, agent.TypeExit, agent.Exit{})
	expectError("refused: a Exit message")
	agent.WriteFrame(host, agent.TypeRun, []byte(`{"commands":["x"],"bogus":1}`))
	expectError("malformed Run")
	agent.WriteMessage(host, agent.TypeRun, agent.Run{Commands: []string{"true"}})
	expectError("names no root")
	agent.WriteFrame(host, agent.TypeMount, []byte(`{"workspace":1}`))
	expectError("malformed Mount")
	agent.WriteMessage(host, agent.TypeCancel, nil) // no step: ignored
	host.Write([]byte{'Z', 0, 0, 0, 0})
	expectError("unknown frame type")
	if err := <-done; err == nil {
		t.Fatal("serve went on after an unreadable frame")
	}
}
