package docker_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/execd/execd/internal/sandbox/docker"
)

// registry is a minimal registry (the v2 API, read only) serving the test
// image under any repository name, optionally behind basic auth.
type registry struct {
	*httptest.Server
	manifest, manifestDigest string
	blobs                    map[string][]byte // digest -> content
	user, password           string            // empty: no auth

	mu    sync.Mutex
	pulls []string // repository:reference of each manifest served
}

// newRegistry serves the test image, exported from dockerd.
func newRegistry(t *testing.T, rt *docker.Runtime, user, password string) *registry {
	t.Helper()
	config, layer := exportImage(t, rt)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	digest := func(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }
	r := &registry{blobs: map[string][]byte{digest(config): config, digest(gz.Bytes()): gz.Bytes()}, user: user, password: password}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.docker.distribution.manifest.v2+json",
		"config":        map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": digest(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": gz.Len(), "digest": digest(gz.Bytes())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.manifest, r.manifestDigest = string(manifest), digest(manifest)
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// host is the registry's host:port.
func (r *registry) host() string { return strings.TrimPrefix(r.URL, "http://") }

func (r *registry) served() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pulls
}

func (r *registry) serve(w http.ResponseWriter, req *http.Request) {
	if r.user != "" {
		if u, p, ok := req.BasicAuth(); !ok || u != r.user || p != r.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
	}
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	if path == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if name, ref, ok := strings.Cut(path, "/manifests/"); ok {
		if strings.Contains(name, "missing") || (strings.HasPrefix(ref, "sha256:") && ref != r.manifestDigest) {
			registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		r.mu.Lock()
		r.pulls = append(r.pulls, name+":"+ref)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
		w.Header().Set("Docker-Content-Digest", r.manifestDigest)
		w.Header().Set("Content-Length", fmt.Sprint(len(r.manifest)))
		if req.Method != http.MethodHead {
			io.WriteString(w, r.manifest)
		}
		return
	}
	if _, digest, ok := strings.Cut(path, "/blobs/"); ok {
		b, ok := r.blobs[digest]
		if !ok {
			registryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown")
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Header().Set("Docker-Content-Digest", digest)
		if req.Method != http.MethodHead {
			w.Write(b)
		}
		return
	}
	registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "unknown")
}

func registryError(w http.ResponseWriter, code int, errCode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"errors": [{"code": %q, "message": %q}]}`, errCode, msg)
}

// exportImage returns the test image's config and its only layer
// (uncompressed), from docker save.
func exportImage(t *testing.T, rt *docker.Runtime) (config, layer []byte) {
	t.Helper()
	rc, err := docker.Client(rt).ImageSave(context.Background(), []string{testImage})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		t.Fatalf("docker save of %s: manifest %s (%v); want one image of one layer", testImage, files["manifest.json"], err)
	}
	return files[manifest[0].Config], files[manifest[0].Layers[0]]
}

// removeImage removes an image the test pulled.
func removeImage(t *testing.T, rt *docker.Runtime, ref string) {
	t.Helper()
	t.Cleanup(func() {
		docker.Client(rt).ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
	})
}
