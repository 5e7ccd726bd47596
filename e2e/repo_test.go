package e2e_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const repoName = "github.com/acme/demo"

// repo is a real git repository served by the coordinator.
type repo struct {
	dir     string
	commits []string // oldest first
}

// newRepo makes reposDir/github.com/acme/demo with three commits: v1 (a
// README, src/ and docs/), v2 (a second README line) and a third that adds
// a symbolic link leading out of any workspace.
func newRepo(t *testing.T, reposDir string) *repo {
	t.Helper()
	r := &repo{dir: filepath.Join(reposDir, repoName)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = r.dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(r.dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q", "-b", "main")
	write("README.md", "demo v1\n")
	write("src/main.sh", "echo built from src\n")
	write("docs/guide.md", "the guide\n")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	git("tag", "v1")
	r.commits = append(r.commits, git("rev-parse", "HEAD"))
	write("README.md", "demo v1\ndemo v2\n")
	git("commit", "-q", "-am", "second")
	git("tag", "-a", "v2", "-m", "release v2")
	r.commits = append(r.commits, git("rev-parse", "HEAD"))
	if err := os.Symlink("/etc", filepath.Join(r.dir, "evil")); err != nil {
		t.Fatal(err)
	}
	git("add", "evil")
	git("commit", "-q", "-m", "a link out")
	r.commits = append(r.commits, git("rev-parse", "HEAD"))
	return r
}

func jsonUnmarshal(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
