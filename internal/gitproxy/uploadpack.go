package gitproxy

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// maxRequestBody caps an upload-pack request (wants, haves, filters) after
// decompression: a fresh clone sends a few kilobytes.
const maxRequestBody = 64 << 20

// gitProtocolRE admits Git-Protocol header values ("version=2", keys and
// values separated by ':'), which are passed to git as GIT_PROTOCOL.
var gitProtocolRE = regexp.MustCompile(`^[A-Za-z0-9=:._-]{1,256}$`)

// uploadPack runs `git upload-pack --stateless-rpc` on dir: the ref
// advertisement when advertise is set, else one request-response round of
// the fetch negotiation, with the request body as its input. Output is
// streamed and flushed as git writes it. The process is killed when the
// client goes away.
func (s *Server) uploadPack(w http.ResponseWriter, r *http.Request, dir string, advertise bool) {
	protocol := r.Header.Get("Git-Protocol")
	if protocol != "" && !gitProtocolRE.MatchString(protocol) {
		http.Error(w, "malformed Git-Protocol header", http.StatusBadRequest)
		return
	}
	args := []string{
		// Fetching a commit by id, shallow or with a filter, is what
		// executors do; these let protocol v0 clients do it too (v2
		// allows any object of the repository anyway).
		"-c", "uploadpack.allowAnySHA1InWant=true",
		"-c", "uploadpack.allowFilter=true",
		// The operator chose these repositories; they may belong to
		// another user than the coordinator's.
		"-c", "safe.directory=" + dir,
		"upload-pack", "--strict", "--stateless-rpc",
	}
	contentType := "application/x-git-upload-pack-result"
	var preamble []byte
	if advertise {
		args = append(args, "--advertise-refs")
		contentType = "application/x-git-upload-pack-advertisement"
		if !strings.Contains(protocol, "version=2") {
			// Protocol v0/v1 advertisements start with the service line;
			// v2's capability advertisement does not (as git http-backend).
			preamble = []byte("001e# service=git-upload-pack\n0000")
		}
	}
	args = append(args, dir)

	cmd := exec.CommandContext(r.Context(), s.git, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = gitEnv()
	if protocol != "" {
		cmd.Env = append(cmd.Env, "GIT_PROTOCOL="+protocol)
	}
	if !advertise {
		body, err := requestBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer body.Close()
		cmd.Stdin = body
	}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 16 << 10}
	out := &lazyResponse{w: w, rc: http.NewResponseController(w), contentType: contentType, preamble: preamble}
	cmd.Stdout = out

	err := cmd.Run()
	if err == nil {
		if !out.started {
			_, err = out.Write(nil) // an empty answer is still an answer
		}
		return
	}
	msg := strings.TrimSpace(stderr.String())
	if r.Context().Err() != nil {
		s.logger.Debug("git upload-pack ended: the client went away", "dir", dir)
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || strings.Contains(msg, errBodyTooLarge.Error()) {
		msg = errBodyTooLarge.Error()
	}
	s.logger.Error("git upload-pack failed", "dir", dir, "advertise", advertise, "err", err, "stderr", msg)
	if !out.started {
		http.Error(w, fmt.Sprintf("git upload-pack failed: %v: %s", err, msg), http.StatusInternalServerError)
	}
	// Once output has started the status is sent: the client sees a
	// truncated pack and reports it.
}

var errBodyTooLarge = fmt.Errorf("request body exceeds %d MiB", maxRequestBody>>20)

// requestBody returns the request body, decompressed when the client sent
// it gzipped (git does for large negotiations), and capped.
func requestBody(r *http.Request) (io.ReadCloser, error) {
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, fmt.Errorf("gzip request body: %w", err)
		}
		body = zr
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	return struct {
		io.Reader
		io.Closer
	}{&capReader{r: body, n: maxRequestBody}, r.Body}, nil
}

// capReader fails once more than n bytes were read.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

// lazyResponse writes the response headers (and preamble) on git's first
// output, so that a git that fails at once still gets a 500; it flushes
// after every write so progress and packs stream.
type lazyResponse struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	contentType string
	preamble    []byte
	started     bool
}

func (l *lazyResponse) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		h := l.w.Header()
		h.Set("Content-Type", l.contentType)
		h.Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
		h.Set("Expires", "Fri, 01 Jan 1980 00:00:00 GMT")
		h.Set("Pragma", "no-cache")
		l.w.WriteHeader(http.StatusOK)
		if _, err := l.w.Write(l.preamble); err != nil {
			return 0, err
		}
	}
	n, err := l.w.Write(p)
	if err != nil {
		return n, err
	}
	if err := l.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return n, err
	}
	return n, nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// gitEnv is the environment of git commands: the coordinator's, less the
// variables that point git at another repository or carry configuration of
// a parent git (git's own list of "local repository" variables, plus
// GIT_PROTOCOL), and never prompting for credentials.
func gitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if isLocalRepoVar(name) {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GIT_TERMINAL_PROMPT=0")
}

func isLocalRepoVar(name string) bool {
	switch name {
	case "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
		"GIT_OBJECT_DIRECTORY", "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_GRAFT_FILE",
		"GIT_INDEX_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_PREFIX",
		"GIT_SHALLOW_FILE", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PROTOCOL", "GIT_TERMINAL_PROMPT":
		return true
	}
	return strings.HasPrefix(name, "GIT_CONFIG_KEY_") || strings.HasPrefix(name, "GIT_CONFIG_VALUE_")
}
