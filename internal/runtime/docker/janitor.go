package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/execd/execd/internal/runtime"
)

// Clean removes the containers and networks (with their firewall rules)
// labelled execd.managed=true for which stale reports true, whoever made
// them: containers first, then networks. When [Config.Firewall] has a
// method Bridges(context.Context) ([]string, error), it also removes the
// rules of bridges named as this runtime names them whose network is
// gone. See [runtime.Janitor].
func (r *Runtime) Clean(ctx context.Context, stale func(runtime.Leftover) bool) error {
	if err := r.usable(); err != nil {
		return err
	}
	// Listed before the networks: a bridge whose rules exist now has its
	// network already (Prepare applies the rules after creating it).
	var ruled []string
	lister, hasRules := r.cfg.Firewall.(interface {
		Bridges(context.Context) ([]string, error)
	})
	if hasRules {
		var err error
		if ruled, err = lister.Bridges(ctx); err != nil {
			return fmt.Errorf("docker: janitor: list the firewall's bridges: %w", err)
		}
	}
	managed := filters.NewArgs(filters.Arg("label", labelManaged+"=true"))
	containers, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: managed})
	if err != nil {
		return fmt.Errorf("%w (listing containers for the janitor)", r.daemonError(err))
	}
	var errs []error
	for _, c := range containers {
		l := leftover(c.Labels)
		if !stale(l) {
			continue
		}
		err := r.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		if !removed(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
			continue
		}
		r.cfg.Logger.Info("janitor: removed a container of a job that is over", "runtime", r.Name(),
			"container", c.ID, "names", c.Names, "job", l.JobID, "owner", l.Owner)
	}
	networks, err := r.cli.NetworkList(ctx, network.ListOptions{Filters: managed})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("%w (listing networks for the janitor)", r.daemonError(err)))...)
	}
	live := map[string]bool{}
	for _, n := range networks {
		l := leftover(n.Labels)
		if !stale(l) {
			live[n.Options[bridgeOption]] = true
			continue
		}
		if err := r.removeNetwork(ctx, n.ID, n.Options[bridgeOption]); err != nil {
			errs = append(errs, err)
			continue
		}
		live[n.Options[bridgeOption]] = true // its rules are gone with it
		r.cfg.Logger.Info("janitor: removed the network of a job that is over", "runtime", r.Name(),
			"network", n.Name, "job", l.JobID, "owner", l.Owner)
	}
	for _, b := range ruled {
		if live[b] || !isOurBridge(b) {
			continue
		}
		if err := r.cfg.Firewall.Remove(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("remove the network policy of bridge %s: %w", b, err))
			continue
		}
		r.cfg.Logger.Info("janitor: removed the firewall rules of a bridge whose network is gone", "runtime", r.Name(), "bridge", b)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("docker: janitor: %w", err)
	}
	return nil
}

// isOurBridge reports whether a bridge is named as Prepare names them:
// "execd" and ten hexadecimal digits.
func isOurBridge(name string) bool {
	hex, ok := strings.CutPrefix(name, "execd")
	if !ok || len(hex) != 10 {
		return false
	}
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func leftover(labels map[string]string) runtime.Leftover {
	return runtime.Leftover{JobID: labels[labelJob], Owner: labels[labelOwner], Workspace: labels[labelWorkspace]}
}
