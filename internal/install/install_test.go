package install_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/execd/execd/internal/install"
)

const mirror = "https://mirror.example.com"

// fakeHost plays a Debian host for an Installer: its programs, a dockerd
// that reads daemon.json when it starts and on SIGHUP, and a record of
// the commands run.
type fakeHost struct {
	t        *testing.T
	in       *install.Installer
	out      bytes.Buffer
	programs map[string]string // name -> path, for LookPath
	ran      []string          // the commands, as a shell reads them

	dockerd  bool     // running
	mirrors  []string // its configuration, as loaded
	runtimes map[string]install.DaemonRuntime
	firewall int // CheckFirewall calls
}

// newFakeHost returns a fake Debian host with programs (name -> path)
// and an Installer for it, whose files are in a temporary directory.
func newFakeHost(t *testing.T, programs map[string]string) *fakeHost {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "os-release"), []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{t: t, programs: programs}
	h.in = &install.Installer{
		Out: &h.out,
		Getenv: func(name string) string {
			return map[string]string{"EXECUTOR_DOCKER_REGISTRY_MIRROR_URL": mirror}[name]
		},
		Runner: h,
		LookPath: func(name string) (string, error) {
			if p, ok := h.programs[name]; ok {
				return p, nil
			}
			return "", exec.ErrNotFound
		},
		CheckFirewall: func(context.Context) error { h.firewall++; return nil },
		DaemonConfig:  filepath.Join(dir, "etc/docker/daemon.json"),
		DockerdLog:    filepath.Join(dir, "dockerd.log"),
		DockerPIDFile: filepath.Join(dir, "docker.pid"),
		BinDir:        filepath.Join(dir, "bin"),
		OSRelease:     filepath.Join(dir, "os-release"),
		SystemdDir:    filepath.Join(dir, "systemd"),
	}
	return h
}

// path replaces the temporary directory in s by $DIR.
func (h *fakeHost) path(s string) string {
	return strings.ReplaceAll(s, filepath.Dir(h.in.OSRelease), "$DIR")
}

func (h *fakeHost) Run(_ context.Context, c install.Cmd) ([]byte, error) {
	h.ran = append(h.ran, h.path(c.String()))
	switch args := strings.Join(append([]string{filepath.Base(c.Name)}, c.Args...), " "); {
	case args == "docker info --format {{json .}}":
		if !h.dockerd {
			return []byte("Cannot connect to the Docker daemon at unix:///var/run/docker.sock"), errors.New("exit status 1")
		}
		info := map[string]any{"ServerVersion": "20.10.24", "Runtimes": h.runtimes, "RegistryConfig": map[string]any{"Mirrors": h.mirrors}}
		return json.Marshal(info)
	case args == "apt-get update -q":
	case strings.HasPrefix(args, "apt-get install -y -q "):
		for _, pkg := range c.Args[3:] {
			program := map[string]string{"docker.io": "dockerd", "iptables": "iptables"}[pkg]
			h.programs[program] = "/usr/sbin/" + program
		}
	case args == "kill -s HUP 4242", args == "systemctl reload docker", args == "systemctl restart docker":
		h.load()
	case args == "systemctl enable --now docker":
		h.start()
	case args == "systemctl is-active --quiet docker":
		if !h.dockerd {
			return nil, errors.New("exit status 3")
		}
	case args == "go install gvisor.dev/gvisor/runsc@"+install.RunscVersion:
		if !slices.Contains(c.Env, "CGO_ENABLED=0") {
			h.t.Errorf("go install runs with %q, want CGO_ENABLED=0", c.Env)
		}
		os.MkdirAll(h.in.BinDir, 0o755)
		os.WriteFile(filepath.Join(h.in.BinDir, "runsc"), []byte("runsc"), 0o755)
	default:
		h.t.Errorf("unexpected command %s", c)
		return nil, errors.New("unexpected command")
	}
	return nil, nil
}

func (h *fakeHost) Start(_ context.Context, c install.Cmd) error {
	h.ran = append(h.ran, h.path(c.String()))
	if c.Name != "dockerd" {
		h.t.Errorf("unexpected command started: %s", c)
		return errors.New("unexpected command")
	}
	h.start()
	return nil
}

func (h *fakeHost) start() {
	h.dockerd = true
	os.WriteFile(h.in.DockerPIDFile, []byte("4242\n"), 0o644)
	h.load()
}

// load reads daemon.json as dockerd does.
func (h *fakeHost) load() {
	var cfg struct {
		Mirrors  []string                         `json:"registry-mirrors"`
		Runtimes map[string]install.DaemonRuntime `json:"runtimes"`
	}
	if b, err := os.ReadFile(h.in.DaemonConfig); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			h.t.Errorf("dockerd: invalid daemon.json: %v", err)
		}
	}
	h.mirrors = nil
	for _, m := range cfg.Mirrors {
		h.mirrors = append(h.mirrors, m+"/") // as docker shows them
	}
	h.runtimes = map[string]install.DaemonRuntime{"runc": {Path: "runc"}}
	for name, rt := range cfg.Runtimes {
		h.runtimes[name] = rt
	}
}

// lines returns the output so far, with $DIR for the temporary directory,
// and forgets it and the commands.
func (h *fakeHost) lines() []string {
	out := strings.Split(strings.TrimSpace(h.path(h.out.String())), "\n")
	h.out.Reset()
	return out
}

func wantLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const infoCmd = "docker info --format '{{json .}}'"

// On a fresh host, install all installs and starts everything; run again,
// it finds everything done and changes nothing.
func TestInstaller_All(t *testing.T) {
	h := newFakeHost(t, map[string]string{"go": "/usr/local/go/bin/go"})
	ctx := t.Context()
	if err := h.in.All(ctx); err != nil {
		t.Fatalf("All: %v", err)
	}
	wantLines(t, "commands", h.ran, []string{
		"apt-get update -q",
		"DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io iptables",
		infoCmd,
		"dockerd >>$DIR/dockerd.log 2>&1 &",
		infoCmd,
		"CGO_ENABLED=0 GOBIN=$DIR/bin /usr/local/go/bin/go install gvisor.dev/gvisor/runsc@" + install.RunscVersion,
		infoCmd,
		"kill -s HUP 4242",
		infoCmd,
	})
	wantLines(t, "output", h.lines(), []string{
		"docker: installed docker.io iptables",
		"docker: wrote $DIR/etc/docker/daemon.json, adding the registry mirror https://mirror.example.com",
		"docker: started dockerd in the background (log: $DIR/dockerd.log)",
		"gvisor: building runsc " + install.RunscVersion + " with go install (a minute or two)",
		"gvisor: built runsc and installed it as $DIR/bin/runsc",
		"gvisor: wrote $DIR/etc/docker/daemon.json, adding the runtime runsc ($DIR/bin/runsc --platform=systrap --overlay2=root:memory)",
		"gvisor: reloaded dockerd (pid 4242, SIGHUP); it runs with the new configuration",
		"gvisor: docker info lists the runtime runsc ($DIR/bin/runsc --platform=systrap --overlay2=root:memory)",
		"firewall: iptables can install the job network policy (the runtime adds the rules of each job's network)",
	})
	if h.firewall != 1 {
		t.Errorf("CheckFirewall called %d times, want 1", h.firewall)
	}
	config, _ := os.ReadFile(h.in.DaemonConfig)

	h.ran = nil
	if err := h.in.All(ctx); err != nil {
		t.Fatalf("All again: %v", err)
	}
	wantLines(t, "commands of a second run", h.ran, []string{infoCmd, infoCmd})
	wantLines(t, "output of a second run", h.lines(), []string{
		"docker: dockerd already installed (/usr/sbin/dockerd)",
		"docker: iptables already installed (/usr/sbin/iptables)",
		"docker: $DIR/etc/docker/daemon.json already has the registry mirror https://mirror.example.com",
		"docker: dockerd 20.10.24 already runs with this configuration",
		"gvisor: runsc already installed ($DIR/bin/runsc)",
		"gvisor: $DIR/etc/docker/daemon.json already has the runtime runsc ($DIR/bin/runsc --platform=systrap --overlay2=root:memory)",
		"gvisor: dockerd 20.10.24 already runs with this configuration",
		"gvisor: docker info lists the runtime runsc ($DIR/bin/runsc --platform=systrap --overlay2=root:memory)",
		"firewall: iptables can install the job network policy (the runtime adds the rules of each job's network)",
	})
	if again, _ := os.ReadFile(h.in.DaemonConfig); !bytes.Equal(again, config) {
		t.Errorf("daemon.json after a second run:\n%s\nwant unchanged:\n%s", again, config)
	}
}

// A dry run on a fresh host prints every change and makes none: the only
// commands it runs are probes.
func TestInstaller_DryRun(t *testing.T) {
	h := newFakeHost(t, map[string]string{"go": "/usr/local/go/bin/go"})
	h.in.DryRun = true
	if err := h.in.All(t.Context()); err != nil {
		t.Fatalf("All: %v", err)
	}
	wantLines(t, "commands run", h.ran, []string{infoCmd, infoCmd})
	wantLines(t, "output", h.lines(), []string{
		"docker: would run: apt-get update -q",
		"docker: would run: DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io iptables",
		"docker: would write $DIR/etc/docker/daemon.json, adding the registry mirror https://mirror.example.com",
		"    {",
		`      "registry-mirrors": [`,
		`        "https://mirror.example.com"`,
		"      ]",
		"    }",
		"docker: would run: dockerd >>$DIR/dockerd.log 2>&1 &",
		"gvisor: would run: CGO_ENABLED=0 GOBIN=$DIR/bin /usr/local/go/bin/go install gvisor.dev/gvisor/runsc@" + install.RunscVersion,
		"gvisor: would write $DIR/etc/docker/daemon.json, adding the runtime runsc ($DIR/bin/runsc --platform=systrap --overlay2=root:memory)",
		"    {",
		`      "registry-mirrors": [`,
		`        "https://mirror.example.com"`,
		"      ],",
		`      "runtimes": {`,
		`        "runsc": {`,
		`          "path": "$DIR/bin/runsc",`,
		`          "runtimeArgs": [`,
		`            "--platform=systrap",`,
		`            "--overlay2=root:memory"`,
		"          ]",
		"        }",
		"      }",
		"    }",
		"firewall: would check that iptables can install the job network policy",
	})
	if _, err := os.Stat(h.in.DaemonConfig); err == nil {
		t.Errorf("a dry run wrote %s", h.in.DaemonConfig)
	}
	if h.dockerd || h.firewall != 0 {
		t.Errorf("a dry run started dockerd (%v) or changed the firewall (%d checks)", h.dockerd, h.firewall)
	}
}

// A running dockerd without the mirror is reloaded: with SIGHUP, or
// through systemd when systemd runs it.
func TestInstaller_Docker_Reload(t *testing.T) {
	tests := []struct {
		name    string
		systemd bool
		cmds    []string
		done    string
	}{
		{"no systemd", false, []string{infoCmd, "kill -s HUP 4242", infoCmd}, "docker: reloaded dockerd (pid 4242, SIGHUP); it runs with the new configuration"},
		{"systemd", true, []string{infoCmd, "systemctl is-active --quiet docker", "systemctl reload docker", infoCmd}, "docker: reloaded docker.service (systemd); it runs with the new configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t, map[string]string{"dockerd": "/usr/sbin/dockerd", "iptables": "/usr/sbin/iptables"})
			if tt.systemd {
				os.Mkdir(h.in.SystemdDir, 0o755)
			}
			os.MkdirAll(filepath.Dir(h.in.DaemonConfig), 0o755)
			os.WriteFile(h.in.DaemonConfig, []byte(`{"debug": true}`), 0o644)
			h.start()
			if err := h.in.Docker(t.Context()); err != nil {
				t.Fatalf("Docker: %v", err)
			}
			wantLines(t, "commands", h.ran, tt.cmds)
			if got := h.lines(); got[len(got)-1] != tt.done {
				t.Errorf("last line = %q, want %q", got[len(got)-1], tt.done)
			}
			if want := []string{mirror + "/"}; !slices.Equal(h.mirrors, want) {
				t.Errorf("dockerd's mirrors = %q, want %q", h.mirrors, want)
			}
		})
	}
}

func TestInstaller_Errors(t *testing.T) {
	tests := []struct {
		name     string
		programs map[string]string
		osID     string
		env      string
		install  func(*install.Installer, context.Context) error
		want     string
	}{
		{"not Debian", nil, "fedora", mirror, (*install.Installer).Docker, `supports Debian and Ubuntu, and this host runs "Fedora"`},
		{"bad mirror", nil, "debian", "mirror.example.com", (*install.Installer).Docker, "EXECUTOR_DOCKER_REGISTRY_MIRROR_URL"},
		{"gvisor without docker", map[string]string{"go": "/usr/bin/go"}, "debian", mirror, (*install.Installer).GVisor, "run `executor install docker` first"},
		{"no runsc, no Go", map[string]string{"dockerd": "/usr/sbin/dockerd"}, "ubuntu", mirror, (*install.Installer).GVisor, "no Go to build it with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t, tt.programs)
			if tt.programs == nil {
				h.programs = map[string]string{}
			}
			os.WriteFile(h.in.OSRelease, fmt.Appendf(nil, "PRETTY_NAME=%q\nID=%s\n", strings.ToUpper(tt.osID[:1])+tt.osID[1:], tt.osID), 0o644)
			h.in.Getenv = func(string) string { return tt.env }
			err := tt.install(h.in, t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one saying %q", err, tt.want)
			}
			for _, c := range h.ran {
				if c != infoCmd {
					t.Errorf("ran %s before failing", c)
				}
			}
		})
	}
}
