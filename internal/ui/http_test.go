package ui_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/store/postgres/pgtest"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
)

func TestSignIn_RequiredOnEveryPage(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	for _, path := range []string{"/ui/executors", "/ui/queues", "/ui/jobs/batches", "/ui/jobs/batches/1", "/ui/site-config"} {
		resp, err := c.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, want := resp.Header.Get("Location"), "/ui/sign-in?next="+url.QueryEscape(path); resp.StatusCode != http.StatusSeeOther || got != want {
			t.Errorf("GET %s signed out = %d to %q, want 303 to %q", path, resp.StatusCode, got, want)
		}
	}
	if code, _ := e.get(c, "/ui/jobs/batches/1/events"); code != http.StatusUnauthorized {
		t.Errorf("GET events signed out = %d, want 401", code)
	}
}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		token    string
		header   map[string]string
		want     int
		wantBody string
	}{
		{"wrong token", "api-token-0123456789abcdeX", nil, http.StatusUnauthorized, "not the API access token"},
		{"empty token", "", nil, http.StatusUnauthorized, "not the API access token"},
		{"other origin", apiToken, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden, "another site"},
		{"right token", apiToken, nil, http.StatusSeeOther, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t)
			code, body := e.post(c, "/ui/sign-in", url.Values{"token": {tt.token}, "next": {"/ui/queues"}}, tt.header)
			if code != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("sign in = %d %.200q, want %d containing %q", code, body, tt.want, tt.wantBody)
			}
		})
	}
}

func TestSignIn_Cookie(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		header     map[string]string
		wantSecure bool
	}{
		{"http", nil, false},
		{"https proxy", map[string]string{"X-Forwarded-Proto": "https"}, true},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", e.srv.URL+"/ui/sign-in", strings.NewReader(url.Values{"token": {apiToken}, "next": {"https://evil.example/"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		resp, err := client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cookies := resp.Cookies()
		if len(cookies) != 1 {
			t.Fatalf("%s: cookies %v, want one", tt.name, cookies)
		}
		ck := cookies[0]
		if ck.Name != "execd_session" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure != tt.wantSecure || len(ck.Value) < 40 {
			t.Errorf("%s: cookie %+v, want execd_session, HttpOnly, SameSite=Lax, Secure=%v, a long random value", tt.name, ck, tt.wantSecure)
		}
		if got := resp.Header.Get("Location"); got != "/ui/executors" {
			t.Errorf("%s: redirect after sign-in with an outside next = %q, want /ui/executors", tt.name, got)
		}
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	csrf := e.signIn(c)
	id := e.submit(jobSpec)
	cancelPath := fmt.Sprintf("/ui/jobs/batches/%d/cancel", id)
	tests := []struct {
		name   string
		path   string
		form   url.Values
		header map[string]string
		want   int
	}{
		{"cancel without token", cancelPath, url.Values{}, nil, http.StatusForbidden},
		{"cancel with a wrong token", cancelPath, url.Values{"csrf": {csrf + "x"}}, nil, http.StatusForbidden},
		{"cancel from another origin", cancelPath, url.Values{"csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"retry without token", fmt.Sprintf("/ui/jobs/batches/%d/retry", id), url.Values{}, nil, http.StatusForbidden},
		{"config save without token", "/ui/site-config", url.Values{"config": {"{}"}}, nil, http.StatusForbidden},
		{"sign out without token", "/ui/sign-out", url.Values{}, nil, http.StatusForbidden},
	}
	for _, tt := range tests {
		if code, body := e.post(c, tt.path, tt.form, tt.header); code != tt.want {
			t.Errorf("%s: POST %s = %d %.200q, want %d", tt.name, tt.path, code, body, tt.want)
		}
	}
	job, err := e.c.Store().GetJob(context.Background(), "batches", id)
	if err != nil || job.State != store.StateQueued {
		t.Fatalf("after refused forms: job %+v, %v; want still queued", job.State, err)
	}
	if code, _ := e.post(c, cancelPath, url.Values{"csrf": {csrf}}, map[string]string{"Origin": e.srv.URL}); code != http.StatusSeeOther {
		t.Errorf("cancel with the token: %d, want 303", code)
	}
	if job, _ := e.c.Store().GetJob(context.Background(), "batches", id); job.State != store.StateCanceled {
		t.Errorf("after cancel: state %q, want canceled", job.State)
	}
	if code, _ := e.post(c, "/ui/sign-out", url.Values{"csrf": {csrf}}, nil); code != http.StatusSeeOther {
		t.Errorf("sign out: %d, want 303", code)
	}
	if code, _ := e.get(c, "/ui/executors"); code != http.StatusSeeOther {
		t.Errorf("executors page after sign-out: %d, want 303 to the sign-in page", code)
	}
}

// A session ends when the API token it was opened with is replaced.
// TestSession_Shared: sessions live in the database: a coordinator sharing
// it (postgres) or the same one restarted (SQLite) knows them, and a
// sign-out on one ends them on all.
func TestSession_Shared(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		dir := t.TempDir()
		a := newEnvAt(t, dir, db)
		c := client(t) // cookies are not kept apart by port
		a.signIn(c)
		var b *env
		if db == "" {
			a.close()
			b = newEnvAt(t, dir, db)
		} else {
			b = newEnvAt(t, t.TempDir(), db)
		}
		code, page := b.get(c, "/ui/executors")
		if code != http.StatusOK {
			t.Fatalf("executors page on the other coordinator: %d, want 200 with the session", code)
		}
		csrf := csrfOf(t, page)
		// Someone keeps a copy of the cookie, which the browser forgets at
		// sign-out.
		u, _ := url.Parse(b.srv.URL)
		stolen := client(t)
		stolen.Jar.SetCookies(u, c.Jar.Cookies(u))
		if code, _ := b.post(c, "/ui/sign-out", url.Values{"csrf": {csrf}}, nil); code != http.StatusSeeOther {
			t.Fatalf("sign-out: %d, want 303", code)
		}
		if len(c.Jar.Cookies(u)) != 0 {
			t.Errorf("cookies after sign-out: %v, want none", c.Jar.Cookies(u))
		}
		other := b
		if db != "" {
			other = a
		}
		if code, _ := other.get(stolen, "/ui/executors"); code != http.StatusSeeOther {
			t.Errorf("the session's cookie after sign-out: %d, want 303 to the sign-in page", code)
		}
	})
}

func TestSession_EndsWhenTokenChanges(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	e.signIn(c)
	raw := strings.Replace(string(e.c.Config().Raw()), apiToken, "a-brand-new-api-token-0123456789", 1)
	if err := e.c.Config().Save([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if code, _ := e.get(c, "/ui/executors"); code != http.StatusSeeOther {
		t.Errorf("executors page after the token changed: %d, want 303 to the sign-in page", code)
	}
}

func TestPages(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	e.signIn(c)
	empty := []struct{ path, want string }{
		{"/ui/executors", "No executors yet"},
		{"/ui/executors", "EXECUTOR_FRONTEND_PASSWORD"},
		{"/ui/queues", "No jobs yet"},
		{"/ui/jobs/batches", "No jobs in batches yet"},
		{"/ui/site-config", "executors.activeThreshold"},
		{"/ui/nope", "There is no page at /ui/nope"},
		{"/ui/jobs/nope", "not configured"},
		{"/ui/jobs/batches/999", "There is no job 999"},
	}
	for _, tt := range empty {
		if _, body := e.get(c, tt.path); !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: no %q in %.300q", tt.path, tt.want, body)
		}
	}

	id := e.submit(jobSpec)
	ex := e.executor("ci-box-1")
	if err := heartbeat(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	job := dequeue(t, ex)
	if _, err := ex.AddLogEntry(context.Background(), job, protocol.ExecutionLogEntry{Key: "step.0", Command: []string{"go", "test"}, StartTime: time.Now(), Out: "ok <b>pkg</b> token hunter2-very-secret\n"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    []string
		notWant []string
	}{
		{"/ui/executors", []string{"<title>Executors · execd</title>", `data-executor="ci-box-1"`, `class="dot on"`, ">ci-box<", "up to date", "20.10.24", ">1<"}, nil},
		{"/ui/executors?show=active&q=linux", []string{`data-executor="ci-box-1"`}, nil},
		{"/ui/executors?q=windows", []string{"No executor matches"}, []string{`data-executor="ci-box-1"`}},
		{"/ui/queues", []string{"<title>Queues · execd</title>", "<svg", `data-state="processing"><b>1</b>`}, nil},
		{"/ui/jobs/batches", []string{"<title>Jobs in batches · execd</title>", fmt.Sprintf(`data-job="%d"`, id), "github.com/acme/widgets"}, nil},
		{"/ui/jobs/batches?state=completed", []string{"No job matches"}, nil},
		{"/ui/jobs/batches?repository=github.com/acme/widgets", []string{fmt.Sprintf(`data-job="%d"`, id)}, nil},
		{fmt.Sprintf("/ui/jobs/batches/%d", id), []string{"ok &lt;b&gt;pkg&lt;/b&gt;", "[REDACTED]", "data-events=", `id="cancel-form" >`}, []string{"hunter2-very-secret", "<b>pkg</b>"}},
		{"/ui/site-config", []string{"********"}, []string{execSecret, apiToken}},
	}
	for _, tt := range tests {
		code, body := e.get(c, tt.path)
		if code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200: %.300s", tt.path, code, body)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q", tt.path, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(body, w) {
				t.Errorf("GET %s: has %q", tt.path, w)
			}
		}
	}
}

func TestJobs_Pagination(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	e.signIn(c)
	for range 55 {
		e.submit(jobSpec)
	}
	_, body := e.get(c, "/ui/jobs/batches")
	if got := strings.Count(body, "data-job="); got != 50 {
		t.Errorf("first page: %d jobs, want 50", got)
	}
	if !strings.Contains(body, `href="/ui/jobs/batches?before=6"`) {
		t.Errorf("first page: no link to the page before job 6")
	}
	_, body = e.get(c, "/ui/jobs/batches?before=6")
	if got := strings.Count(body, "data-job="); got != 5 {
		t.Errorf("second page: %d jobs, want 5", got)
	}
}

func TestSiteConfig_Save(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	csrf := e.signIn(c)
	_, page := e.get(c, "/ui/site-config")
	masked := textarea(t, page)
	if strings.Contains(masked, execSecret) || !strings.Contains(masked, `"executors.accessToken": "********"`) {
		t.Fatalf("edit form text does not mask the secrets:\n%s", masked)
	}
	tests := []struct {
		name      string
		edit      func(string) string
		wantCode  int
		wantError string
		check     func(raw string) error
	}{
		{
			name: "short executors.accessToken",
			edit: func(s string) string {
				return strings.Replace(s, `"executors.accessToken": "********"`, `"executors.accessToken": "short"`, 1)
			},
			wantCode:  http.StatusUnprocessableEntity,
			wantError: `&#34;executors.accessToken&#34;: is 5 characters long; it must be at least 20`,
		},
		{
			name:      "malformed",
			edit:      func(s string) string { return s + "}" },
			wantCode:  http.StatusUnprocessableEntity,
			wantError: "not valid JSON",
		},
		{
			name:     "masked secrets kept, threshold changed",
			edit:     func(s string) string { return strings.Replace(s, `"2s"`, `"3s"`, 1) },
			wantCode: http.StatusSeeOther,
			check: func(raw string) error {
				if !strings.Contains(raw, execSecret) || !strings.Contains(raw, apiToken) || !strings.Contains(raw, `"3s"`) || !strings.Contains(raw, "// Site config of a UI test.") {
					return fmt.Errorf("saved text lost a secret, the comment or the edit:\n%s", raw)
				}
				return nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := string(e.c.Config().Raw())
			code, body := e.post(c, "/ui/site-config", url.Values{"csrf": {csrf}, "config": {tt.edit(masked)}}, nil)
			if code != tt.wantCode || !strings.Contains(body, tt.wantError) {
				t.Errorf("save = %d %q, want %d containing %q", code, errorBox(body), tt.wantCode, tt.wantError)
			}
			raw := string(e.c.Config().Raw())
			if tt.check == nil && raw != before {
				t.Errorf("a refused edit changed the config in force:\n%s", raw)
			}
			if tt.check != nil {
				if err := tt.check(raw); err != nil {
					t.Error(err)
				}
			}
		})
	}
	if got := e.c.Config().Current().Active(); got != 3*time.Second {
		t.Errorf("active threshold in force = %v, want 3s", got)
	}
}

func textarea(t *testing.T, page string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, `<textarea name="config"`)
	if !ok {
		t.Fatal("no config textarea")
	}
	_, rest, _ = strings.Cut(rest, ">")
	text, _, _ := strings.Cut(rest, "</textarea>")
	return strings.NewReplacer("&#34;", `"`, "&lt;", "<", "&gt;", ">", "&amp;", "&", "&#39;", "'").Replace(text)
}

func errorBox(body string) string {
	_, rest, ok := strings.Cut(body, `id="error">`)
	if !ok {
		return "(no error shown)"
	}
	msg, _, _ := strings.Cut(rest, "</div>")
	return msg
}

// TestJob_LongLog: a job page shows the end of a long output, with a link
// to all of it, masked.
func TestJob_LongLog(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	e.signIn(c)
	id := e.submit(jobSpec)
	ex := e.executor("ci-box-1")
	job := dequeue(t, ex)
	ctx := context.Background()
	entryID, err := ex.AddLogEntry(ctx, job, protocol.ExecutionLogEntry{Key: "step.0", Command: []string{"make"}, StartTime: time.Now(), Out: "FIRST LINE hunter2-very-secret\n"})
	if err != nil {
		t.Fatal(err)
	}
	n := int64(31)
	line := "ok ...................................................\n"
	for range 5 {
		if n, err = ex.AppendLogEntry(ctx, job, entryID, n, []byte(strings.Repeat(line, 10_000)), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ex.AppendLogEntry(ctx, job, entryID, n, []byte("LAST LINE\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	code, page := e.get(c, fmt.Sprintf("/ui/jobs/batches/%d", id))
	wholeURL := fmt.Sprintf("/ui/jobs/batches/%d/log/%d", id, entryID)
	if code != http.StatusOK || strings.Contains(page, "FIRST LINE") || !strings.Contains(page, "LAST LINE") ||
		!strings.Contains(page, "earlier bytes not shown") || !strings.Contains(page, `href="`+wholeURL+`"`) {
		t.Errorf("job page (%d, %d bytes): want the output's end, a note and a link to %s", code, len(page), wholeURL)
	}
	if len(page) > 2<<20 {
		t.Errorf("job page is %d bytes: want about the last MiB of the log", len(page))
	}
	code, whole := e.get(c, wholeURL)
	if code != http.StatusOK || !strings.HasPrefix(whole, "FIRST LINE [REDACTED]\n") || !strings.HasSuffix(whole, "LAST LINE\n") || int64(len(whole)) != n+10-int64(len("hunter2-very-secret"))+int64(len("[REDACTED]")) {
		t.Errorf("whole log: %d, %d bytes: want all of it, masked", code, len(whole))
	}
	if code, _ := e.get(c, fmt.Sprintf("/ui/jobs/batches/%d/log/9", id)); code != http.StatusNotFound {
		t.Errorf("whole log of a missing entry: %d, want 404", code)
	}
}

func TestJobEvents_Stream(t *testing.T) {
	e := newEnv(t)
	c := client(t)
	e.signIn(c)
	id := e.submit(jobSpec)
	ex := e.executor("ci-box-1")
	job := dequeue(t, ex)
	ctx := context.Background()
	entry := protocol.ExecutionLogEntry{Key: "step.0", Command: []string{"make"}, StartTime: time.Now(), Out: "first\n"}
	entryID, err := ex.AddLogEntry(ctx, job, entry)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(fmt.Sprintf("%s/ui/jobs/batches/%d/events", e.srv.URL, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 8<<20) // an event may carry a MiB of log
		var ev strings.Builder
		for sc.Scan() {
			if sc.Text() == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			ev.WriteString(sc.Text() + "\n")
		}
		close(events)
	}()
	next := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if strings.Contains(ev, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no event with %q within 10s", want)
			}
		}
	}
	next(`"out":"first\n"`)
	next(`"state":"processing"`)
	entry.Out = "first\nsecond\n"
	if err := ex.UpdateLogEntry(ctx, job, entryID, entry); err != nil {
		t.Fatal(err)
	}
	next(`"append":"second\n"`)
	// Appends, as our executor sends them.
	if _, err := ex.AppendLogEntry(ctx, job, entryID, 13, []byte("third\n"), nil, nil); err != nil {
		t.Fatal(err)
	}
	next(`"append":"third\n"`)
	// More than a page keeps, at once: the stream sends the end instead.
	big := strings.Repeat("0123456789abcde\n", 70_000) // 1.1 MB
	if _, err := ex.AppendLogEntry(ctx, job, entryID, 19, []byte(big), nil, nil); err != nil {
		t.Fatal(err)
	}
	next(fmt.Sprintf(`"skipped":%d,"whole":"/ui/jobs/batches/%d/log/1"`, 19+len(big)-(1<<20), id))
	if err := ex.MarkComplete(ctx, job); err != nil {
		t.Fatal(err)
	}
	next(`"state":"completed"`)
	next("event: done")
}
