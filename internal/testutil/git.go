package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedGit ends the test (see [Missing]) when git is not installed.
func NeedGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		Missing(t, "git", err.Error())
	}
}

// GitEnv is an environment for tests' git commands: no user or system
// config, a fixed identity, never prompting.
func GitEnv(t testing.TB) []string {
	home := t.TempDir()
	return append(os.Environ(),
		"HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
}

// Git runs git in dir with [GitEnv] and returns its trimmed standard
// output; a failure ends the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := TryGit(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TryGit runs git in dir with [GitEnv]; the error carries its standard
// error.
func TryGit(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = GitEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// GitRepo is a test repository and its commits on main, oldest first.
type GitRepo struct {
	Dir     string
	Commits []string
}

// NewGitRepo creates a repository at dir with three commits on main:
//
//	1: README.md "hello\n", sub/a.txt      (annotated tag v1)
//	2: + sub/b.txt, other/c.txt            (lightweight tag v2)
//	3: README.md "hello again\n"
//
// With bare set, dir is a bare clone of a work repository built at
// dir+".work", and [GitRepo.Commit] must not be used.
func NewGitRepo(t testing.TB, dir string, bare bool) *GitRepo {
	t.Helper()
	work := dir
	if bare {
		work = dir + ".work"
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, work, "init", "--quiet", "--initial-branch=main")
	r := &GitRepo{Dir: work}
	r.Commit(t, map[string]string{"README.md": "hello\n", "sub/a.txt": "a\n"})
	Git(t, work, "tag", "-a", "v1", "-m", "version 1")
	r.Commit(t, map[string]string{"sub/b.txt": "b\n", "other/c.txt": "c\n"})
	Git(t, work, "tag", "v2")
	r.Commit(t, map[string]string{"README.md": "hello again\n"})
	if bare {
		Git(t, filepath.Dir(dir), "clone", "--quiet", "--bare", work, dir)
		r.Dir = dir
	}
	return r
}

// Commit writes files (path -> content) into the work tree, commits every
// change, and returns the new commit's id.
func (r *GitRepo) Commit(t testing.TB, files map[string]string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, r.Dir, "add", "--all")
	Git(t, r.Dir, "commit", "--quiet", "-m", fmt.Sprintf("commit %d", len(r.Commits)+1))
	id := Git(t, r.Dir, "rev-parse", "HEAD")
	r.Commits = append(r.Commits, id)
	return id
}
