package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
		opts.GitProxy = proxy
	}
	if err := workspace.Prepare(ctx, j, opts); err != nil {
		// A job that asks for what does not exist fails at once: marked
		// errored, it would be retried with no chance of success.
		return &job.Error{Msg: err.Error(), Retryable: !workspace.IsPermanent(err)}
	}
	return nil
}

type fileFetcher struct {
	client *queueclient.Client
	job    protocol.Job
}

// Fetch downloads a blob; the coordinator's 404 matches fs.ErrNotExist,
// as workspace.FileFetcher asks.
func (f fileFetcher) Fetch(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	rc, err := f.client.GetFile(ctx, f.job, bucket, key)
	if se := (*queueclient.StatusError)(nil); errors.As(err, &se) && se.Code == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	return rc, err
}
