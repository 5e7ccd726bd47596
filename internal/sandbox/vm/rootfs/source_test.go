package rootfs_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/vm/rootfs"
)

// testRegistry is an in-memory registry on loopback, behind basic auth
// when user is set, with img pushed as repo:1.
func testRegistry(t *testing.T, user, password string, repo string, img v1.Image) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host + "/" + repo + ":1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatalf("push: %v", err)
	}
	return host
}

// b64 is the "auths" form of credentials: base64 of user:password.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestCache_GetRegistry(t *testing.T) {
	needRoot(t)
	img := imageOf(t, sampleLayers()...)
	open := testRegistry(t, "", "", "test/app", img)
	locked := testRegistry(t, "user", "secret", "test/app", img)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	unreachable := strings.TrimPrefix(closed.URL, "http://")
	auths := func(host, user, password string) map[string]string {
		return map[string]string{host: b64(user + ":" + password)}
	}
	tests := []struct {
		name    string
		ref     string
		auths   map[string]string
		mirrors []string
		wantErr error // nil: found; errRetry: neither not-found nor denied
	}{
		{"found", open + "/test/app:1", nil, nil, nil},
		{"by digest", open + "/test/app@" + digest(t, img), nil, nil, nil},
		{"no such tag", open + "/test/app:2", nil, nil, sandbox.ErrImageNotFound},
		{"no such repository", open + "/test/nothing:1", nil, nil, sandbox.ErrImageNotFound},
		{"credentials", locked + "/test/app:1", auths(locked, "user", "secret"), nil, nil},
		{"no credentials", locked + "/test/app:1", nil, nil, sandbox.ErrRegistryDenied},
		{"wrong credentials", locked + "/test/app:1", auths(locked, "user", "wrong"), nil, sandbox.ErrRegistryDenied},
		{"unreachable", unreachable + "/test/app:1", nil, nil, errRetry},
		{"invalid reference", "Not A Reference!", nil, nil, sandbox.ErrImageNotFound},
		// Docker Hub is not reachable from the tests: only the mirror can
		// answer, and one that lacks the image proves nothing.
		{"docker hub through a mirror", "test/app:1", nil, []string{"http://" + open}, nil},
		{"docker hub, mirror lacks it", "test/other:1", nil, []string{open}, errRetry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, rootfs.Config{Sources: []rootfs.Source{rootfs.SourceRegistry}, RegistryMirrors: tt.mirrors})
			im, err := c.Get(context.Background(), tt.ref, tt.auths, nil)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Get() = %v", err)
			case tt.wantErr == nil:
				defer im.Release()
				checkSample(t, mountImage(t, im.Format, im.Path))
			case tt.wantErr == errRetry:
				if err == nil || errors.Is(err, sandbox.ErrImageNotFound) || errors.Is(err, sandbox.ErrRegistryDenied) {
					t.Fatalf("Get() = %v, want an error that a retry may fix", err)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("Get() = %v, want %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("Get() = %v: the error shows the password", err)
			}
		})
	}
}

var errRetry = errors.New("retryable")

func digest(t *testing.T, img v1.Image) string {
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestCache_GetTamperedLayer: a registry that serves another layer's
// content for a digest fails the build, though the content is a valid
// layer: it is checked against the digest past the tar's end.
func TestCache_GetTamperedLayer(t *testing.T) {
	needRoot(t)
	good, evil := randomImage(t, 1<<20), randomImage(t, 1<<20)
	goodLayers, _ := good.Layers()
	evilLayers, _ := evil.Layers()
	want, _ := goodLayers[0].Digest()
	rc, err := evilLayers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	evilBlob, _ := io.ReadAll(rc)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+want.String()) {
			w.Write(evilBlob)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/app:1"
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(parsed, good); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, rootfs.Config{Sources: []rootfs.Source{rootfs.SourceRegistry}})
	im, err := c.Get(context.Background(), ref, nil, nil)
	if err == nil {
		im.Release()
		t.Fatal("Get() of a tampered layer succeeded, want an error")
	}
	t.Log(err)
	if n, _ := c.Usage(); n != 0 {
		t.Errorf("usage %d after a failed build, want 0", n)
	}
}
