package install

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/execd/execd/internal/install/vmguest"
	"github.com/execd/execd/internal/sandbox/vm/agent"
)

// KernelPackage is the Debian package whose kernel the VM guest boots: a
// metapackage that depends on the current versioned kernel.
const KernelPackage = "linux-image-cloud-amd64"

// agentTempPrefix names the temporary directory the agent is built in.
const agentTempPrefix = "execd-vm-agent-"

// AgentModule is the agent's Go package, built when Go is available.
const AgentModule = "github.com/execd/execd/cmd/execd-vm-agent"

// VM installs QEMU and the tools that make disk images, and builds the
// VM guest (kernel, modules, initramfs with the agent) into VMDir.
func (in *Installer) VM(ctx context.Context) error { return in.session().vm(ctx) }

func (s *session) vm(ctx context.Context) error {
	if err := s.checkOS(); err != nil {
		return err
	}
	var pkgs []string
	for _, p := range []struct{ program, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"mkfs.ext4", "e2fsprogs"},
		{"mkfs.erofs", "erofs-utils"},
	} {
		if path, err := s.LookPath(p.program); err == nil {
			s.say("vm: %s already installed (%s)", p.program, path)
		} else {
			pkgs = append(pkgs, p.pkg)
		}
	}
	if len(pkgs) > 0 {
		install := Cmd{Name: "apt-get", Args: append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...), Env: []string{"DEBIAN_FRONTEND=noninteractive"}}
		if err := s.do(ctx, "vm", "vm: installed "+strings.Join(pkgs, " "), command("apt-get", "update", "-q"), install); err != nil {
			return fmt.Errorf("install vm: install %s with apt-get (check the apt sources and the network): %w", strings.Join(pkgs, " "), err)
		}
	}

	kernelPkg, err := s.kernelPackage(ctx)
	if err != nil {
		return fmt.Errorf("install vm: %w", err)
	}
	agentBin, err := s.agentBinary(ctx)
	if err != nil {
		return fmt.Errorf("install vm: %w", err)
	}
	if strings.HasPrefix(filepath.Base(filepath.Dir(agentBin)), agentTempPrefix) {
		defer os.RemoveAll(filepath.Dir(agentBin))
	}
	if s.DryRun {
		s.say("vm: would build %s/{%s,%s} from %s and the agent %s", s.VMDir, vmguest.KernelFile, vmguest.InitramfsFile, kernelPkg, agentBin)
		return nil
	}
	agentData, err := os.ReadFile(agentBin)
	if err != nil {
		return fmt.Errorf("install vm: the agent: %w", err)
	}
	sum := sha256.Sum256(agentData)
	busybox := vmguest.StaticBusybox(s.Busybox)
	want := vmguest.Manifest{KernelPackage: kernelPkg, AgentSHA256: hex.EncodeToString(sum[:]), Protocol: agent.Version, Busybox: busybox != nil}
	have, _ := vmguest.ReadManifest(s.VMDir)
	if _, _, err := vmguest.Installed(s.VMDir); err == nil && have.KernelPackage == want.KernelPackage &&
		have.AgentSHA256 == want.AgentSHA256 && have.Protocol == want.Protocol && have.Busybox == want.Busybox {
		s.say("vm: the guest in %s is up to date (kernel %s, agent %.12s)", s.VMDir, have.KernelRelease, have.AgentSHA256)
		return nil
	}
	if err := os.MkdirAll(s.VMDir, 0o755); err != nil {
		return fmt.Errorf("install vm: %w", err)
	}
	if have.KernelPackage == kernelPkg {
		want.KernelRelease, want.Modules = have.KernelRelease, have.Modules
		s.say("vm: kernel %s already installed", have.KernelRelease)
	} else {
		if want.KernelRelease, want.Modules, err = s.installKernel(ctx, kernelPkg); err != nil {
			return fmt.Errorf("install vm: %w", err)
		}
		s.say("vm: installed the kernel %s (%s) and the modules %s", want.KernelRelease, kernelPkg, strings.Join(want.Modules, " "))
	}
	mods, err := vmguest.InstalledModules(s.VMDir)
	if err != nil {
		return fmt.Errorf("install vm: %w", err)
	}
	initramfs := filepath.Join(s.VMDir, vmguest.InitramfsFile)
	if err := (vmguest.Initramfs{Agent: agentData, Modules: mods, Busybox: busybox}).WriteFile(initramfs); err != nil {
		return fmt.Errorf("install vm: write the initramfs: %w", err)
	}
	if err := vmguest.WriteManifest(s.VMDir, want); err != nil {
		return fmt.Errorf("install vm: %w", err)
	}
	fi, _ := os.Stat(initramfs)
	s.say("vm: wrote %s (%d KiB; agent %.12s, busybox %v)", initramfs, fi.Size()>>10, want.AgentSHA256, busybox != nil)
	return nil
}

// kernelPackage resolves KernelPackage to the versioned package it
// depends on (linux-image-6.1.0-NN-cloud-amd64).
func (s *session) kernelPackage(ctx context.Context) (string, error) {
	depends := command("apt-cache", "depends", KernelPackage)
	out, err := s.Runner.Run(ctx, depends)
	if err != nil || !strings.Contains(string(out), "Depends:") {
		// The package lists may be missing (a fresh image): update once.
		if s.DryRun {
			s.say("vm: would run: apt-get update -q")
			return KernelPackage, nil
		}
		if _, err := s.Runner.Run(ctx, command("apt-get", "update", "-q")); err != nil {
			return "", fmt.Errorf("apt-get update: %w", err)
		}
		if out, err = s.Runner.Run(ctx, depends); err != nil {
			return "", fmt.Errorf("find the kernel package: %w", err)
		}
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(v, "linux-image-") {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image package:\n%s", KernelPackage, lastLines(string(out), 10))
}

// installKernel downloads and unpacks pkg and installs its kernel and
// modules into VMDir. The package is kept in VMDir/cache.
func (s *session) installKernel(ctx context.Context, pkg string) (string, []string, error) {
	cache := filepath.Join(s.VMDir, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", nil, err
	}
	debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(debs) == 0 {
		s.say("vm: downloading %s", pkg)
		if _, err := s.Runner.Run(ctx, Cmd{Name: "apt-get", Args: []string{"download", "-q", pkg}, Dir: cache}); err != nil {
			return "", nil, fmt.Errorf("download the kernel package: %w", err)
		}
		if debs, _ = filepath.Glob(filepath.Join(cache, pkg+"_*.deb")); len(debs) == 0 {
			return "", nil, fmt.Errorf("apt-get download %s left no .deb in %s", pkg, cache)
		}
	}
	old, _ := filepath.Glob(filepath.Join(cache, "linux-image-*.deb"))
	for _, o := range old {
		if o != debs[0] {
			os.Remove(o)
		}
	}
	tmp, err := os.MkdirTemp("", "execd-kernel-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	if _, err := s.Runner.Run(ctx, command("dpkg-deb", "-x", debs[0], tmp)); err != nil {
		return "", nil, fmt.Errorf("unpack the kernel package: %w", err)
	}
	return vmguest.InstallKernel(tmp, s.VMDir)
}

// agentBinary returns the path of the guest agent to put in the
// initramfs: built with go build when Go and this module's source are
// at hand (development, CI), else execd-vm-agent next to the executor
// (a release).
func (s *session) agentBinary(ctx context.Context) (string, error) {
	if s.AgentBinary != "" {
		return s.AgentBinary, nil
	}
	if goCmd, err := s.LookPath("go"); err == nil {
		if out, err := s.Runner.Run(ctx, command(goCmd, "list", "-m")); err == nil && strings.TrimSpace(string(out)) == "github.com/execd/execd" {
			dir, err := os.MkdirTemp("", agentTempPrefix+"*")
			if err != nil {
				return "", err
			}
			bin := filepath.Join(dir, "execd-vm-agent")
			build := Cmd{Name: goCmd, Args: []string{"build", "-trimpath", "-ldflags=-s -w", "-o", bin, AgentModule}, Env: []string{"CGO_ENABLED=0"}}
			if s.DryRun {
				s.say("vm: would run: %s", build)
				return bin, nil
			}
			if _, err := s.Runner.Run(ctx, build); err != nil {
				return "", fmt.Errorf("build the guest agent: %w", err)
			}
			return bin, nil
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(filepath.Dir(exe), "execd-vm-agent")
	if _, err := os.Stat(bin); err != nil {
		return "", errors.New("no guest agent: put execd-vm-agent (from the executor's release) next to the executor, or run this from the execd source tree with Go installed")
	}
	return bin, nil
}
