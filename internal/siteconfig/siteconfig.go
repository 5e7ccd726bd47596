// Package siteconfig loads, validates, watches and saves the coordinator's
// site config: a JSON file (comments and trailing commas allowed) holding
// the executors' shared secret, the submission API token, the queues and
// their settings.
package siteconfig

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	pathpkg "path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tailscale/hujson"
)

// MinSecretLength is the shortest accepted executors.accessToken and
// api.accessToken, as the reference's docs require.
const MinSecretLength = 20

// Defaults of the per-queue settings (the reference's dbworker values).
const (
	DefaultStalledAge      = 25 * time.Second
	DefaultMaxResets       = 3
	DefaultMaxAttempts     = 3
	DefaultRetryDelay      = 30 * time.Second
	DefaultActiveThreshold = 15 * time.Second
)

// DefaultQueues are the queues of the reference.
var DefaultQueues = []string{"batches", "codeintel"}

// Config is the site config.
type Config struct {
	// ExternalURL is the URL executors and users reach the coordinator at.
	ExternalURL string `json:"externalURL,omitempty"`
	// ExecutorsAccessToken is the executors' shared secret. Empty means
	// executors are not configured: the queue API answers 500.
	ExecutorsAccessToken string `json:"executors.accessToken,omitempty"`
	// APIAccessToken authenticates producers on the submission API.
	APIAccessToken string `json:"api.accessToken,omitempty"`
	// Queues are the queue names executors may pull from.
	Queues []string `json:"executors.queues,omitempty"`
	// QueueSettings tune each queue; absent fields take the defaults.
	QueueSettings map[string]QueueSettings `json:"executors.queueSettings,omitempty"`
	// ActiveThreshold is how recently an executor must have been seen to
	// count as active.
	ActiveThreshold Duration `json:"executors.activeThreshold,omitempty"`
	// Repositories are upstream repositories the coordinator mirrors and
	// serves to executors (git smart HTTP under /.executors/git/).
	Repositories []Repository `json:"repositories,omitempty"`
}

// Repository is an upstream repository to mirror: jobs name it by Name
// (their repositoryName); URL is what git clones it from (https://, ssh://,
// file:// or a local path).
type Repository struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// repositoryFields is Repository without its methods.
type repositoryFields Repository

// UnmarshalJSON decodes an entry of "repositories", refusing unknown
// fields with an error that names the key.
func (r *Repository) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f repositoryFields
	if err := dec.Decode(&f); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typ) && typ.Field != "":
			return &keyError{key: "repositories." + typ.Field, msg: fmt.Sprintf("has a %s value, want %s", typ.Value, typ.Type)}
		case errors.As(err, &typ):
			return &keyError{key: "repositories", msg: fmt.Sprintf("has an entry that is a %s, want an object {\"name\": ..., \"url\": ...}", typ.Value)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.TrimPrefix(err.Error(), "json: unknown field ")
			return &keyError{key: "repositories", msg: "an entry has the unknown key " + field + "; entries take \"name\" and \"url\""}
		}
		return &keyError{key: "repositories", msg: err.Error()}
	}
	*r = Repository(f)
	return nil
}

// keyError is a decoding problem of a nested value, naming its key.
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return fmt.Sprintf("%q: %s", e.key, e.msg) }

// QueueSettings are one queue's dbworker settings.
type QueueSettings struct {
	// StalledAge: a processing job without a heartbeat for this long is reset.
	StalledAge Duration `json:"stalledAge,omitempty"`
	// MaxResets: a job reset this often fails instead.
	MaxResets int `json:"maxResets,omitempty"`
	// MaxAttempts: a job that errored this often fails (a job's own
	// maxAttempts wins).
	MaxAttempts int `json:"maxAttempts,omitempty"`
	// RetryDelay: an errored job is eligible again after this long.
	RetryDelay Duration `json:"retryDelay,omitempty"`
	// Weight: the share of multi-queue dequeues this queue gets when several
	// queues have work (reference: batches 4, codeintel 1).
	Weight int `json:"weight,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("25s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "25s" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"25s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"25s\": %w", err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// Queue returns the effective settings of queue, defaults filled in.
func (c *Config) Queue(name string) QueueSettings {
	s := c.QueueSettings[name]
	if s.StalledAge == 0 {
		s.StalledAge = Duration(DefaultStalledAge)
	}
	if s.MaxResets == 0 {
		s.MaxResets = DefaultMaxResets
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = DefaultMaxAttempts
	}
	if s.RetryDelay == 0 {
		s.RetryDelay = Duration(DefaultRetryDelay)
	}
	if s.Weight == 0 {
		s.Weight = 1
		if name == "batches" {
			s.Weight = 4
		}
	}
	return s
}

// HasQueue reports whether name is a configured queue.
func (c *Config) HasQueue(name string) bool { return slices.Contains(c.Queues, name) }

// Active returns the effective active threshold.
func (c *Config) Active() time.Duration {
	if c.ActiveThreshold == 0 {
		return DefaultActiveThreshold
	}
	return time.Duration(c.ActiveThreshold)
}

// Error is a config problem, naming the file and, where there is one, the key.
type Error struct {
	Path string
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("site config %s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("site config %s: %q: %s", e.Path, e.Key, e.Msg)
}

var queueNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Parse decodes and validates a site config. path is used in errors only.
func Parse(path string, data []byte) (*Config, error) {
	// Standardize blanks comments in place: work on a copy, so callers keep
	// (and Save writes) the text as it was given.
	std, err := hujson.Standardize(bytes.Clone(data))
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("not valid JSON: %v", err)}
	}
	dec := json.NewDecoder(bytes.NewReader(std))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(path, std, err)
	}
	if dec.More() {
		return nil, &Error{Path: path, Msg: "unexpected data after the top-level object"}
	}
	if err := c.validate(path); err != nil {
		return nil, err
	}
	return &c, nil
}

func decodeError(path string, data []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var key *keyError
	switch {
	case errors.As(err, &key):
		return &Error{Path: path, Key: key.key, Msg: key.msg}
	case errors.As(err, &syntax):
		line, col := position(data, syntax.Offset)
		return &Error{Path: path, Msg: fmt.Sprintf("line %d, column %d: %v", line, col, syntax)}
	case errors.As(err, &typ):
		return &Error{Path: path, Key: typ.Field, Msg: fmt.Sprintf("has a %s value, want %s", typ.Value, typ.Type)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &Error{Path: path, Key: key, Msg: "unknown key; known keys are " + strings.Join(knownKeys(), ", ") + " (check the spelling)"}
	case errors.Is(err, io.EOF):
		return &Error{Path: path, Msg: "file is empty; it must hold a JSON object"}
	}
	return &Error{Path: path, Msg: err.Error()}
}

func position(data []byte, offset int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < offset-1 && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

func knownKeys() []string {
	return []string{`"externalURL"`, `"executors.accessToken"`, `"api.accessToken"`, `"executors.queues"`, `"executors.queueSettings"`, `"executors.activeThreshold"`, `"repositories"`}
}

func (c *Config) validate(path string) error {
	for key, secret := range map[string]string{"executors.accessToken": c.ExecutorsAccessToken, "api.accessToken": c.APIAccessToken} {
		if secret != "" && len(secret) < MinSecretLength {
			return &Error{Path: path, Key: key, Msg: fmt.Sprintf("is %d characters long; it must be at least %d. Generate one with: openssl rand -hex 20", len(secret), MinSecretLength)}
		}
	}
	if c.ExternalURL != "" && !strings.HasPrefix(c.ExternalURL, "http://") && !strings.HasPrefix(c.ExternalURL, "https://") {
		return &Error{Path: path, Key: "externalURL", Msg: fmt.Sprintf("%q must start with http:// or https://", c.ExternalURL)}
	}
	if c.Queues == nil {
		c.Queues = slices.Clone(DefaultQueues)
	}
	if len(c.Queues) == 0 {
		return &Error{Path: path, Key: "executors.queues", Msg: "is empty; list at least one queue, e.g. [\"batches\"]"}
	}
	seen := map[string]bool{}
	for _, q := range c.Queues {
		if !queueNameRE.MatchString(q) {
			return &Error{Path: path, Key: "executors.queues", Msg: fmt.Sprintf("queue name %q is invalid: use lower-case letters, digits, '-' and '_' (at most 63)", q)}
		}
		if seen[q] {
			return &Error{Path: path, Key: "executors.queues", Msg: fmt.Sprintf("queue %q is listed twice", q)}
		}
		seen[q] = true
	}
	names := make([]string, 0, len(c.QueueSettings))
	for q := range c.QueueSettings {
		names = append(names, q)
	}
	sort.Strings(names)
	for _, q := range names {
		s := c.QueueSettings[q]
		key := "executors.queueSettings." + q
		switch {
		case !seen[q]:
			return &Error{Path: path, Key: key, Msg: fmt.Sprintf("queue %q is not in \"executors.queues\"; add it there or remove these settings", q)}
		case s.MaxResets < 0:
			return &Error{Path: path, Key: key + ".maxResets", Msg: "must not be negative"}
		case s.MaxAttempts < 0:
			return &Error{Path: path, Key: key + ".maxAttempts", Msg: "must not be negative"}
		case s.Weight < 0:
			return &Error{Path: path, Key: key + ".weight", Msg: "must not be negative"}
		case s.StalledAge != 0 && time.Duration(s.StalledAge) < time.Second:
			return &Error{Path: path, Key: key + ".stalledAge", Msg: "must be at least 1s (and should stay well above the executors' heartbeat interval of 5s, or running jobs are reset)"}
		}
	}
	return c.validateRepositories(path)
}

func (c *Config) validateRepositories(path string) error {
	names := map[string]int{}
	for i, r := range c.Repositories {
		key := fmt.Sprintf("repositories[%d]", i)
		if err := CheckRepositoryName(r.Name); err != nil {
			return &Error{Path: path, Key: key + ".name", Msg: err.Error()}
		}
		if strings.TrimSpace(r.URL) == "" {
			return &Error{Path: path, Key: key + ".url", Msg: fmt.Sprintf("is empty; give the clone URL of %q (https://..., ssh://..., file://... or a local path)", r.Name)}
		}
		if strings.HasPrefix(r.URL, "-") {
			return &Error{Path: path, Key: key + ".url", Msg: fmt.Sprintf("%q must not start with '-'", r.URL)}
		}
		if j, ok := names[r.Name]; ok {
			return &Error{Path: path, Key: key + ".name", Msg: fmt.Sprintf("%q is listed twice (also repositories[%d])", r.Name, j)}
		}
		names[r.Name] = i
	}
	// A mirror lives at <data-dir>/mirrors/<name>: one must not lie inside
	// another's git directory.
	for _, r := range c.Repositories {
		for dir := pathpkg.Dir(r.Name); dir != "."; dir = pathpkg.Dir(dir) {
			if j, ok := names[dir]; ok {
				return &Error{Path: path, Key: fmt.Sprintf("repositories[%d].name", names[r.Name]), Msg: fmt.Sprintf("%q lies inside repository %q (repositories[%d]); their mirrors would nest", r.Name, dir, j)}
			}
		}
	}
	return nil
}

// Repository returns the configured repository called name.
func (c *Config) Repository(name string) (Repository, bool) {
	for _, r := range c.Repositories {
		if r.Name == name {
			return r, true
		}
	}
	return Repository{}, false
}

var repoSegmentRE = regexp.MustCompile(`^[A-Za-z0-9._@+~-]+$`)

// CheckRepositoryName reports why name cannot name a repository, or nil.
// A name is a relative slash-separated path ("github.com/gorilla/mux") of
// segments made of letters, digits and ._@+~- that are neither ".", ".."
// nor ".git", at most 512 bytes: it is used as a directory path and in URLs.
func CheckRepositoryName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty; give the name jobs use as repositoryName, e.g. \"github.com/gorilla/mux\"")
	case len(name) > 512:
		return fmt.Errorf("%.40q... is longer than 512 bytes", name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%q is an absolute path; use a relative name such as \"github.com/gorilla/mux\"", name)
	}
	for _, seg := range strings.Split(name, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%q has an empty path segment (a leading, trailing or double '/')", name)
		case seg == "." || seg == "..":
			return fmt.Errorf("%q has a %q segment; names must not leave their directory", name, seg)
		case strings.EqualFold(seg, ".git"):
			return fmt.Errorf("%q has a %q segment, which is a repository's own git directory", name, seg)
		case !repoSegmentRE.MatchString(seg):
			return fmt.Errorf("%q: segment %q may only hold letters, digits and ._@+~-", name, seg)
		}
	}
	return nil
}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("site config: %w", err)
	}
	return Parse(path, data)
}

// Save validates data as a site config and writes it to path atomically
// (a temporary file in the same directory, synced, then renamed), so a
// reader never sees half a file.
func Save(path string, data []byte) (*Config, error) {
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".site-config-*.json")
	if err != nil {
		return nil, fmt.Errorf("save site config: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("save site config: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("save site config: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("save site config: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("save site config: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, fmt.Errorf("save site config: %w", err)
	}
	return c, nil
}

// NewSecret returns a random secret of 40 hex characters.
func NewSecret() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// Generate returns a commented starter config with fresh secrets.
func Generate(externalURL string) []byte {
	return fmt.Appendf(nil, `// Site config of the coordinator. Comments and trailing commas are allowed.
// Edits take effect without a restart; a bad edit is refused (see the log)
// and the previous config stays in force.
{
  "externalURL": %q,
  // Shared secret of the executors (EXECUTOR_FRONTEND_PASSWORD), >= 20 characters.
  "executors.accessToken": %q,
  // Token of the submission API: Authorization: token <api.accessToken>.
  "api.accessToken": %q,
  "executors.queues": ["batches", "codeintel"],
  // Per-queue settings; every field is optional:
  // "executors.queueSettings": {"batches": {"stalledAge": "25s", "maxResets": 3, "maxAttempts": 3, "retryDelay": "30s", "weight": 4}},
  // Upstream repositories to mirror and serve to executors:
  // "repositories": [{"name": "github.com/gorilla/mux", "url": "https://github.com/gorilla/mux.git"}],
}
`, externalURL, NewSecret(), NewSecret())
}
