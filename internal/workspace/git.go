package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/execd/execd/internal/protocol"
)

// noPrompt is added to the environment of every git command: git must
// fail rather than wait for a password nobody will type.
const noPrompt = "GIT_TERMINAL_PROMPT=0"

// gitCommand is one git command of the clone, with its log key.
type gitCommand struct {
	key  string
	argv []string
}

// cloneRepository fetches job's commit into its repository directory.
func cloneRepository(ctx context.Context, job protocol.Job, opts Options) error {
	if opts.Runner == nil {
		return errors.New("prepare workspace: the job has a repository but Options.Runner is nil")
	}
	if opts.CloneURL == "" {
		return errors.New("prepare workspace: the job has a repository but Options.CloneURL is empty (start a GitProxy)")
	}
	if job.Commit == "" {
		return fmt.Errorf("prepare workspace: job %d names repository %q but no commit", job.ID, job.RepositoryName)
	}
	dir, err := repositoryDir(opts.Dir, job.RepositoryDirectory)
	if err != nil {
		return fmt.Errorf("prepare workspace: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("prepare workspace: create the repository directory: %w", err)
	}
	for _, c := range gitCommands(job, strings.TrimSuffix(opts.CloneURL, "/")+"/"+job.RepositoryName) {
		if err := opts.Runner.Run(ctx, c.key, c.argv, dir, []string{noPrompt}); err != nil {
			return fmt.Errorf("%s: %w", c.key, err)
		}
	}
	return nil
}

// gitCommands are the commands that fetch job's commit from remote into
// an empty directory, as the reference executor runs them:
//
//	git init
//	git remote add origin <remote>
//	git config --local gc.auto 0
//	git -c protocol.version=2 fetch --progress --no-recurse-submodules
//	    --no-tags|--tags [--depth=1] [--filter=blob:none] origin <commit>
//	git config --local core.sparseCheckout 1                    (sparse only)
//	git sparse-checkout set --no-cone -- <patterns...>          (sparse only)
//	git checkout --progress --force <commit>
//
// Sparse checkout patterns are gitignore-style (non-cone mode, as the
// reference): "sub/" or "/sub/*" select a directory, "*.go" every Go file.
// The blobs of the selected paths are fetched by the checkout, through the
// same remote (the fetch asked for no blobs).
//
// The commit is checked out by id when it is a full object id; a ref name
// (a branch, a tag, HEAD) is checked out as FETCH_HEAD, which the fetch
// set to what the name pointed at.
func gitCommands(job protocol.Job, remote string) []gitCommand {
	fetch := []string{"git", "-c", "protocol.version=2", "fetch", "--progress", "--no-recurse-submodules"}
	if job.FetchTags {
		fetch = append(fetch, "--tags")
	} else {
		fetch = append(fetch, "--no-tags")
	}
	if job.ShallowClone {
		fetch = append(fetch, "--depth=1")
	}
	sparse := len(job.SparseCheckout) > 0
	if sparse {
		fetch = append(fetch, "--filter=blob:none")
	}
	fetch = append(fetch, "origin", job.Commit)

	cmds := []gitCommand{
		{"setup.git.init", []string{"git", "init"}},
		{"setup.git.add-remote", []string{"git", "remote", "add", "origin", remote}},
		{"setup.git.disable-gc", []string{"git", "config", "--local", "gc.auto", "0"}},
		{"setup.git.fetch", fetch},
	}
	if sparse {
		cmds = append(cmds,
			gitCommand{"setup.git.sparse-checkout-config", []string{"git", "config", "--local", "core.sparseCheckout", "1"}},
			gitCommand{"setup.git.sparse-checkout", append([]string{"git", "sparse-checkout", "set", "--no-cone", "--"}, job.SparseCheckout...)},
		)
	}
	target := job.Commit
	if !isObjectID(target) {
		target = "FETCH_HEAD"
	}
	return append(cmds, gitCommand{"setup.git.checkout", []string{"git", "checkout", "--progress", "--force", target}})
}

// isObjectID reports whether s is a full SHA-1 or SHA-256 object id.
func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
