package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/execd/execd/internal/job"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/workspace"
)

// workspacePreparer fills a job's workspace: the repository through a
// local git proxy that adds the job's credentials (so none lands in git's
// config, command lines or logs), then the job's files.
type workspacePreparer struct {
	client       *queueclient.Client
	frontendURL  string
	executorName string
	http         *http.Client
}

func (p *workspacePreparer) Prepare(ctx context.Context, j protocol.Job, dir string, run job.HostRunner) error {
	opts := workspace.Options{Dir: dir, Runner: run, Files: fileFetcher{p.client, j}}
	if j.RepositoryName != "" {
		proxy, err := workspace.NewGitProxy(p.frontendURL, j, p.executorName, p.http)
		if err != nil {
			return fmt.Errorf("start the git proxy: %w", err)
		}
		defer proxy.Close()
		opts.CloneURL = proxy.URL()
	}
	err := workspace.Prepare(ctx, j, opts)
	if errors.Is(err, workspace.ErrInvalidPath) {
		return &job.Error{Msg: err.Error(), Retryable: false}
	}
	return err
}

type fileFetcher struct {
	client *queueclient.Client
	job    protocol.Job
}

func (f fileFetcher) Fetch(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	return f.client.GetFile(ctx, f.job, bucket, key)
}
