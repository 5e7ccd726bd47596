package workspace

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/execd/execd/internal/protocol"
)

// GitProxy forwards git's smart HTTP requests for one job's repository
// from a listener on 127.0.0.1 to the coordinator, adding the job's
// credentials: /<repo>/... goes to <upstream>/.executors/git/<repo>/...
// with "Authorization: Bearer <job token>", X-Sourcegraph-Job-ID and
// X-Sourcegraph-Executor-Name. Git is pointed at [GitProxy.URL] and never
// sees the token. Requests for other repositories are answered 404.
type GitProxy struct {
	url    string
	server *http.Server
	done   chan struct{}
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
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
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
	p := &GitProxy{
		url:    "http://" + l.Addr().String(),
		server: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second},
		done:   make(chan struct{}),
	}
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
