package docker_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/docker"
)

// BenchmarkStep_True measures the per-step overhead: a step of `true` in
// the test image, run by Sandbox.Run (a container created, attached,
// started, waited for, inspected and removed), against the docker CLI's
// bare `docker run --rm IMAGE true`, with runc (docker) and with runsc
// (gvisor, `docker run --rm --runtime=runsc IMAGE true`), in one run:
//
//	go test -run '^$' -bench Step_True -benchtime 30x ./internal/sandbox/docker
func BenchmarkStep_True(b *testing.B) {
	cli, err := exec.LookPath("docker")
	if err != nil {
		b.Skip("the docker CLI is not installed")
	}
	ctx := context.Background()
	out := sandbox.Output{Stdout: io.Discard, Stderr: io.Discard}
	for _, r := range runtimes {
		b.Run(r.name, func(b *testing.B) {
			rt := needRuntime(b, docker.Config{GVisor: r.gvisor})
			for _, network := range []sandbox.Network{sandbox.NetworkNone, sandbox.NetworkInternet} {
				b.Run("Run/network="+string(network), func(b *testing.B) {
					sb, _ := prepare(b, rt, sandbox.Options{Network: network})
					for b.Loop() {
						if res, err := sb.Run(ctx, step("true"), out); err != nil || res.ExitCode != 0 {
							b.Fatal(res, err)
						}
					}
				})
			}
			args := []string{"run", "--rm"}
			if r.gvisor {
				args = append(args, "--runtime=runsc")
			}
			// A bridge network, as a job with a network has.
			bridge := fmt.Sprintf("execd-bench-%d", os.Getpid())
			if out, err := exec.Command(cli, "network", "create", bridge).CombinedOutput(); err != nil {
				b.Fatalf("docker network create: %v\n%s", err, out)
			}
			defer exec.Command(cli, "network", "rm", bridge).Run()
			for _, extra := range [][]string{nil, {"--network=none"}, {"--network=bridge"}} {
				name := "docker-run"
				for _, e := range extra {
					name += "/" + e
				}
				if len(extra) > 0 && extra[0] == "--network=bridge" {
					extra = []string{"--network=" + bridge}
				}
				b.Run(name, func(b *testing.B) {
					argv := append(append(append([]string{}, args...), extra...), testImage, "true")
					for b.Loop() {
						if out, err := exec.Command(cli, argv...).CombinedOutput(); err != nil {
							b.Fatalf("docker %v: %v\n%s", argv, err, out)
						}
					}
				})
			}
		})
	}
}
