package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// ensureImage makes ref available to containers, pulling it when it is
// missing, and returns the local reference to create containers from.
// Pull progress goes to out, and with verbose set, that the image is
// present.
func (r *Runtime) ensureImage(ctx context.Context, ref string, auths map[string]string, out io.Writer, verbose bool) (string, error) {
	if ref == "" {
		return "", errors.New("docker: no image: the docker runtime runs each step in a container of the step's image")
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return "", fmt.Errorf("docker: image %q is not a valid image reference (%w): fix the step's image", ref, err)
	}
	inspect, err := r.cli.ImageInspect(ctx, ref)
	if err == nil {
		if verbose {
			fmt.Fprintf(out, "image %s is present (%s)\n", ref, shortID(inspect.ID))
		}
		return ref, nil
	}
	if !client.IsErrNotFound(err) {
		return "", fmt.Errorf("%w (looking up image %q)", r.daemonError(err), ref)
	}
	return r.pull(ctx, ref, auths, out)
}

// pullSource is one place to pull an image from.
type pullSource struct {
	ref      string // what to pull
	registry string // its registry host, for credentials and messages
	mirror   bool
}

// pullSources lists where to pull named from: for Docker Hub images each
// registry mirror in order, then the image's own registry.
func (r *Runtime) pullSources(named reference.Named) []pullSource {
	var sources []pullSource
	if reference.Domain(named) == "docker.io" {
		suffix := ""
		if d, ok := named.(reference.Digested); ok {
			suffix = "@" + d.Digest().String()
		} else if t, ok := named.(reference.Tagged); ok {
			suffix = ":" + t.Tag()
		}
		for _, m := range r.set.mirrors {
			sources = append(sources, pullSource{ref: m + "/" + reference.Path(named) + suffix, registry: m, mirror: true})
		}
	}
	return append(sources, pullSource{ref: named.String(), registry: reference.Domain(named)})
}

// pull pulls ref, through the registry mirrors for Docker Hub images, and
// returns the local reference to create containers from.
func (r *Runtime) pull(ctx context.Context, ref string, auths map[string]string, out io.Writer) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("docker: image %q is not a valid image reference (%w): fix the step's image", ref, err)
	}
	named = reference.TagNameOnly(named)
	var (
		errs   []error
		last   error // of the image's own registry, the last source
		authed bool  // credentials were given to it
	)
	for _, src := range r.pullSources(named) {
		fmt.Fprintf(out, "pulling %s\n", src.ref)
		err := r.pullOne(ctx, src, auths, out)
		if err == nil {
			if !src.mirror {
				return ref, nil
			}
			if _, digested := named.(reference.Digested); digested {
				return src.ref, nil // a digest cannot be a tag
			}
			if err := r.cli.ImageTag(ctx, src.ref, named.String()); err != nil {
				return "", fmt.Errorf("%w (tagging %s as %s)", r.daemonError(err), src.ref, named)
			}
			return ref, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if client.IsErrConnectionFailed(err) || isDialError(err) {
			return "", fmt.Errorf("%w (pulling image %q)", r.daemonError(err), ref)
		}
		fmt.Fprintf(out, "pull from %s failed: %v\n", src.registry, err)
		errs = append(errs, fmt.Errorf("%s: %w", src.registry, err))
		last = err
		_, authed = auths[src.registry]
	}
	return "", pullError(ref, reference.Domain(named), last, authed, errs)
}

// pullOne pulls src.ref, writing the daemon's progress messages to out.
func (r *Runtime) pullOne(ctx context.Context, src pullSource, auths map[string]string, out io.Writer) error {
	var opts image.PullOptions
	if a, ok := auths[src.registry]; ok {
		user, password, err := dockerconfig.DecodeAuth(a)
		if err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		opts.RegistryAuth, err = registry.EncodeAuthConfig(registry.AuthConfig{Username: user, Password: password, ServerAddress: src.registry})
		if err != nil {
			return err
		}
	}
	rc, err := r.cli.ImagePull(ctx, src.ref, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Not a terminal: status lines, without progress bars.
	return jsonmessage.DisplayJSONMessagesStream(rc, out, 0, false, nil)
}

// pullError says why an image could not be pulled and what to do. The
// answer of the image's own registry (own) decides whether a retry can
// help: a mirror that lacks an image proves nothing. dockerd (20.10 at
// least) answers every registry failure with status 500, so beyond
// errdefs the registry's words are read: "manifest unknown", "not
// found", "repository does not exist" mean the image does not exist;
// "unauthorized", "denied", "no basic auth credentials" that the
// credentials were refused or missing. Both are permanent.
func pullError(ref, registry string, own error, authed bool, errs []error) error {
	err := errors.Join(errs...)
	msg := strings.ToLower(err.Error())
	ownMsg := strings.ToLower(own.Error())
	reason := strings.TrimPrefix(own.Error(), "Error response from daemon: ")
	switch {
	case containsAny(msg, "dial tcp", "no such host", "connection refused", "i/o timeout", "network is unreachable",
		"tls handshake timeout", "server misbehaving", "client.timeout", "connection reset", "no route to host"):
		return fmt.Errorf("docker: image %q is not on this host and its registry cannot be reached: %w: "+
			"load the image into dockerd (docker load or docker import), make the registry reachable, "+
			"or set EXECUTOR_DOCKER_REGISTRY_MIRROR_URL to a mirror that is", ref, err)
	case cerrdefs.IsNotFound(own) || containsAny(ownMsg, "manifest unknown", "not found", "does not exist", "name unknown"):
		return &pullFailure{
			msg:  fmt.Sprintf("docker: image %q does not exist in registry %s (%s): check the step's image name and tag", ref, registry, reason),
			kind: sandbox.ErrImageNotFound, err: err,
		}
	case cerrdefs.IsUnauthorized(own) || cerrdefs.IsPermissionDenied(own) ||
		containsAny(ownMsg, "unauthorized", "authentication required", "denied", "no basic auth credentials"):
		if authed {
			return &pullFailure{
				msg: fmt.Sprintf("docker: registry %s refused access to image %q with the credentials given (%s): "+
					"check them (EXECUTOR_DOCKER_AUTH_CONFIG, or the job's dockerAuthConfig)", registry, ref, reason),
				kind: sandbox.ErrRegistryDenied, err: err,
			}
		}
		return &pullFailure{
			msg: fmt.Sprintf("docker: registry %s refused access to image %q: it requires credentials and none were given (%s): "+
				"set them in EXECUTOR_DOCKER_AUTH_CONFIG or the job's dockerAuthConfig", registry, ref, reason),
			kind: sandbox.ErrRegistryDenied, err: err,
		}
	}
	return fmt.Errorf("docker: pull image %q failed: %w: check the image name, the registry and dockerd's log", ref, err)
}

// pullFailure is a pull that no retry can fix: kind is
// sandbox.ErrImageNotFound or sandbox.ErrRegistryDenied, err what each
// registry answered.
type pullFailure struct {
	msg  string
	kind error
	err  error
}

func (e *pullFailure) Error() string   { return e.msg }
func (e *pullFailure) Unwrap() []error { return []error{e.kind, e.err} }

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// shortID abbreviates an image ID as docker shows it.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
