package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/execd/execd/internal/runtime"
)

// Clean removes the containers and networks (with their firewall rules)
// labelled execd.managed=true for which stale reports true, whoever made
// them: containers first, then networks. See [runtime.Janitor].
func (r *Runtime) Clean(ctx context.Context, stale func(runtime.Leftover) bool) error {
	if err := r.usable(); err != nil {
		return err
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
		if err != nil && !client.IsErrNotFound(err) {
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
	for _, n := range networks {
		l := leftover(n.Labels)
		if !stale(l) {
			continue
		}
		if err := r.removeNetwork(ctx, n.ID, n.Options[bridgeOption]); err != nil {
			errs = append(errs, err)
			continue
		}
		r.cfg.Logger.Info("janitor: removed the network of a job that is over", "runtime", r.Name(),
			"network", n.Name, "job", l.JobID, "owner", l.Owner)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("docker: janitor: %w", err)
	}
	return nil
}

func leftover(labels map[string]string) runtime.Leftover {
	return runtime.Leftover{JobID: labels[labelJob], Owner: labels[labelOwner], Workspace: labels[labelWorkspace]}
}
