package rootfs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/daemon"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/moby/moby/client"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/dockerconfig"
)

// Source is a place where images are looked up.
type Source string

const (
	// SourceDaemon is the local Docker daemon (docker save).
	SourceDaemon Source = "daemon"
	// SourceLayout is an OCI image layout directory (Config.LayoutDir).
	SourceLayout Source = "layout"
	// SourceRegistry is the image's registry, through the registry
	// mirrors for Docker Hub images.
	SourceRegistry Source = "registry"
)

// DefaultSources is the order images are looked up in by default.
var DefaultSources = []Source{SourceDaemon, SourceLayout, SourceRegistry}

// found is an image found in a source.
type found struct {
	img    v1.Image
	id     v1.Hash // its config's digest: the cache key
	source string  // where it was found, for messages
}

// resolver finds images in the configured sources.
type resolver struct {
	cfg Config

	dockerOnce sync.Once
	docker     *client.Client
	dockerErr  error
}

// lookupError is what one source answered: notFound and denied are
// definite, anything else (unreachable, engine errors) may pass.
type lookupError struct {
	source   string
	err      error
	notFound bool
	denied   bool
	authed   bool // credentials were given
}

func (e *lookupError) Error() string { return e.source + ": " + e.err.Error() }

// resolve finds ref in the sources, in order.
func (r *resolver) resolve(ctx context.Context, ref string, auths map[string]string) (*found, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not a valid image reference (%v): fix the step's image", sandbox.ErrImageNotFound, ref, err)
	}
	var errs []*lookupError
	for _, s := range r.cfg.Sources {
		var f *found
		var lerrs []*lookupError
		switch s {
		case SourceDaemon:
			f, lerrs = r.fromDaemon(ctx, parsed)
		case SourceLayout:
			if r.cfg.LayoutDir == "" {
				continue
			}
			f, lerrs = r.fromLayout(parsed)
		case SourceRegistry:
			f, lerrs = r.fromRegistry(ctx, parsed, auths)
		}
		if f != nil {
			return f, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, lerrs...)
	}
	return nil, resolveError(ref, errs)
}

// resolveError says why ref was found nowhere. The last source decides
// (the image's own registry, when the registry is a source): it not
// having the image, or refusing access, is permanent; anything else (a
// registry that cannot be reached) may pass, and a retry may succeed.
func resolveError(ref string, errs []*lookupError) error {
	if len(errs) == 0 {
		return fmt.Errorf("image %q: no image source is configured", ref)
	}
	var joined []error
	var msgs []string
	for _, e := range errs {
		joined = append(joined, e)
		msgs = append(msgs, e.Error())
	}
	all := &sourceErrors{msg: strings.Join(msgs, "; "), errs: joined}
	last := errs[len(errs)-1]
	switch {
	case last.denied && last.authed:
		return &lookupFailure{kind: sandbox.ErrRegistryDenied, err: all,
			msg: fmt.Sprintf("image %q: the registry refused the credentials given (%v): check them (EXECUTOR_DOCKER_AUTH_CONFIG or the job's dockerAuthConfig)", ref, all)}
	case last.denied:
		return &lookupFailure{kind: sandbox.ErrRegistryDenied, err: all,
			msg: fmt.Sprintf("image %q: the registry requires credentials and none were given (%v): set them in EXECUTOR_DOCKER_AUTH_CONFIG or the job's dockerAuthConfig", ref, all)}
	case last.notFound:
		return &lookupFailure{kind: sandbox.ErrImageNotFound, err: all,
			msg: fmt.Sprintf("image %q does not exist (%v): check the step's image name and tag", ref, all)}
	}
	return fmt.Errorf("image %q could not be fetched: %w: make the Docker daemon or the registry reachable, or set EXECUTOR_DOCKER_REGISTRY_MIRROR_URL to a mirror that is", ref, all)
}

// sourceErrors are the answers of every source, on one line.
type sourceErrors struct {
	msg  string
	errs []error
}

func (e *sourceErrors) Error() string   { return e.msg }
func (e *sourceErrors) Unwrap() []error { return e.errs }

// lookupFailure is a lookup that no retry can fix: kind is
// sandbox.ErrImageNotFound or sandbox.ErrRegistryDenied.
type lookupFailure struct {
	msg  string
	kind error
	err  error
}

func (e *lookupFailure) Error() string   { return e.msg }
func (e *lookupFailure) Unwrap() []error { return []error{e.kind, e.err} }

// dockerClient connects to the daemon once. The client negotiates the
// API version down to the daemon's (1.41 for Debian's 20.10) on its first
// request.
func (r *resolver) dockerClient() (*client.Client, error) {
	r.dockerOnce.Do(func() {
		opts := []client.Opt{client.FromEnv}
		if r.cfg.DockerHost != "" {
			opts = append(opts, client.WithHost(r.cfg.DockerHost))
		}
		r.docker, r.dockerErr = client.New(opts...)
	})
	return r.docker, r.dockerErr
}

func (r *resolver) fromDaemon(ctx context.Context, ref name.Reference) (*found, []*lookupError) {
	cli, err := r.dockerClient()
	if err != nil {
		return nil, []*lookupError{{source: "docker daemon", err: err}}
	}
	// Layers are read from one docker save, buffered in a temporary file:
	// a large image is not held in memory.
	img, err := daemon.Image(ref, daemon.WithClient(cli), daemon.WithContext(ctx), daemon.WithFileBufferedOpener())
	if err != nil {
		return nil, []*lookupError{{source: "docker daemon", err: err, notFound: cerrdefs.IsNotFound(err)}}
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, []*lookupError{{source: "docker daemon", err: err}}
	}
	return &found{img: img, id: id, source: "docker daemon"}, nil
}

// The annotations that name an image in an OCI layout's index.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

func (r *resolver) fromLayout(ref name.Reference) (*found, []*lookupError) {
	source := "layout " + r.cfg.LayoutDir
	fail := func(err error, notFound bool) (*found, []*lookupError) {
		return nil, []*lookupError{{source: source, err: err, notFound: notFound}}
	}
	idx, err := layout.ImageIndexFromPath(r.cfg.LayoutDir)
	if err != nil {
		return fail(err, false)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fail(err, false)
	}
	for _, d := range im.Manifests {
		if !layoutMatch(d, ref) {
			continue
		}
		img, err := imageFor(idx, d)
		if err != nil {
			return fail(err, false)
		}
		id, err := img.ConfigName()
		if err != nil {
			return fail(err, false)
		}
		return &found{img: img, id: id, source: source}, nil
	}
	return fail(errors.New("no such image in the layout's index"), true)
}

// layoutMatch reports whether an index entry is ref: by digest, by its
// full name (containerd's annotation, or ref.name holding one), or by tag
// alone when ref.name is only a tag.
func layoutMatch(d v1.Descriptor, ref name.Reference) bool {
	if dg, ok := ref.(name.Digest); ok {
		return d.Digest.String() == dg.DigestStr()
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return false
	}
	for _, a := range []string{d.Annotations[annotationContainerdName], d.Annotations[annotationRefName]} {
		if a == "" {
			continue
		}
		if t, err := name.NewTag(a); err == nil && strings.Contains(a, ":") && t.Name() == tag.Name() {
			return true
		}
	}
	return d.Annotations[annotationRefName] == tag.TagStr()
}

// imageFor returns the image of an index entry: for a nested index, its
// image for this machine's platform.
func imageFor(idx v1.ImageIndex, d v1.Descriptor) (v1.Image, error) {
	if !d.MediaType.IsIndex() {
		return idx.Image(d.Digest)
	}
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := platform()
	for _, m := range cm.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(want) && !m.MediaType.IsIndex() {
			return child.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("the image has no variant for %s", want)
}

func platform() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// fromRegistry fetches ref's manifest and config from its registry, for
// Docker Hub images trying each mirror first.
func (r *resolver) fromRegistry(ctx context.Context, ref name.Reference, auths map[string]string) (*found, []*lookupError) {
	var errs []*lookupError
	for _, m := range r.mirrorRefs(ref) {
		f, err := r.fetch(ctx, m, auths, "mirror "+m.Context().RegistryStr())
		if err == nil {
			return f, nil
		}
		errs = append(errs, err)
	}
	f, err := r.fetch(ctx, ref, auths, "registry "+ref.Context().RegistryStr())
	if err == nil {
		return f, nil
	}
	return nil, append(errs, err)
}

// mirrorRefs are ref in each registry mirror, for images of Docker Hub.
func (r *resolver) mirrorRefs(ref name.Reference) []name.Reference {
	if dockerconfig.RegistryKey(ref.Context().RegistryStr()) != "docker.io" {
		return nil
	}
	var refs []name.Reference
	for _, m := range r.cfg.RegistryMirrors {
		mirror, err := dockerconfig.ParseMirror(m)
		if err != nil {
			continue
		}
		var opts []name.Option
		if mirror.Scheme == "http" {
			opts = append(opts, name.Insecure)
		}
		sep := ":"
		if _, ok := ref.(name.Digest); ok {
			sep = "@"
		}
		mr, err := name.ParseReference(mirror.Host+"/"+ref.Context().RepositoryStr()+sep+ref.Identifier(), opts...)
		if err == nil {
			refs = append(refs, mr)
		}
	}
	return refs
}

func (r *resolver) fetch(ctx context.Context, ref name.Reference, auths map[string]string, source string) (*found, *lookupError) {
	auth := authn.Anonymous
	a, authed := auths[dockerconfig.RegistryKey(ref.Context().RegistryStr())]
	if authed {
		user, password, err := dockerconfig.DecodeAuth(a)
		if err != nil {
			return nil, &lookupError{source: source, err: fmt.Errorf("credentials: %w", err), denied: true, authed: true}
		}
		auth = &authn.Basic{Username: user, Password: password}
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithPlatform(platform())}
	if r.cfg.Transport != nil {
		opts = append(opts, remote.WithTransport(r.cfg.Transport))
	}
	img, err := remote.Image(ref, opts...)
	if err == nil {
		var id v1.Hash
		if id, err = img.ConfigName(); err == nil {
			return &found{img: img, id: id, source: source}, nil
		}
	}
	le := &lookupError{source: source, err: err, authed: authed}
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusNotFound || hasCode(te, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			le.notFound = true
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden ||
			hasCode(te, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			le.denied = true
		}
	}
	return nil, le
}

func hasCode(te *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range te.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}
