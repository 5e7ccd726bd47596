package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/execd/execd/internal/install"
)

const installUsage = `Usage: executor install [--dry-run] docker|gvisor|vm|all

Prepares a Debian or Ubuntu host for the container runtimes, idempotently:
  docker   the docker.io and iptables packages, registry mirrors
           (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL) in /etc/docker/daemon.json
           (an http:// one also as an insecure registry), a running dockerd
  gvisor   runsc (built with go install when missing), registered with
           docker as the runtime runsc (--platform=systrap)
  vm       qemu-system-x86, e2fsprogs and erofs-utils, and the VM guest
           in /var/lib/execd/vm: Debian's cloud kernel (vmlinux), its
           modules and an initramfs with the agent (execd-vm-agent)
  all      docker and gvisor, and a check of the firewall for the job
           network policy

  --dry-run   print what would be done, change nothing
`

// runInstall runs `executor install`.
func runInstall(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, installUsage) }
	dryRun := fs.Bool("dry-run", false, "print what would be done, change nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	what := fs.Arg(0)
	if !*dryRun && os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "executor install %s: must run as root (sudo), or with --dry-run\n", what)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	in := &install.Installer{Out: stdout, DryRun: *dryRun, Getenv: getenv}
	if err := in.Install(ctx, what); err != nil {
		fmt.Fprintf(stderr, "executor: %v\n", err)
		return 1
	}
	return 0
}
