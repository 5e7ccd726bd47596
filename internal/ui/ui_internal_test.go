package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		executor, coordinator, want string
	}{
		{"1.2.0", "1.2.0", "up to date"},
		{"v1.2.0", "1.2.0", "up to date"},
		{"1.2", "1.2.0", "up to date"},
		{"1.1.9", "1.2.0", "outdated"},
		{"0.9.2", "1.2.0", "outdated"},
		{"1.2.1", "1.2.0", "ahead"},
		{"2.0.0", "1.2.0", "ahead"},
		{"1.2.0-rc.1", "1.2.0", "up to date"},
		{"0.1.0-dev", "1.2.0", "dev"},
		{"1.2.0", "0.1.0-dev", "dev"},
		{"1.2.0", "", "dev"},
		{"0.0.0+dev", "1.2.0", "dev"},
		{"233571_2023-08-01_5.1-abcdef", "1.2.0", "dev"},
		{"", "1.2.0", "unknown"},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.executor, tt.coordinator).Label; got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %q, want %q", tt.executor, tt.coordinator, got, tt.want)
		}
	}
}

func TestHostname(t *testing.T) {
	tests := []struct{ name, want string }{
		{"build-eu-1-7f3c", "build-eu-1"},
		{"laptop-1", "laptop"},
		{"laptop", "laptop"},
		{"-x", "-x"},
	}
	for _, tt := range tests {
		if got := hostname(tt.name); got != tt.want {
			t.Errorf("hostname(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestAgo(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "just now"},
		{0, "0 s ago"},
		{12*time.Second + 900*time.Millisecond, "12 s ago"},
		{3 * time.Minute, "3 min ago"},
		{2 * time.Hour, "2 h ago"},
		{26 * time.Hour, "26 h ago"},
		{5 * 24 * time.Hour, "5 d ago"},
	}
	for _, tt := range tests {
		if got := ago(tt.d); got != tt.want {
			t.Errorf("ago(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	tests := []struct{ next, want string }{
		{"/ui/jobs/batches?state=failed", "/ui/jobs/batches?state=failed"},
		{"", "/ui/executors"},
		{"https://evil.example/ui/", "/ui/executors"},
		{"//evil.example/ui/", "/ui/executors"},
		{"/ui/sign-in", "/ui/executors"},
		{"/ui/\\evil", "/ui/executors"},
		{"/api/executors", "/ui/executors"},
	}
	for _, tt := range tests {
		if got := safeNext(tt.next); got != tt.want {
			t.Errorf("safeNext(%q) = %q, want %q", tt.next, got, tt.want)
		}
	}
}

func TestMaskConfig(t *testing.T) {
	const raw = `// The site config.
{
  "executors.accessToken": "executor-secret-0123456789", // shared
  "api.accessToken": "api-token-0123456789abcdef",
  "externalURL": "https://execd.example.com",
  "repositories": [
    {"name": "github.com/a/b", "url": "https://bot:hunter2hunter2@git.example.com/a/b.git"},
    {"name": "github.com/a/c", "url": "https://git.example.com/a/c.git"},
  ],
}
`
	masked, err := maskConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"executor-secret-0123456789", "api-token-0123456789abcdef", "hunter2hunter2"} {
		if strings.Contains(string(masked), secret) {
			t.Errorf("masked text holds %q:\n%s", secret, masked)
		}
	}
	for _, kept := range []string{"// The site config.", "// shared", `"executors.accessToken": "********"`, "https://bot:********@git.example.com/a/b.git", "https://git.example.com/a/c.git", "https://execd.example.com"} {
		if !strings.Contains(string(masked), kept) {
			t.Errorf("masked text lacks %q:\n%s", kept, masked)
		}
	}

	tests := []struct {
		name       string
		edit       func(string) string
		want, lost []string
	}{
		{
			name: "unchanged",
			edit: func(s string) string { return s },
			want: []string{"executor-secret-0123456789", "api-token-0123456789abcdef", "bot:hunter2hunter2@", "// shared"},
		},
		{
			name: "a new secret typed",
			edit: func(s string) string {
				return strings.Replace(s, `"api.accessToken": "********"`, `"api.accessToken": "a-new-token-00000000000"`, 1)
			},
			want: []string{"executor-secret-0123456789", "a-new-token-00000000000"},
			lost: []string{"api-token-0123456789abcdef"},
		},
		{
			name: "a masked value moved to another key stays masked",
			edit: func(s string) string {
				return strings.Replace(s, `"externalURL": "https://execd.example.com"`, `"externalURL": "********"`, 1)
			},
			want: []string{`"externalURL": "********"`},
		},
		{
			name: "malformed text is returned as is",
			edit: func(s string) string { return s + "}" },
			want: []string{`"executors.accessToken": "********"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(unmaskConfig([]byte(tt.edit(string(masked))), []byte(raw)))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("unmasked text lacks %q:\n%s", w, got)
				}
			}
			for _, l := range tt.lost {
				if strings.Contains(got, l) {
					t.Errorf("unmasked text still holds %q:\n%s", l, got)
				}
			}
		})
	}
}

func TestMasker(t *testing.T) {
	m := newMasker(map[string]string{"s3cr3t\"x": "[REDACTED]", "": "nothing"})
	spec := store.Spec{
		DockerSteps:    []protocol.DockerStep{{Key: "a", Env: []string{"TOKEN=s3cr3t\"x"}}},
		RedactedValues: map[string]string{"s3cr3t\"x": "[REDACTED]"},
	}
	got := m.specJSON(spec)
	if strings.Contains(got, "s3cr3t") || !strings.Contains(got, `"TOKEN=[REDACTED]"`) || !strings.Contains(got, `"[secret 1]": "[REDACTED]"`) {
		t.Errorf("specJSON = %s, want the secret masked everywhere", got)
	}
	if got := m.mask(`echo s3cr3t"x`); got != "echo [REDACTED]" {
		t.Errorf("mask = %q, want %q", got, "echo [REDACTED]")
	}
	if got := (masker{}).mask("plain"); got != "plain" {
		t.Errorf("empty masker changed %q to %q", "plain", got)
	}
}

func TestEntryChange(t *testing.T) {
	exit := 0
	// entry is an entry whose output was read from byte from.
	entry := func(from int64, out string, exitCode *int) store.LogEntry {
		return store.LogEntry{ID: 1, ExecutionLogEntry: protocol.ExecutionLogEntry{Key: "k", Command: []string{"make"}, Out: out, ExitCode: exitCode},
			From: from, Length: from + int64(len(out))}
	}
	sent := &entryState{meta: entryMeta(entry(0, "", nil)), length: 4}
	tests := []struct {
		name        string
		e           store.LogEntry
		sent        *entryState
		wantSend    bool
		wantOut     *string
		wantAppend  string
		wantSkipped int64
	}{
		{"new entry", entry(0, "one\n", nil), nil, true, ptr("one\n"), "", 0},
		{"new entry, its end", entry(100, "end\n", nil), nil, true, ptr("end\n"), "", 100},
		{"unchanged", entry(4, "", nil), sent, false, nil, "", 0},
		{"appended", entry(4, "two\n", nil), sent, true, nil, "two\n", 0},
		{"more appended than a page keeps", entry(50, "end\n", nil), sent, true, ptr("end\n"), "", 50},
		{"finished", entry(4, "", &exit), sent, true, nil, "", 0},
	}
	for _, tt := range tests {
		ev, send := entryChange(tt.e, masker{}, tt.sent, "/whole")
		if send != tt.wantSend {
			t.Errorf("%s: send = %v, want %v", tt.name, send, tt.wantSend)
			continue
		}
		if (ev.Out == nil) != (tt.wantOut == nil) || (ev.Out != nil && *ev.Out != *tt.wantOut) || ev.Append != tt.wantAppend {
			t.Errorf("%s: out %v append %q, want out %v append %q", tt.name, deref(ev.Out), ev.Append, deref(tt.wantOut), tt.wantAppend)
		}
		if ev.Skipped != tt.wantSkipped || (ev.Skipped > 0) != (ev.Whole == "/whole") {
			t.Errorf("%s: skipped %d whole %q, want skipped %d and the whole output's URL when some is", tt.name, ev.Skipped, ev.Whole, tt.wantSkipped)
		}
	}
	if !shrunk([]store.LogEntry{entry(0, "on", nil)}, []entryState{*sent}) || shrunk([]store.LogEntry{entry(4, "", nil)}, []entryState{*sent}) || !shrunk(nil, []entryState{*sent}) {
		t.Errorf("shrunk: want true for a shorter output or fewer entries, false for the same length")
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestHistory(t *testing.T) {
	h := newHistory(3)
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		h.add(sample{at: t0.Add(time.Duration(i) * time.Second), size: map[string]int{"q": i}})
	}
	var got []int
	for _, s := range h.since(t0.Add(3 * time.Second)) {
		got = append(got, s.size["q"])
	}
	if want := []int{3, 4}; !equal(got, want) {
		t.Errorf("since(t0+3s) = %v, want %v", got, want)
	}
	got = nil
	for _, s := range h.since(t0) {
		got = append(got, s.size["q"])
	}
	if want := []int{2, 3, 4}; !equal(got, want) {
		t.Errorf("since(t0) after wrapping = %v, want %v (the last 3, oldest first)", got, want)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNiceTop(t *testing.T) {
	tests := []struct{ v, want float64 }{
		{0, 4}, {1, 4}, {3.5, 4}, {4.5, 5}, {7, 8}, {12, 20}, {17, 20}, {45, 50}, {90, 100}, {101, 200},
	}
	for _, tt := range tests {
		if got := niceTop(tt.v); got != tt.want {
			t.Errorf("niceTop(%v) = %v, want %v", tt.v, got, tt.want)
		}
	}
}
