package shell_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/shell"
)

// TestInit_Program: with Config.Init, steps run under that program (the
// build of cmd/execd-sandbox-init), and Check refuses programs that do not
// speak the init protocol.
func TestInit_Program(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "execd-sandbox-init")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/execd/execd/cmd/execd-sandbox-init").CombinedOutput(); err != nil {
		t.Fatalf("go build execd-sandbox-init: %v\n%s", err, out)
	}
	oldProtocol := filepath.Join(dir, "old-init")
	if err := os.WriteFile(oldProtocol, []byte("#!/bin/sh\necho 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		init, wantErr string
	}{
		{bin, ""},
		{oldProtocol, `speaks protocol "0"`},
		{"/bin/true", `speaks protocol ""`},
		{filepath.Join(dir, "missing"), "does not run"},
	} {
		err := shell.New(shell.Config{CgroupParent: testCgroupParent, Init: tt.init}).Check(ctx)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.init)) {
			t.Errorf("Check with Init %s: %v, want an error with %q naming the program", tt.init, err, tt.wantErr)
		}
	}

	rt := shell.New(shell.Config{CgroupParent: testCgroupParent, Init: bin})
	sb, _ := prepare(t, rt, sandbox.Options{})
	out := runOK(t, sb, "id -u", "hostname", "ps -e -o pid=,comm=", "echo done")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	wantUID := "65534"
	if os.Geteuid() != 0 {
		wantUID = "0"
	}
	if lines[0] != wantUID || lines[1] != "sandbox" || !strings.Contains(out, "1 execd-init") || lines[len(lines)-1] != "done" {
		t.Errorf("step under execd-sandbox-init printed:\n%s\nwant uid %s, hostname sandbox, PID 1 execd-init", out, wantUID)
	}
	if _, _, res := run(t, sb, sandbox.Step{Commands: []string{"exit 7"}}); res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", res.ExitCode)
	}

	// A program that is not an init fails the step's start: Init is what runs.
	notInit := shell.New(shell.Config{CgroupParent: testCgroupParent, Init: "/bin/true"})
	sb, _ = prepare(t, notInit, sandbox.Options{})
	if res, err := sb.Run(ctx, sandbox.Step{Commands: []string{"echo hi"}}, sandbox.Output{}); err == nil && res.ExitCode == 0 {
		t.Errorf("a step under /bin/true as init succeeded: %+v", res)
	}
}
