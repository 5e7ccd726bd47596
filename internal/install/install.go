// Package install prepares a Debian or Ubuntu host for the executor's
// container runtimes: it is `executor install docker|gvisor|vm|all`.
//
//   - docker installs the docker.io and iptables packages when dockerd
//     or iptables are missing, adds the registry mirrors of
//     EXECUTOR_DOCKER_REGISTRY_MIRROR_URL to /etc/docker/daemon.json
//     (keeping its other keys), and makes sure dockerd runs with that
//     configuration: started with systemd when systemd runs, else in the
//     background with its log in /var/log/execd-dockerd.log; a running
//     dockerd whose configuration changed is reloaded (SIGHUP: mirrors
//     and runtimes are reloadable, running containers keep running), or
//     restarted by systemd when the reload was not enough.
//   - gvisor installs runsc when it is not on PATH, by building it with
//     `CGO_ENABLED=0 go install gvisor.dev/gvisor/runsc@`[RunscVersion]
//     into /usr/local/bin, registers it in daemon.json as the runtime
//     "runsc" with --platform=systrap (which needs no KVM), reloads
//     dockerd and checks that `docker info` lists it.
//   - vm installs qemu-system-x86, e2fsprogs and erofs-utils
//     (--no-install-recommends) when missing, and builds the VM guest
//     into /var/lib/execd/vm: the kernel of Debian's
//     linux-image-cloud-amd64 (downloaded with apt-get download, kept in
//     cache/), uncompressed to vmlinux, the modules the guest needs, and
//     initramfs.cpio with the agent (cmd/execd-vm-agent) as /init;
//     see package vmguest. A re-run with the same kernel package and
//     agent changes nothing.
//   - all does docker and gvisor, then checks that the firewall can install the job
//     network policy (package netpolicy); the rules themselves are added
//     for each job's network by the runtime.
//
// Every step is idempotent and prints what it did or found already
// done. A dry run prints the changes it would make instead of making
// them; it still runs the read-only probes (which programs exist,
// `docker info`).
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/execd/execd/internal/install/vmguest"
	"github.com/execd/execd/internal/sandbox/netpolicy"
)

// RunscVersion is the version of gvisor.dev/gvisor whose runsc is built
// when none is installed: the one .ci/run builds and the tests run.
const RunscVersion = "v0.0.0-20260905035102-160fafc42237"

// RunscArgs are runsc's flags as dockerd's runtime "runsc": the systrap
// platform, which needs no KVM, and the root file system's writes kept
// in the sandbox's memory, counted against the job's memory limit, rather
// than in a file on the host's disk that nothing bounds (gVisor's
// default, root:self). A build is no slower with it (docs/benchmarks.md).
var RunscArgs = []string{"--platform=systrap", "--overlay2=root:memory"}

// Installer installs the runtimes. The zero value works on the real
// host; the fields let tests and dry runs substitute parts.
type Installer struct {
	// Out receives one line per step; nil discards them.
	Out io.Writer
	// DryRun prints the changes instead of making them.
	DryRun bool
	// Getenv reads the executor's configuration; nil means os.Getenv.
	Getenv func(string) string
	// Runner runs the commands; nil means [ExecRunner].
	Runner Runner
	// LookPath finds programs; nil means exec.LookPath.
	LookPath func(string) (string, error)
	// CheckFirewall checks the firewall; nil means netpolicy.Check.
	CheckFirewall func(context.Context) error

	// The host's files; each empty one means the default in brackets.
	DaemonConfig  string // docker's configuration [/etc/docker/daemon.json]
	DockerdLog    string // log of a dockerd started without systemd [/var/log/execd-dockerd.log]
	DockerPIDFile string // dockerd's pid file [/var/run/docker.pid]
	BinDir        string // where runsc is built into [/usr/local/bin]
	OSRelease     string // [/etc/os-release]
	SystemdDir    string // exists when systemd runs [/run/systemd/system]
	VMDir         string // the VM guest's kernel and initramfs [/var/lib/execd/vm]
	Busybox       string // a static busybox put in the VM guest when present [/bin/busybox]
	// AgentBinary is the VM guest's agent; "" builds it with Go from
	// this module's source, or takes execd-vm-agent next to the
	// executor.
	AgentBinary string

	// DockerdTimeout bounds the wait for dockerd to answer with its new
	// configuration after a start or reload; 0 means a minute.
	DockerdTimeout time.Duration
}

// Install runs one of the installations by name: docker, gvisor, vm or all.
func (in *Installer) Install(ctx context.Context, what string) error {
	switch what {
	case "docker":
		return in.Docker(ctx)
	case "gvisor":
		return in.GVisor(ctx)
	case "all":
		return in.All(ctx)
	case "vm":
		return in.VM(ctx)
	}
	return fmt.Errorf("install: unknown target %q: want docker, gvisor, vm or all", what)
}

// Docker installs docker, configures its registry mirrors and makes sure
// dockerd runs with them.
func (in *Installer) Docker(ctx context.Context) error { return in.session().docker(ctx) }

// GVisor installs runsc and registers it with docker, which must be
// installed.
func (in *Installer) GVisor(ctx context.Context) error { return in.session().gvisor(ctx) }

// All installs docker and gVisor and checks the firewall.
func (in *Installer) All(ctx context.Context) error {
	s := in.session()
	if err := s.docker(ctx); err != nil {
		return err
	}
	if err := s.gvisor(ctx); err != nil {
		return err
	}
	return s.firewall(ctx)
}

// session is one installation: the Installer with its defaults, and what
// a dry run pretended to do.
type session struct {
	Installer
	osChecked bool
	pretended map[string]bool // by a dry run: packages, "dockerd" (started or reloaded)
	dryConfig []byte          // daemon.json as a dry run would have written it
}

func (in *Installer) session() *session {
	s := &session{Installer: *in, pretended: map[string]bool{}}
	if s.Out == nil {
		s.Out = io.Discard
	}
	if s.Getenv == nil {
		s.Getenv = os.Getenv
	}
	if s.Runner == nil {
		s.Runner = ExecRunner{}
	}
	if s.LookPath == nil {
		s.LookPath = exec.LookPath
	}
	if s.CheckFirewall == nil {
		s.CheckFirewall = netpolicy.Check
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&s.DaemonConfig, "/etc/docker/daemon.json")
	def(&s.DockerdLog, "/var/log/execd-dockerd.log")
	def(&s.DockerPIDFile, "/var/run/docker.pid")
	def(&s.BinDir, "/usr/local/bin")
	def(&s.OSRelease, "/etc/os-release")
	def(&s.SystemdDir, "/run/systemd/system")
	def(&s.VMDir, vmguest.DefaultDir)
	def(&s.Busybox, "/bin/busybox")
	if s.DockerdTimeout == 0 {
		s.DockerdTimeout = time.Minute
	}
	return s
}

func (s *session) say(format string, args ...any) { fmt.Fprintf(s.Out, format+"\n", args...) }

// do makes one change by running cmds, then says done; a dry run says
// what it would run instead.
func (s *session) do(ctx context.Context, section, done string, cmds ...Cmd) error {
	for _, c := range cmds {
		if s.DryRun {
			s.say("%s: would run: %s", section, c)
			continue
		}
		if _, err := s.Runner.Run(ctx, c); err != nil {
			return err
		}
	}
	if !s.DryRun {
		s.say("%s", done)
	}
	return nil
}

func (s *session) docker(ctx context.Context) error {
	if err := s.checkOS(); err != nil {
		return err
	}
	var mirrors []string
	for m := range strings.SplitSeq(s.Getenv("EXECUTOR_DOCKER_REGISTRY_MIRROR_URL"), ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if err := CheckMirror(m); err != nil {
			return fmt.Errorf("install docker: EXECUTOR_DOCKER_REGISTRY_MIRROR_URL: %w", err)
		}
		mirrors = append(mirrors, m)
	}

	var pkgs []string
	for _, p := range []struct{ program, pkg string }{{"dockerd", "docker.io"}, {"iptables", "iptables"}} {
		if path, err := s.LookPath(p.program); err == nil {
			s.say("docker: %s already installed (%s)", p.program, path)
		} else {
			pkgs = append(pkgs, p.pkg)
		}
	}
	if len(pkgs) > 0 {
		install := Cmd{Name: "apt-get", Args: append([]string{"install", "-y", "-q"}, pkgs...), Env: []string{"DEBIAN_FRONTEND=noninteractive"}}
		if err := s.do(ctx, "docker", "docker: installed "+strings.Join(pkgs, " "), command("apt-get", "update", "-q"), install); err != nil {
			return fmt.Errorf("install docker: install %s with apt-get (check the apt sources and the network): %w", strings.Join(pkgs, " "), err)
		}
		for _, p := range pkgs {
			s.pretended[p] = s.DryRun
		}
	}

	if len(mirrors) == 0 {
		s.say("docker: no registry mirror to configure (EXECUTOR_DOCKER_REGISTRY_MIRROR_URL is unset)")
	}
	changed, err := s.configure("docker", DaemonSettings{RegistryMirrors: mirrors})
	if err != nil {
		return fmt.Errorf("install docker: %w", err)
	}
	ready := func(info dockerInfo) error {
		for _, m := range mirrors {
			if !slices.ContainsFunc(info.RegistryConfig.Mirrors, func(have string) bool { return sameURL(have, m) }) {
				return fmt.Errorf("dockerd does not use the registry mirror %s", m)
			}
		}
		return nil
	}
	if err := s.dockerd(ctx, "docker", changed, ready); err != nil {
		return fmt.Errorf("install docker: %w", err)
	}
	return nil
}

// configure merges want into daemon.json and reports whether it changed.
func (s *session) configure(section string, want DaemonSettings) (bool, error) {
	old, err := os.ReadFile(s.DaemonConfig)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read docker's configuration: %w", err)
	}
	if s.dryConfig != nil {
		old = s.dryConfig
	}
	m, err := MergeDaemonConfig(old, want)
	if err != nil {
		return false, fmt.Errorf("docker's configuration %s: %w", s.DaemonConfig, err)
	}
	for _, p := range m.Present {
		s.say("%s: %s already has %s", section, s.DaemonConfig, p)
	}
	if m.Content == nil {
		return false, nil
	}
	if s.DryRun {
		for _, a := range m.Added {
			s.say("%s: would write %s, adding %s", section, s.DaemonConfig, a)
		}
		s.say("%s", indent(m.Content))
		s.dryConfig = m.Content
		return true, nil
	}
	if err := writeFileAtomic(s.DaemonConfig, m.Content); err != nil {
		return false, fmt.Errorf("write docker's configuration: %w", err)
	}
	for _, a := range m.Added {
		s.say("%s: wrote %s, adding %s", section, s.DaemonConfig, a)
	}
	return true, nil
}

func (s *session) gvisor(ctx context.Context) error {
	if err := s.checkOS(); err != nil {
		return err
	}
	if _, err := s.LookPath("dockerd"); err != nil && !s.pretended["docker.io"] {
		return errors.New("install gvisor: docker is not installed: run `executor install docker` first (`executor install all` does both)")
	}
	runsc, err := s.runsc(ctx)
	if err != nil {
		return fmt.Errorf("install gvisor: %w", err)
	}
	want := DaemonRuntime{Path: runsc, RuntimeArgs: RunscArgs}
	changed, err := s.configure("gvisor", DaemonSettings{Runtimes: map[string]DaemonRuntime{"runsc": want}})
	if err != nil {
		return fmt.Errorf("install gvisor: %w", err)
	}
	ready := func(info dockerInfo) error {
		if have, ok := info.Runtimes["runsc"]; !ok || have.Path != want.Path || !slices.Equal(have.RuntimeArgs, want.RuntimeArgs) {
			return fmt.Errorf("docker info does not list the runtime runsc (%s)", want)
		}
		return nil
	}
	if err := s.dockerd(ctx, "gvisor", changed, ready); err != nil {
		return fmt.Errorf("install gvisor: %w", err)
	}
	if !s.DryRun {
		s.say("gvisor: docker info lists the runtime runsc (%s)", want)
	}
	return nil
}

// runsc returns the path of runsc: the one in BinDir, else the one on
// PATH, else one it builds into BinDir.
func (s *session) runsc(ctx context.Context) (string, error) {
	path := filepath.Join(s.BinDir, "runsc")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		s.say("gvisor: runsc already installed (%s)", path)
		return path, nil
	}
	if path, err := s.LookPath("runsc"); err == nil {
		s.say("gvisor: runsc already installed (%s)", path)
		return path, nil
	}
	goCmd, err := s.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("runsc is not installed and there is no Go to build it with: install Go (https://go.dev/dl/) and run this again, or put a runsc binary in %s (https://gvisor.dev/docs/user_guide/install/)", s.BinDir)
	}
	build := Cmd{
		Name: goCmd,
		Args: []string{"install", "gvisor.dev/gvisor/runsc@" + RunscVersion},
		Env:  []string{"CGO_ENABLED=0", "GOBIN=" + s.BinDir},
	}
	if !s.DryRun {
		s.say("gvisor: building runsc %s with go install (a minute or two)", RunscVersion)
	}
	if err := s.do(ctx, "gvisor", "gvisor: built runsc and installed it as "+path, build); err != nil {
		return "", fmt.Errorf("build runsc (the Go module proxy must be reachable): %w", err)
	}
	return path, nil
}

func (s *session) firewall(ctx context.Context) error {
	if s.DryRun {
		s.say("firewall: would check that iptables can install the job network policy")
		return nil
	}
	if err := s.CheckFirewall(ctx); err != nil {
		return fmt.Errorf("install all: the firewall: %w", err)
	}
	s.say("firewall: iptables can install the job network policy (the runtime adds the rules of each job's network)")
	return nil
}

// checkOS fails on hosts other than Debian and Ubuntu and their
// derivatives.
func (s *session) checkOS() error {
	if s.osChecked {
		return nil
	}
	data, err := os.ReadFile(s.OSRelease)
	if err != nil {
		return fmt.Errorf("install: read %s to tell the distribution: %w", s.OSRelease, err)
	}
	vars := map[string]string{}
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok {
			vars[k] = strings.Trim(v, `"'`)
		}
	}
	ids := append([]string{vars["ID"]}, strings.Fields(vars["ID_LIKE"])...)
	if !slices.Contains(ids, "debian") && !slices.Contains(ids, "ubuntu") {
		return fmt.Errorf("install: supports Debian and Ubuntu, and this host runs %q: install docker and runsc with its own packages", vars["PRETTY_NAME"])
	}
	s.osChecked = true
	return nil
}

// writeFileAtomic replaces name with data, creating its directory.
func writeFileAtomic(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".execd-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

func indent(b []byte) string {
	return "    " + strings.ReplaceAll(string(bytes.TrimRight(b, "\n")), "\n", "\n    ")
}
