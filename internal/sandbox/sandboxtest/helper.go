package sandboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/execd/execd/internal/sandbox"
)

// helperEnv makes a test binary a stand-in executor (see [RunHelper]).
const helperEnv = "EXECD_SANDBOX_TEST_HELPER"

// helperSpec is what the stand-in executor prepares and runs.
type helperSpec struct {
	// Runtime is the runtime's own settings, for newRuntime.
	Runtime json.RawMessage
	Opts    sandbox.Options
	Image   string
}

// RunHelper makes this test binary a stand-in executor when a test
// started it with [StartHelper]: it prepares a sandbox with the runtime
// newRuntime makes of the test's settings and runs a step that prints
// "ready" and sleeps, and exits only if that fails. Otherwise it returns
// at once. Call it first in TestMain.
func RunHelper(newRuntime func(settings json.RawMessage) (sandbox.Runtime, error)) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		return
	}
	var spec helperSpec
	err := json.Unmarshal([]byte(raw), &spec)
	var rt sandbox.Runtime
	if err == nil {
		rt, err = newRuntime(spec.Runtime)
	}
	var sb sandbox.Sandbox
	if err == nil {
		sb, err = rt.Prepare(context.Background(), spec.Opts)
	}
	if err == nil {
		err = sb.Workspace().Seal(context.Background())
	}
	if err == nil {
		step := sandbox.Step{Key: "sleep", Image: spec.Image, Commands: []string{"echo ready", "sleep 1000"}}
		var res sandbox.Result
		res, err = sb.Run(context.Background(), step, sandbox.Output{Stdout: os.Stdout, Stderr: os.Stderr})
		err = fmt.Errorf("the step ended: %+v, %v", res, err)
	}
	fmt.Fprintln(os.Stderr, "sandbox test helper:", err)
	os.Exit(1)
}

// StartHelper starts this test binary as a stand-in executor that
// prepares a sandbox with opts, of the runtime made of settings (see
// [RunHelper]), and runs a step that sleeps. It returns once the step
// runs; kill ends the executor with SIGKILL, as a crash would, and
// returns once it is dead.
func StartHelper(t *testing.T, settings any, image string, opts sandbox.Options) (kill func()) {
	t.Helper()
	rs, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(helperSpec{Runtime: rs, Opts: opts, Image: image})
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+string(spec))
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	line := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("the stand-in executor printed %q, %v; want ready", line, err)
	}
	return func() {
		if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = helper.Wait()
	}
}
