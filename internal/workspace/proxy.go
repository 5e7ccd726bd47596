package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/execd/execd/internal/protocol"
)

// GitProxy forwards git's smart HTTP requests for one job's repository
// from a listener on 127.0.0.1 to the coordinator, adding the job's
// credentials: /<repo>/... goes to <upstream>/.executors/git/<repo>/...
// with "Authorization: Bearer <job token>", X-Sourcegraph-Job-ID and
// X-Sourcegraph-Executor-Name. Git is pointed at [GitProxy.URL] and never
// sees the token. Requests for other repositories are answered 404.
//
// The proxy remembers the first failure of the coordinator it saw (an
// error status, a connection that could not be made or broke), so that a
// failed git command is explained by facts rather than by git's words.
type GitProxy struct {
	url    string
	server *http.Server
	done   chan struct{}

	mu      sync.Mutex
	failure *upstreamError
}

// upstreamError is how the coordinator failed a request of the proxy:
// an HTTP error status with the first line of its answer, or no answer
// at all (err).
type upstreamError struct {
	status int
	msg    string // the first line of the answer's body
	err    error  // the request could not be made, or its body broke
	broke  bool   // err came in the middle of an answer
}

func (e *upstreamError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	if e.msg == "" {
		return fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("HTTP %d: %s", e.status, e.msg)
}

func (e *upstreamError) Unwrap() error { return e.err }

// record keeps the first upstream failure: later ones are consequences.
func (p *GitProxy) record(e *upstreamError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failure == nil {
		p.failure = e
	}
}

// upstreamFailure returns the first failure of the coordinator the proxy
// saw, or nil.
func (p *GitProxy) upstreamFailure() *upstreamError {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failure
}

// NewGitProxy starts a proxy for job's repository to the coordinator at
// upstream (the frontend URL, without /.executors). Of httpClient only
// the Transport is used (nil: http.DefaultTransport). Close stops it.
func NewGitProxy(upstream string, job protocol.Job, executorName string, httpClient *http.Client) (*GitProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("git proxy: upstream URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("git proxy: upstream URL %q: want http://host or https://host", upstream)
	}
	if job.RepositoryName == "" {
		return nil, errors.New("git proxy: the job has no repository")
	}
	target := *u
	target.Path, target.RawPath = strings.TrimSuffix(u.Path, "/")+"/.executors/git", ""
	transport := http.DefaultTransport
	if httpClient != nil && httpClient.Transport != nil {
		transport = httpClient.Transport
	}
	p := &GitProxy{done: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&target)
			h := pr.Out.Header
			h.Set("Authorization", "Bearer "+job.Token)
			h.Set("X-Sourcegraph-Job-ID", strconv.Itoa(job.ID))
			h.Set("X-Sourcegraph-Executor-Name", executorName)
		},
		Transport:     transport,
		FlushInterval: -1, // git's progress and packs stream as they come
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 400 {
				// Read the start of the answer to remember why, and hand
				// git all of it: git shows it as "remote: ...".
				head, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
				resp.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
				if err == nil {
					p.record(&upstreamError{status: resp.StatusCode, msg: firstLine(string(head))})
					return nil
				}
				p.record(&upstreamError{err: err, broke: true})
				return nil
			}
			resp.Body = &watchedBody{ReadCloser: resp.Body, ctx: resp.Request.Context(), proxy: p}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				p.record(&upstreamError{err: err})
			}
			http.Error(w, "git proxy: the coordinator is unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	prefix := "/" + job.RepositoryName + "/"
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			http.Error(w, fmt.Sprintf("git proxy: serves only repository %q", job.RepositoryName), http.StatusNotFound)
			return
		}
		rp.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git proxy: %w", err)
	}
	p.url = "http://" + l.Addr().String()
	p.server = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		_ = p.server.Serve(l) // ends with http.ErrServerClosed
	}()
	return p, nil
}

// URL is the proxy's base URL, to give as [Options.CloneURL]: git fetches
// the job's repository from URL()+"/"+repositoryName.
func (p *GitProxy) URL() string { return p.url }

// Close stops the proxy at once, ending requests in flight.
func (p *GitProxy) Close() error {
	err := p.server.Close()
	<-p.done
	return err
}

// watchedBody records a failure to read an answer's body: the connection
// to the coordinator broke in the middle of a pack.
type watchedBody struct {
	io.ReadCloser
	ctx   context.Context // the request's: when it ends, git went away
	proxy *GitProxy
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() == nil {
		b.proxy.record(&upstreamError{err: err, broke: true})
	}
	return n, err
}

// firstLine is the first non-empty line of s, shortened.
func firstLine(s string) string {
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			return shorten(l)
		}
	}
	return ""
}
