package install_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/execd/execd/internal/install"
	"github.com/execd/execd/internal/testutil"
)

// On the real host, where CI runs dockerd: install docker finds it done
// (or does it, once) and, run again, changes nothing and leaves dockerd
// running as it was.
func TestInstaller_Docker_Real(t *testing.T) {
	if !testutil.Provided("docker") {
		t.Skip("skipping: changes the host's docker set-up, so runs only where CI declares docker in EXECD_CI_PARTS")
	}
	ctx := t.Context()
	config, _ := os.ReadFile("/etc/docker/daemon.json")
	run := func() string {
		t.Helper()
		var out bytes.Buffer
		in := &install.Installer{Out: &out, Getenv: func(string) string { return "" }}
		if err := in.Docker(ctx); err != nil {
			t.Fatalf("Docker: %v\noutput:\n%s", err, out.String())
		}
		t.Logf("install docker:\n%s", out.String())
		return out.String()
	}
	run()
	pid := dockerdPID(t)

	out := run()
	for _, want := range []string{"dockerd already installed", "iptables already installed", "already runs with this configuration"} {
		if !strings.Contains(out, want) {
			t.Errorf("second install docker says:\n%s\nwant it to say %q", out, want)
		}
	}
	for _, change := range []string{"installed docker.io", "wrote", "started", "reloaded"} {
		if strings.Contains(out, change) {
			t.Errorf("second install docker says:\n%s\nwant no change (%q)", out, change)
		}
	}
	if got := dockerdPID(t); got != pid {
		t.Errorf("dockerd's pid = %s after a second install, want %s: it must not be restarted", got, pid)
	}
	if got, _ := os.ReadFile("/etc/docker/daemon.json"); !bytes.Equal(got, config) {
		t.Errorf("daemon.json =\n%s\nwant unchanged (no mirror configured):\n%s", got, config)
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Errorf("docker info after install docker: %v: %s", err, out)
	}
}

func dockerdPID(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		t.Fatalf("pidof dockerd: %v", err)
	}
	return strings.TrimSpace(string(out))
}
