package siteconfig_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/siteconfig"
)

const goodSecret = "0123456789abcdef0123"

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // substrings of the error
	}{
		{"short executor secret", `{"executors.accessToken": "short"}`, []string{"cfg.json", `"executors.accessToken"`, "at least 20"}},
		{"short api secret", `{"api.accessToken": "0123456789"}`, []string{`"api.accessToken"`, "at least 20"}},
		{"unknown key", `{"executors.acessToken": "x"}`, []string{`"executors.acessToken"`, "unknown key", "executors.accessToken"}},
		{"malformed", "{\n  \"externalURL\": \n}", []string{"cfg.json", "not valid JSON"}},
		{"wrong type", `{"executors.queues": "batches"}`, []string{`"executors.queues"`, "want []string"}},
		{"empty file", ``, []string{"cfg.json"}},
		{"bad url", `{"externalURL": "example.com"}`, []string{`"externalURL"`, "http://"}},
		{"bad queue", `{"executors.queues": ["Bad Queue"]}`, []string{`"executors.queues"`, "Bad Queue"}},
		{"settings of unknown queue", `{"executors.queueSettings": {"nope": {}}}`, []string{`"executors.queueSettings.nope"`, "not in"}},
		{"bad duration", `{"executors.queueSettings": {"batches": {"stalledAge": "soon"}}}`, []string{"cfg.json", "duration"}},
		{"unknown queue setting", `{"executors.queueSettings": {"batches": {"stalled": "25s"}}}`, []string{`stalled`}},
		{"unknown repository key", `{"repositories": [{"name": "a/b", "url": "/src/b", "branch": "main"}]}`, []string{"cfg.json", `"repositories"`, `"branch"`, "unknown key"}},
		{"repository not an object", `{"repositories": ["a/b"]}`, []string{`"repositories"`, "object"}},
		{"repository name wrong type", `{"repositories": [{"name": 5, "url": "/src/b"}]}`, []string{`"repositories.name"`, "want string"}},
		{"repository without name", `{"repositories": [{"url": "/src/b"}]}`, []string{`"repositories[0].name"`, "empty"}},
		{"repository name dot-dot", `{"repositories": [{"name": "a/../../etc", "url": "/src/b"}]}`, []string{`"repositories[0].name"`, `".."`}},
		{"repository name absolute", `{"repositories": [{"name": "/etc/x", "url": "/src/b"}]}`, []string{`"repositories[0].name"`, "absolute"}},
		{"repository name space", `{"repositories": [{"name": "a/b c", "url": "/src/b"}]}`, []string{`"repositories[0].name"`, "letters"}},
		{"repository without url", `{"repositories": [{"name": "a/b"}]}`, []string{`"repositories[0].url"`, "empty"}},
		{"repository url option", `{"repositories": [{"name": "a/b", "url": "--upload-pack=x"}]}`, []string{`"repositories[0].url"`, "'-'"}},
		{"repository twice", `{"repositories": [{"name": "a/b", "url": "x"}, {"name": "a/b", "url": "y"}]}`, []string{`"repositories[1].name"`, "twice"}},
		{"repositories nested", `{"repositories": [{"name": "a/b/c", "url": "x"}, {"name": "a/b", "url": "y"}]}`, []string{`"repositories[0].name"`, `inside repository "a/b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := siteconfig.Parse("cfg.json", []byte(tt.data))
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want one containing %q", tt.data, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.data, err, w)
				}
			}
		})
	}
}

func TestParse_CommentsAndDefaults(t *testing.T) {
	c, err := siteconfig.Parse("cfg.json", []byte(`// top comment
{
  "executors.accessToken": "`+goodSecret+`", // trailing comment
  "executors.queueSettings": {"codeintel": {"maxAttempts": 5}},
}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.Queues, ","), "batches,codeintel"; got != want {
		t.Errorf("Queues = %q, want %q", got, want)
	}
	b := c.Queue("batches")
	if b.StalledAge != siteconfig.Duration(25*time.Second) || b.MaxResets != 3 || b.Weight != 4 {
		t.Errorf("Queue(batches) = %+v, want stalledAge 25s, maxResets 3, weight 4", b)
	}
	if got := c.Queue("codeintel"); got.MaxAttempts != 5 || got.Weight != 1 {
		t.Errorf("Queue(codeintel) = %+v, want maxAttempts 5, weight 1", got)
	}
	if c.Active() != 15*time.Second {
		t.Errorf("Active() = %v, want 15s", c.Active())
	}
}

func TestParse_Repositories(t *testing.T) {
	c, err := siteconfig.Parse("cfg.json", []byte(`{"repositories": [
		{"name": "github.com/gorilla/mux", "url": "https://github.com/gorilla/mux.git"},
		{"name": "github.com/user/.github", "url": "/srv/git/dotgithub"},
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		wantURL string
		wantOK  bool
	}{
		{"github.com/gorilla/mux", "https://github.com/gorilla/mux.git", true},
		{"github.com/user/.github", "/srv/git/dotgithub", true},
		{"github.com/gorilla", "", false},
	}
	for _, tt := range tests {
		r, ok := c.Repository(tt.name)
		if ok != tt.wantOK || r.URL != tt.wantURL {
			t.Errorf("Repository(%q) = %+v, %v; want url %q, %v", tt.name, r, ok, tt.wantURL, tt.wantOK)
		}
	}
}

func TestCheckRepositoryName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"github.com/gorilla/mux", true},
		{"gitlab.example.com/group/sub/project", true},
		{"repo", true},
		{"a/.github", true},
		{"a/b.git", true},
		{"", false},
		{"/abs", false},
		{"a/../b", false},
		{"..", false},
		{"a/./b", false},
		{"a/.git", false},
		{"a/.GIT/b", false},
		{"a//b", false},
		{"a/b/", false},
		{"a\\b", false},
		{"a/b\x00", false},
		{"a b", false},
		{strings.Repeat("a", 513), false},
	}
	for _, tt := range tests {
		err := siteconfig.CheckRepositoryName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("CheckRepositoryName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestGenerate_IsValid(t *testing.T) {
	c, err := siteconfig.Parse("gen.json", siteconfig.Generate("http://127.0.0.1:3080"))
	if err != nil {
		t.Fatalf("generated config does not parse: %v", err)
	}
	if len(c.ExecutorsAccessToken) < 20 || c.ExecutorsAccessToken == c.APIAccessToken {
		t.Errorf("generated secrets %q, %q: want two distinct secrets of >= 20 characters", c.ExecutorsAccessToken, c.APIAccessToken)
	}
}

func TestWatcher_Reload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"executors.accessToken": "` + goodSecret + `"}`)
	w, err := siteconfig.NewWatcher(path, nil)
	if err != nil {
		t.Fatal(err)
	}

	write(`{"executors.accessToken": "tooshort"}`)
	if w.Reload() {
		t.Error("Reload() took a bad edit")
	}
	if got := w.Current().ExecutorsAccessToken; got != goodSecret {
		t.Errorf("after bad edit, secret = %q, want the old %q", got, goodSecret)
	}

	next := strings.Repeat("x", 24)
	write(`{"executors.accessToken": "` + next + `"}`)
	if !w.Reload() {
		t.Error("Reload() refused a good edit")
	}
	if got := w.Current().ExecutorsAccessToken; got != next {
		t.Errorf("after good edit, secret = %q, want %q", got, next)
	}

	if err := w.Save([]byte(`{"api.accessToken": "x"}`)); err == nil {
		t.Error("Save accepted a short api.accessToken")
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), next) {
		t.Errorf("refused Save changed the file: %s", data)
	}
}

// Saving keeps the text as given, comments and all, on disk and in Raw.
func TestWatcher_SaveKeepsComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site-config.json")
	if err := os.WriteFile(path, []byte(`{"executors.queues": ["batches"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := siteconfig.NewWatcher(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	text := "// The queues.\n{\n  \"executors.queues\": [\"batches\", \"codeintel\"], // two\n}\n"
	if err := w.Save([]byte(text)); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != text {
		t.Errorf("file after Save = %q, want %q", onDisk, text)
	}
	if got := string(w.Raw()); got != text {
		t.Errorf("Raw after Save = %q, want %q", got, text)
	}
}
