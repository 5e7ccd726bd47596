package install

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// dockerInfo is what `docker info` tells of the daemon's configuration.
type dockerInfo struct {
	ServerVersion  string
	Runtimes       map[string]DaemonRuntime
	RegistryConfig struct{ Mirrors []string }
}

// info asks the running dockerd for its configuration; an error means it
// does not answer.
func (s *session) info(ctx context.Context) (dockerInfo, error) {
	out, err := s.Runner.Run(ctx, command("docker", "info", "--format", "{{json .}}"))
	if err != nil {
		return dockerInfo{}, err
	}
	var info dockerInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return dockerInfo{}, fmt.Errorf("docker info: unexpected output: %w", err)
	}
	if info.ServerVersion == "" {
		return dockerInfo{}, fmt.Errorf("docker info: no server answered")
	}
	return info, nil
}

// dockerd makes sure dockerd runs with daemon.json's configuration, which
// ready checks: it starts a dockerd that does not run, and reloads one
// that runs when the configuration changed or ready fails.
func (s *session) dockerd(ctx context.Context, section string, changed bool, ready func(dockerInfo) error) error {
	info, err := s.info(ctx)
	if err != nil {
		return s.startDockerd(ctx, section, ready)
	}
	if !changed && ready(info) == nil {
		s.say("%s: dockerd %s already runs with this configuration", section, info.ServerVersion)
		return nil
	}
	if s.DryRun {
		if !s.pretended["dockerd"] {
			s.pretended["dockerd"] = true
			s.say("%s: would reload dockerd (SIGHUP) for the new configuration", section)
		}
		return nil
	}
	how, err := s.reloadDockerd(ctx)
	if err != nil {
		return err
	}
	err = s.waitDockerd(ctx, ready)
	if err != nil && s.systemd() {
		s.say("%s: dockerd did not take the new configuration on reload (%v); restarting it", section, err)
		if _, err := s.Runner.Run(ctx, command("systemctl", "restart", "docker")); err != nil {
			return fmt.Errorf("restart dockerd: %w", err)
		}
		how = "restarted docker.service"
		err = s.waitDockerd(ctx, ready)
	}
	if err != nil {
		return fmt.Errorf("dockerd does not run with the new configuration after a reload: %w; restart dockerd", err)
	}
	s.say("%s: %s; it runs with the new configuration", section, how)
	return nil
}

// startDockerd starts dockerd: with systemd when systemd runs, else in
// the background, logging to DockerdLog.
func (s *session) startDockerd(ctx context.Context, section string, ready func(dockerInfo) error) error {
	if s.DryRun {
		if !s.pretended["dockerd"] {
			s.pretended["dockerd"] = true
			if s.systemd() {
				s.say("%s: would run: systemctl enable --now docker", section)
			} else {
				s.say("%s: would run: %s", section, Cmd{Name: "dockerd", Log: s.DockerdLog})
			}
		}
		return nil
	}
	var how string
	if s.systemd() {
		if _, err := s.Runner.Run(ctx, command("systemctl", "enable", "--now", "docker")); err != nil {
			return fmt.Errorf("start dockerd: %w", err)
		}
		how = "started docker.service (systemd)"
	} else {
		if err := s.Runner.Start(ctx, Cmd{Name: "dockerd", Log: s.DockerdLog}); err != nil {
			return fmt.Errorf("start dockerd: %w", err)
		}
		how = "started dockerd in the background (log: " + s.DockerdLog + ")"
	}
	if err := s.waitDockerd(ctx, ready); err != nil {
		log := ""
		if !s.systemd() {
			if b, rerr := os.ReadFile(s.DockerdLog); rerr == nil {
				log = "; the end of " + s.DockerdLog + ":\n" + lastLines(string(b), 15)
			}
		}
		return fmt.Errorf("dockerd was started but %w%s", err, log)
	}
	s.say("%s: %s", section, how)
	return nil
}

// reloadDockerd sends the running dockerd SIGHUP, through systemd when
// systemd runs it, and says how.
func (s *session) reloadDockerd(ctx context.Context) (string, error) {
	if s.systemd() {
		if _, err := s.Runner.Run(ctx, command("systemctl", "is-active", "--quiet", "docker")); err == nil {
			if _, err := s.Runner.Run(ctx, command("systemctl", "reload", "docker")); err != nil {
				return "", fmt.Errorf("reload dockerd: %w", err)
			}
			return "reloaded docker.service (systemd)", nil
		}
	}
	pid, err := s.dockerdPID(ctx)
	if err != nil {
		return "", err
	}
	if _, err := s.Runner.Run(ctx, command("kill", "-s", "HUP", strconv.Itoa(pid))); err != nil {
		return "", fmt.Errorf("reload dockerd: %w", err)
	}
	return fmt.Sprintf("reloaded dockerd (pid %d, SIGHUP)", pid), nil
}

// dockerdPID finds the running dockerd: its pid file, else pidof.
func (s *session) dockerdPID(ctx context.Context) (int, error) {
	if b, err := os.ReadFile(s.DockerPIDFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid, nil
		}
	}
	out, err := s.Runner.Run(ctx, command("pidof", "dockerd"))
	if err != nil {
		return 0, fmt.Errorf("find the running dockerd to reload it (no pid in %s, and pidof: %w); restart dockerd", s.DockerPIDFile, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 1 {
		return 0, fmt.Errorf("find the running dockerd to reload it: pidof dockerd says %q; restart dockerd", strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(fields[0])
}

// waitDockerd waits until dockerd answers and ready accepts its
// configuration, at most DockerdTimeout.
func (s *session) waitDockerd(ctx context.Context, ready func(dockerInfo) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.DockerdTimeout)
	defer cancel()
	for {
		info, err := s.info(ctx)
		if err == nil {
			if err = ready(info); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", s.DockerdTimeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *session) systemd() bool {
	fi, err := os.Stat(s.SystemdDir)
	return err == nil && fi.IsDir()
}
