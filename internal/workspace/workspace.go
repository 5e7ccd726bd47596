// Package workspace prepares a job's workspace on the executor's host, as
// the reference executor does: it fetches the job's repository at its
// commit into the workspace (git init, add the remote, disable gc, fetch
// the one commit with protocol v2, sparse checkout when asked, checkout),
// then writes the job's files.
//
// Git reaches the coordinator through a [GitProxy] on the loopback
// interface that adds the job's credentials to each request, so the job
// token never lands in the workspace's git config, on a command line or in
// the job's logs. Every git command runs through the caller's
// [CommandRunner], which logs it as an entry of the job's execution log.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/execd/execd/internal/protocol"
)

// CommandRunner runs one command of the workspace set-up on the host,
// waiting for it to exit. The caller implements it: it logs each call as
// an execution log entry named key (such as "setup.git.fetch"), with the
// command and its output, and redacts what must be.
//
// command is argv (command[0] is looked up in PATH); dir is the working
// directory; env holds variables to add to the runner's own base
// environment. Run returns an error when the command cannot start or
// exits non-zero, and stops it when ctx ends. When the command exited
// non-zero the error wraps an [*os/exec.ExitError] whose Stderr holds the
// end of what the command wrote to its standard error: the reason a
// failure is explained with.
type CommandRunner interface {
	Run(ctx context.Context, key string, command []string, dir string, env []string) error
}

// FileFetcher downloads the blob bucket/key that a job's files entry
// names (the executor implements it with queueclient.Client.GetFile). The
// caller of Fetch closes the reader. An error matching [io/fs.ErrNotExist]
// says the coordinator has no such blob, which fails the job for good.
type FileFetcher interface {
	Fetch(ctx context.Context, bucket, key string) (io.ReadCloser, error)
}

// Options configure [Prepare].
type Options struct {
	// Dir is the workspace: an existing, empty directory.
	Dir string
	// Runner runs the git commands; required when the job has a repository.
	Runner CommandRunner
	// Files downloads blobs named by bucket and key; required when a file
	// of the job is one.
	Files FileFetcher
	// GitProxy is the job's git proxy: the repository is fetched through
	// it, and what it saw of the coordinator's answers explains a failed
	// fetch (a repository the coordinator does not serve, a coordinator
	// that cannot be reached).
	GitProxy *GitProxy
	// CloneURL is the base URL the repository is fetched from, as
	// <CloneURL>/<repositoryName>; empty means GitProxy's URL.
	CloneURL string
}

// Prepare fetches job's repository into opts.Dir (at its
// RepositoryDirectory) when it has one, then writes its files. It stops at
// the first error, which says what failed and why; it is an [*Error] when
// the failure is understood, and [IsPermanent] tells whether trying the
// job again can help.
func Prepare(ctx context.Context, job protocol.Job, opts Options) error {
	if opts.Dir == "" {
		return errors.New("Options.Dir is empty")
	}
	if fi, err := os.Stat(opts.Dir); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", opts.Dir)
	}
	if job.RepositoryName != "" {
		if err := cloneRepository(ctx, job, opts); err != nil {
			return err
		}
	}
	return writeFiles(ctx, job.Files, opts)
}

// repositoryDir returns where the repository goes: the workspace, or the
// job's RepositoryDirectory inside it.
func repositoryDir(workspace, repoDir string) (string, error) {
	if repoDir == "" {
		return workspace, nil
	}
	rel, err := relativePath(workspace, repoDir, true)
	if err != nil {
		return "", wrapf(err, "repositoryDirectory")
	}
	return filepath.Join(workspace, rel), nil
}

// relativePath checks that p names a path inside the workspace: relative,
// not leaving it once cleaned, and not leaving it through a symbolic link
// already in the workspace (a repository may hold one). It returns the
// cleaned path, in the OS's form. dirOK admits the workspace itself (".").
func relativePath(workspace, p string, dirOK bool) (string, error) {
	if p == "" {
		return "", invalidPath("the path is empty")
	}
	if strings.ContainsRune(p, 0) {
		return "", invalidPath("path %q contains a NUL byte", p)
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") {
		return "", invalidPath("path %q escapes the workspace: it is absolute; use a path relative to the workspace", p)
	}
	clean := filepath.Clean(filepath.FromSlash(p))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", invalidPath("path %q escapes the workspace; use a path inside it", p)
	}
	if clean == "." && !dirOK {
		return "", invalidPath("path %q names the workspace itself, not a file in it", p)
	}
	if err := checkSymlinks(workspace, clean); err != nil {
		return "", invalidPath("path %q escapes the workspace: %w", p, err)
	}
	return clean, nil
}

// checkSymlinks follows rel from the workspace component by component,
// and fails if an existing component is a symbolic link that resolves
// outside the workspace, or cannot be resolved.
func checkSymlinks(workspace, rel string) error {
	root, err := filepath.EvalSymlinks(workspace)
	if err != nil {
		return err
	}
	cur := workspace
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." {
			continue
		}
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil // the rest is created by us, as directories
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			continue
		}
		target, err := filepath.EvalSymlinks(cur)
		if err != nil {
			link, _ := os.Readlink(cur)
			return fmt.Errorf("symbolic link %s -> %s cannot be resolved: %w", filepath.ToSlash(mustRel(workspace, cur)), link, err)
		}
		if !within(root, target) {
			link, _ := os.Readlink(cur)
			return fmt.Errorf("symbolic link %s -> %s leads outside it", filepath.ToSlash(mustRel(workspace, cur)), link)
		}
	}
	return nil
}

// within reports whether path is root or below it.
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func mustRel(base, path string) string {
	rel, err := filepath.Rel(base, path)
	if err != nil {
		return path
	}
	return rel
}
