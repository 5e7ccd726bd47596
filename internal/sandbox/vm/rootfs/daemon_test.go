package rootfs_test

import (
	"cmp"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/rootfs"
	"github.com/execd/execd/internal/testutil"
)

// testImage is built without a registry by deploy/images/build-test-images.sh.
var testImage = cmp.Or(os.Getenv("EXECD_DOCKER_TEST_IMAGE"), "execd-test/busybox:latest")

// needDocker returns a client of the local Docker daemon.
func needDocker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err == nil {
		_, err = cli.Ping(context.Background(), client.PingOptions{NegotiateAPIVersion: true})
	}
	if err != nil {
		testutil.Missing(t, "docker", "no Docker daemon: "+err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestCache_GetDaemon turns the test image of the local dockerd (API 1.41
// on Debian's 20.10: the client must negotiate down) into a root file
// system image, and checks it mounted.
func TestCache_GetDaemon(t *testing.T) {
	needRoot(t)
	cli := needDocker(t)
	inspect, err := cli.ImageInspect(context.Background(), testImage)
	if err != nil {
		t.Fatalf("inspect %s: %v (build it with deploy/images/build-test-images.sh)", testImage, err)
	}
	c := newCache(t, rootfs.Config{Sources: []rootfs.Source{rootfs.SourceDaemon}})
	needFormat(t, c.Format())
	var out strings.Builder
	im, err := c.Get(context.Background(), testImage, nil, &out)
	if err != nil {
		t.Fatalf("Get(%s) = %v\n%s", testImage, err, out.String())
	}
	defer im.Release()
	if im.ID != inspect.ID || im.Source != "docker daemon" {
		t.Errorf("Get() = ID %s from %q, want %s from the docker daemon", im.ID, im.Source, inspect.ID)
	}
	if !slices.ContainsFunc(im.Config.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		t.Errorf("image config env = %q, want the image's PATH", im.Config.Env)
	}
	root := mountImage(t, im.Format, im.Path)
	mode(t, root, "bin/busybox", unix.S_IFREG|0o755, 0, 0)
	linkTo(t, root, "bin/sh", "/bin/busybox")
	linkTo(t, root, "usr/bin", "../bin")
	mode(t, root, "tmp", unix.S_IFDIR|0o1777, 0, 0)
	content(t, root, "etc/execd-test-image", "execd-test-image\n")

	// Cached: another Get neither saves nor builds.
	again, err := c.Get(context.Background(), testImage, nil, nil)
	if err != nil || again.Fresh {
		t.Errorf("second Get() = fresh %v, %v; want cached", again != nil && again.Fresh, err)
	}
	if again != nil {
		again.Release()
	}
}

func TestCache_GetDaemonNotFound(t *testing.T) {
	needDocker(t)
	c := newCache(t, rootfs.Config{Sources: []rootfs.Source{rootfs.SourceDaemon}})
	_, err := c.Get(context.Background(), "execd-test/no-such-image:1", nil, nil)
	if !errors.Is(err, sandbox.ErrImageNotFound) {
		t.Errorf("Get() = %v, want %v", err, sandbox.ErrImageNotFound)
	}
}

// TestCache_GetNoDaemon: a host without dockerd (a VM host may have none)
// goes on to the next source, and an image found nowhere is retryable.
func TestCache_GetNoDaemon(t *testing.T) {
	c := newCache(t, rootfs.Config{Sources: []rootfs.Source{rootfs.SourceDaemon, rootfs.SourceLayout},
		DockerHost: "unix:///nonexistent/docker.sock", LayoutDir: writeLayout(t, nil)})
	_, err := c.Get(context.Background(), "example.com/app:1", nil, nil)
	if !errors.Is(err, sandbox.ErrImageNotFound) || !strings.Contains(err.Error(), "docker daemon") {
		t.Errorf("Get() = %v, want the layout's not found, and the daemon's error", err)
	}
	c = newCache(t, rootfs.Config{Sources: []rootfs.Source{rootfs.SourceDaemon}, DockerHost: "unix:///nonexistent/docker.sock"})
	_, err = c.Get(context.Background(), "example.com/app:1", nil, nil)
	if err == nil || errors.Is(err, sandbox.ErrImageNotFound) {
		t.Errorf("Get() = %v, want a retryable error", err)
	}
}
