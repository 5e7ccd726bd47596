package docker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/execd/execd/internal/sandbox/sandboxtest"
	"slices"
	"strings"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
)

func pull(t *testing.T, sb sandbox.Sandbox, ref string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := sb.(sandbox.Puller).Pull(context.Background(), ref, &out)
	return out.String(), err
}

func TestPull_Present(t *testing.T) {
	sb, _ := prepare(t, needRuntime(t, docker.Config{}), sandbox.Options{})
	out, err := pull(t, sb, testImage)
	if err != nil || !strings.Contains(out, testImage+" is present") {
		t.Errorf("Pull(%s) = %q, %v; want it to say the image is present", testImage, out, err)
	}
}

func TestPull_Registry(t *testing.T) {
	rt := needRuntime(t, docker.Config{})
	reg := newRegistry(t, rt, "", "")
	ref := fmt.Sprintf("%s/execd-test/pulled:%d", reg.host(), sandboxtest.Seq())
	removeImage(t, rt, ref)
	sb, _ := prepare(t, rt, sandbox.Options{})
	out, err := pull(t, sb, ref)
	if err != nil {
		t.Fatalf("Pull: %v\n%s", err, out)
	}
	t.Logf("pull output:\n%s", out)
	if !strings.Contains(out, "pulling "+ref) || !strings.Contains(out, "Status: ") {
		t.Errorf("pull output lacks its progress:\n%s", out)
	}
	if got := runOK(t, sb, "echo pulled"); got != "pulled\n" {
		t.Errorf("step output %q", got)
	}
	// Run pulls a missing image itself, its progress in the step's stderr.
	other := fmt.Sprintf("%s/execd-test/pulled-by-run:%d", reg.host(), sandboxtest.Seq())
	removeImage(t, rt, other)
	st := step("echo ran")
	st.Image = other
	stdout, stderr, res := run(t, sb, st)
	if stdout != "ran\n" || res.ExitCode != 0 || !strings.Contains(stderr, "pulling "+other) {
		t.Errorf("Run of a missing image: stdout %q, stderr %q, %+v; want it pulled and run", stdout, stderr, res)
	}
}

func TestPull_Mirror(t *testing.T) {
	rt := needRuntime(t, docker.Config{})
	reg := newRegistry(t, rt, "", "")
	rt = needRuntime(t, docker.Config{RegistryMirrors: []string{reg.URL}})
	// A Docker Hub image, which only the mirror has.
	tag := fmt.Sprint(sandboxtest.Seq())
	ref := "execd-mirror-test/busybox:" + tag
	removeImage(t, rt, ref)
	removeImage(t, rt, reg.host()+"/"+ref)
	sb, _ := prepare(t, rt, sandbox.Options{})
	if out, err := pull(t, sb, ref); err != nil {
		t.Fatalf("Pull through the mirror: %v\n%s", err, out)
	}
	if got, want := reg.served(), []string{"execd-mirror-test/busybox:" + tag}; !slices.Equal(got, want) {
		t.Errorf("the mirror served %q, want %q", got, want)
	}
	st := step("echo from the mirror")
	st.Image = ref
	if out, _, res := run(t, sb, st); out != "from the mirror\n" || res.ExitCode != 0 {
		t.Errorf("Run of the mirrored image: %q, %+v", out, res)
	}
}

func TestPull_Auth(t *testing.T) {
	rt := needRuntime(t, docker.Config{})
	reg := newRegistry(t, rt, "alice", "s3cret")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	authConfig := func(userPass string) string {
		return fmt.Sprintf(`{"auths": {"http://%s": {"auth": %q}}}`, reg.host(), b64(userPass))
	}
	tests := []struct {
		name    string
		config  string            // EXECUTOR_DOCKER_AUTH_CONFIG
		job     map[string]string // the job's dockerAuthConfig
		wantErr bool
	}{
		{"no credentials", "", nil, true},
		{"executor's", authConfig("alice:s3cret"), nil, false},
		{"executor's wrong", authConfig("alice:wrong"), nil, true},
		{"job's win", authConfig("alice:wrong"), map[string]string{reg.host(): b64("alice:s3cret")}, false},
		{"job's win even when wrong", authConfig("alice:s3cret"), map[string]string{reg.host(): b64("alice:wrong")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := needRuntime(t, docker.Config{AuthConfig: tt.config})
			ref := fmt.Sprintf("%s/private/busybox:%d", reg.host(), sandboxtest.Seq())
			removeImage(t, rt, ref)
			sb, _ := prepare(t, rt, sandbox.Options{RegistryAuth: tt.job})
			out, err := pull(t, sb, ref)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Pull = %v, want error %v\n%s", err, tt.wantErr, out)
			}
			if err != nil && (!strings.Contains(err.Error(), "refused access") || !strings.Contains(err.Error(), "EXECUTOR_DOCKER_AUTH_CONFIG")) {
				t.Errorf("Pull error = %v, want it to say the registry refused access and how to give credentials", err)
			}
			// Credentials do not fix themselves: the job fails at once.
			if err != nil && !errors.Is(err, sandbox.ErrRegistryDenied) {
				t.Errorf("Pull error = %v, want one matching sandbox.ErrRegistryDenied", err)
			}
			if err != nil && strings.Contains(err.Error(), "none were given") != (tt.config == "" && tt.job == nil) {
				t.Errorf("Pull error = %v: it says whether credentials were given, wrongly", err)
			}
			if strings.Contains(out, "s3cret") || (err != nil && strings.Contains(err.Error(), "s3cret")) {
				t.Errorf("the password is in the pull's output or error")
			}
		})
	}
}

func TestPull_Errors(t *testing.T) {
	rt := needRuntime(t, docker.Config{})
	reg := newRegistry(t, rt, "", "")
	sb, _ := prepare(t, rt, sandbox.Options{})
	tests := []struct {
		name, ref string
		want      []string
		notFound  bool // the error matches sandbox.ErrImageNotFound: no retry can help
	}{
		{"not in the registry", reg.host() + "/execd-test/missing:1", []string{
			`image "` + reg.host() + `/execd-test/missing:1" does not exist in registry ` + reg.host() + " (manifest unknown)",
			"check the step's image name",
		}, true},
		{"digest not in the registry", reg.host() + "/execd-test/pulled@sha256:" + strings.Repeat("0", 63) + "1", []string{"does not exist in registry " + reg.host()}, true},
		{"registry unreachable", "127.0.0.1:1/execd-test/nowhere:1", []string{"not on this host", "cannot be reached", "EXECUTOR_DOCKER_REGISTRY_MIRROR_URL"}, false},
		{"invalid reference", "Not A Valid Reference", []string{"not a valid image reference"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := pull(t, sb, tt.ref)
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Pull(%q) = %v, want an error saying %q\n%s", tt.ref, err, w, out)
				}
			}
			if got := errors.Is(err, sandbox.ErrImageNotFound); got != tt.notFound {
				t.Errorf("errors.Is(%v, ErrImageNotFound) = %v, want %v", err, got, tt.notFound)
			}
			if errors.Is(err, sandbox.ErrRegistryDenied) {
				t.Errorf("Pull(%q) = %v, matches ErrRegistryDenied", tt.ref, err)
			}
			// Run fails the same way.
			st := step("true")
			st.Image = tt.ref
			if _, err := sb.Run(context.Background(), st, sandbox.Output{}); err == nil || !strings.Contains(err.Error(), tt.want[0]) {
				t.Errorf("Run with image %q = %v, want an error saying %q", tt.ref, err, tt.want[0])
			}
		})
	}
}

// TestCheck_DaemonDown: a daemon that does not answer is named, with what
// to do. It needs no daemon.
func TestCheck_DaemonDown(t *testing.T) {
	host := "unix://" + t.TempDir() + "/docker.sock"
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", host)
			rt := docker.New(docker.Config{GVisor: r.gvisor})
			err := rt.Check(context.Background())
			want := "cannot reach the Docker daemon at " + host + ": start dockerd or set DOCKER_HOST"
			if err == nil || !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), want) {
				t.Errorf("Check = %v, want ErrUnavailable saying %q", err, want)
			}
			// Prepare of a job with a network, and Clean, say the same.
			sb, err := rt.Prepare(context.Background(), sandbox.Options{JobID: "1-q", Owner: testOwner, Workspace: sandboxtest.WorkspacePath(t), Network: sandbox.NetworkInternet})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Prepare = %v, want an error saying %q", err, want)
			}
			if err := sb.Destroy(context.Background()); err != nil {
				t.Errorf("Destroy after a failed Prepare: %v", err)
			}
			if err := rt.Clean(context.Background(), func(sandbox.Leftover) bool { return true }); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Clean = %v, want an error saying %q", err, want)
			}
		})
	}
	t.Run("during a job", func(t *testing.T) {
		rt := docker.New(docker.Config{Host: host})
		sb, err := rt.Prepare(context.Background(), sandbox.Options{JobID: "1-q", Owner: testOwner, Workspace: sandboxtest.WorkspacePath(t), Network: sandbox.NetworkNone})
		if err != nil {
			t.Fatal(err) // nothing to create: the daemon is not asked
		}
		_, err = sb.Run(context.Background(), step("true"), sandbox.Output{})
		if want := "cannot reach the Docker daemon at " + host; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run = %v, want an error saying %q", err, want)
		}
	})
}

func TestCheck_GVisorNotRegistered(t *testing.T) {
	needRuntime(t, docker.Config{})
	rt := docker.New(docker.Config{GVisor: true, GVisorRuntime: "runsc-not-registered"})
	err := rt.Check(context.Background())
	if err == nil || !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "executor install gvisor") {
		t.Errorf("Check = %v, want ErrUnavailable saying to run executor install gvisor", err)
	}
	if err := needRuntime(t, docker.Config{}).Check(context.Background()); err != nil {
		t.Errorf("docker Check: %v", err)
	}
}
