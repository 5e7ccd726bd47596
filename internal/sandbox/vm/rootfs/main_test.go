package rootfs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/execd/execd/internal/sandbox/vm/rootfs"
)

// TestMain doubles as an executor process getting one image, for
// TestCache_GetProcesses: EXECD_ROOTFS_HELPER="dir layout ref".
func TestMain(m *testing.M) {
	if args := strings.Fields(os.Getenv("EXECD_ROOTFS_HELPER")); len(args) == 3 {
		c, err := rootfs.New(rootfs.Config{Dir: args[0], LayoutDir: args[1], Sources: []rootfs.Source{rootfs.SourceLayout}})
		if err == nil {
			var im *rootfs.Image
			if im, err = c.Get(context.Background(), args[2], nil, nil); err == nil {
				fmt.Printf("fresh=%v path=%s\n", im.Fresh, im.Path)
				im.Release()
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCache_GetProcesses: executor processes sharing a cache build an
// image they all want at once once.
func TestCache_GetProcesses(t *testing.T) {
	needRoot(t)
	layoutDir := writeLayout(t, map[string]v1.Image{"example.com/app:1": randomImage(t, 8<<20)})
	cacheDir := t.TempDir()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		outs []string
	)
	for range 4 {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "EXECD_ROOTFS_HELPER="+cacheDir+" "+layoutDir+" example.com/app:1")
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("helper: %v: %s", err, out)
			}
			mu.Lock()
			outs = append(outs, strings.TrimSpace(string(out)))
			mu.Unlock()
		})
	}
	wg.Wait()
	fresh := 0
	for _, o := range outs {
		if strings.HasPrefix(o, "fresh=true") {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("4 processes built the image %d times, want once: %q", fresh, outs)
	}
}
