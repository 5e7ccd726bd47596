package workspace

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
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
		return errors.New("the job has a repository but Options.Runner is nil")
	}
	base := opts.CloneURL
	if base == "" && opts.GitProxy != nil {
		base = opts.GitProxy.URL()
	}
	if base == "" {
		return errors.New("the job has a repository but neither Options.GitProxy nor Options.CloneURL is set")
	}
	if job.Commit == "" {
		return &Error{Msg: fmt.Sprintf("the job names repository %s but no commit", job.RepositoryName), Permanent: true}
	}
	dir, err := repositoryDir(opts.Dir, job.RepositoryDirectory)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the repository directory: %w", err)
	}
	for _, c := range gitCommands(job, strings.TrimSuffix(base, "/")+"/"+job.RepositoryName) {
		if err := opts.Runner.Run(ctx, c.key, c.argv, dir, []string{noPrompt}); err != nil {
			return gitError(job, c, err, opts.GitProxy.upstreamFailure())
		}
	}
	return nil
}

// gitError explains why git command c failed and whether trying the job
// again can help. Facts come first: what the git proxy saw of the
// coordinator's answers (a repository it does not serve is answered 404;
// an unreachable coordinator, an error status). Only when the coordinator
// answered well does git's own last words tell a commit that does not
// exist from other failures.
func gitError(job protocol.Job, c gitCommand, err error, upstream *upstreamError) error {
	repo := job.RepositoryName
	reason := stderrTail(err)
	switch {
	case upstream != nil && upstream.status == http.StatusNotFound:
		return &Error{Msg: fmt.Sprintf("repository %s is not served by the coordinator", repo), Permanent: true, Err: err}
	case upstream != nil && upstream.broke:
		return &Error{Msg: fmt.Sprintf("the connection to the coordinator broke while fetching repository %s: %v", repo, upstream), Err: err}
	case upstream != nil && upstream.err != nil:
		return &Error{Msg: fmt.Sprintf("the coordinator could not be reached to fetch repository %s: %v", repo, upstream), Err: err}
	case upstream != nil && (upstream.status == http.StatusUnauthorized || upstream.status == http.StatusForbidden):
		// The job's token is the coordinator's to give; a new attempt
		// gets a new one.
		return &Error{Msg: fmt.Sprintf("the coordinator refused access to repository %s (%v)", repo, upstream), Err: err}
	case upstream != nil:
		return &Error{Msg: fmt.Sprintf("the coordinator failed to serve repository %s (%v)", repo, upstream), Err: err}
	case c.key == fetchKey && isMissingRef(reason):
		what := "ref " + strconv.Quote(job.Commit)
		if isObjectID(job.Commit) {
			what = "commit " + job.Commit
		}
		return &Error{Msg: fmt.Sprintf("%s does not exist in repository %s (git fetch: %s)", what, repo, reason), Permanent: true, Err: err}
	}
	name := gitSubcommand(c.argv)
	var ee *exec.ExitError
	switch {
	case !errors.As(err, &ee):
		return &Error{Msg: fmt.Sprintf("%s could not run: %v", name, err), Err: err}
	case reason != "":
		return &Error{Msg: fmt.Sprintf("%s failed: %s", name, reason), Err: err}
	}
	return &Error{Msg: fmt.Sprintf("%s failed: %v", name, ee), Err: err}
}

// isMissingRef reports whether git's last words say the remote has no
// such commit or ref: "not our ref" (upload-pack refusing an object it
// does not have), "couldn't find remote ref" (a ref name it does not
// have), and the older forms of the same.
func isMissingRef(reason string) bool {
	for _, s := range []string{"not our ref", "couldn't find remote ref", "no such remote ref", "unadvertised object"} {
		if strings.Contains(reason, s) {
			return true
		}
	}
	return false
}

// gitSubcommand names a git command line for messages: "git fetch" for
// git -c protocol.version=2 fetch ....
func gitSubcommand(argv []string) string {
	for i := 1; i < len(argv); i++ {
		switch a := argv[i]; {
		case a == "-c":
			i++
		case !strings.HasPrefix(a, "-"):
			return "git " + a
		}
	}
	return strings.Join(argv, " ")
}

const fetchKey = "setup.git.fetch"

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
		{fetchKey, fetch},
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
