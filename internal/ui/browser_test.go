package ui_test

import (
	"context"
	"crypto/sha1"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/store"
	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/ui"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium for t and returns a context for
// chromedp actions, limited to timeout.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testutil.Missing(t, "chromium", fmt.Sprintf("%s: %v (apt-get install chromium)", chromiumPath, err))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first action starts the browser; it must not run under the
	// timeout, which would end the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancel)
	return tctx
}

// do runs actions, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor evaluates a JavaScript predicate every 100ms until it holds or
// within passes. Errors (such as a navigation in progress) count as false.
func waitFor(t *testing.T, ctx context.Context, what, predicate string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+predicate+")"))
		if err == nil && ok {
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
	t.Fatalf("%s: not within %v (predicate %s; last error %v)\npage text:\n%s", what, within, predicate, lastErr, body)
}

// waitText waits until the page shows text.
func waitText(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	waitFor(t, ctx, "text "+strconv.Quote(text), "document.body.innerText.includes("+strconv.Quote(text)+")", 10*time.Second)
}

// signInBrowser opens the UI, which sends the browser to the sign-in page,
// and signs in with the API token.
func (e *env) signInBrowser(t *testing.T, ctx context.Context) {
	t.Helper()
	signInAt(t, ctx, e.srv.URL)
}

func signInAt(t *testing.T, ctx context.Context, baseURL string) {
	t.Helper()
	do(t, ctx, "sign in",
		chromedp.Navigate(baseURL+"/ui/queues"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), apiToken),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("nav a.on[href='/ui/queues']")),
	)
	if title := eval[string](t, ctx, `document.title`); title != "Queues · execd" {
		t.Errorf("title after sign-in = %q, want %q", title, "Queues · execd")
	}
	cookie := eval[string](t, ctx, `document.cookie`)
	if strings.Contains(cookie, "execd_session") {
		t.Errorf("the session cookie is visible to scripts: %q; want HttpOnly", cookie)
	}
}

func TestBrowser_SignIn(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t, time.Minute)
	do(t, ctx, "wrong token",
		chromedp.Navigate(e.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-at-all-0123"),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	)
	if msg := eval[string](t, ctx, `document.getElementById("error").innerText`); !strings.Contains(msg, "not the API access token") {
		t.Errorf("error after a wrong token = %q", msg)
	}
	e.signInBrowser(t, ctx)
	do(t, ctx, "sign out",
		chromedp.Click(chromedp.CSS("#sign-out")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.Navigate(e.srv.URL+"/ui/executors"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
}

// An executor that heartbeats shows a green dot; once it stops, the dot
// turns grey after the active threshold (2s in the test config), without a
// reload.
func TestBrowser_ExecutorDot(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t, time.Minute)
	e.signInBrowser(t, ctx)

	ex := e.executor("ci-box-1")
	hbCtx, stop := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var lastBeat time.Time // written by the goroutine, read after stopped
	go func() {
		defer close(stopped)
		for {
			sent := time.Now()
			if err := heartbeat(hbCtx, ex); err == nil {
				lastBeat = sent
			} else if hbCtx.Err() == nil {
				t.Errorf("heartbeat: %v", err)
			}
			select {
			case <-hbCtx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stop(); <-stopped })

	row := `tr[data-executor="ci-box-1"]`
	do(t, ctx, "open executors page",
		chromedp.Navigate(e.srv.URL+"/ui/executors"),
		chromedp.WaitVisible(chromedp.CSS(row+" .dot.on")),
	)
	cells := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('`+row+` td')).map(td => td.innerText.trim())`)
	want := []string{"ci-box-1\nci-box", "batches", "linux/amd64", "1.2.0 up to date", "20.10.24", "2.39.5", "—", "gvisor", "0"}
	if len(cells) < len(want) {
		t.Fatalf("row cells = %q, want at least %d", cells, len(want))
	}
	for i, w := range want {
		if cells[i] != w {
			t.Errorf("cell %d = %q, want %q", i, cells[i], w)
		}
	}
	if !strings.HasSuffix(cells[len(cells)-1], "s ago") {
		t.Errorf("last seen = %q, want \"N s ago\"", cells[len(cells)-1])
	}
	if got := eval[string](t, ctx, `getComputedStyle(document.querySelector('`+row+` .dot')).backgroundColor`); got != "rgb(31, 157, 85)" {
		t.Errorf("active dot colour = %s, want green rgb(31, 157, 85)", got)
	}
	stop()
	<-stopped
	waitFor(t, ctx, "dot turns grey", `document.querySelector('`+row+` .dot:not(.on)') !== null`, 20*time.Second)
	if waited := time.Since(lastBeat); waited < 2*time.Second {
		t.Errorf("dot turned grey %v after the last heartbeat, before the 2s threshold", waited)
	}
	if got := eval[string](t, ctx, `getComputedStyle(document.querySelector('`+row+` .dot')).backgroundColor`); got != "rgb(154, 163, 173)" {
		t.Errorf("inactive dot colour = %s, want grey rgb(154, 163, 173)", got)
	}
	do(t, ctx, "filter active", chromedp.Click(chromedp.CSS("#show-active")))
	waitText(t, ctx, "No executor matches")
}

// The test plays the executor: the job's log lines appear on its page while
// it runs, and its state changes, without a reload.
func TestBrowser_LiveLog(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t, time.Minute)
	e.signInBrowser(t, ctx)
	id := e.submit(jobSpec)
	do(t, ctx, "open job page",
		chromedp.Navigate(fmt.Sprintf("%s/ui/jobs/batches/%d", e.srv.URL, id)),
		chromedp.WaitVisible(chromedp.CSS("#no-entries")),
	)
	// A reload would lose this.
	eval[chromedp.Void](t, ctx, `window.__sameDocument = true`)

	ex := e.executor("ci-box-1")
	job := dequeue(t, ex)
	bg := context.Background()
	waitFor(t, ctx, "state processing", `document.getElementById("job-state").dataset.state === "processing"`, 10*time.Second)

	start := time.Now()
	entry := protocol.ExecutionLogEntry{Key: "step.docker.test", Command: []string{"docker", "run", "golang:1.22", "go", "test", "./..."}, StartTime: start, Out: "stdout: === RUN TestOne\n"}
	entryID, err := ex.AddLogEntry(bg, job, entry)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "first line", `document.querySelector('details.entry[data-entry-id="1"] pre.log')?.textContent.includes("=== RUN TestOne")`, 10*time.Second)
	for i := 2; i <= 4; i++ {
		entry.Out += fmt.Sprintf("stdout: line %d <b>not bold</b>\n", i)
		if err := ex.UpdateLogEntry(bg, job, entryID, entry); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, fmt.Sprintf("line %d", i), fmt.Sprintf(`document.querySelector('details.entry[data-entry-id="1"] pre.log').textContent.includes("line %d <b>not bold</b>")`, i), 10*time.Second)
	}
	exit, dur := 0, 1234
	entry.ExitCode, entry.DurationMs = &exit, &dur
	entry.Out += "stdout: PASS\n"
	if err := ex.UpdateLogEntry(bg, job, entryID, entry); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "exit code", `document.querySelector('details.entry[data-entry-id="1"] .exit').textContent === "exit 0"`, 10*time.Second)
	second := protocol.ExecutionLogEntry{Key: "step.docker.lint", Command: []string{"golangci-lint", "run"}, StartTime: time.Now(), Out: "stdout: lint ok\n"}
	if _, err := ex.AddLogEntry(bg, job, second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "second entry", `document.querySelector('details.entry[data-entry-id="2"] pre.log')?.textContent === "stdout: lint ok\n"`, 10*time.Second)
	// A long output: the page shows its end, says so, and links to all of it.
	big := strings.Repeat("stdout: ........................................\n", 30_000) + "stdout: the end\n" // 1.5 MB
	if _, err := ex.AppendLogEntry(bg, job, 2, int64(len(second.Out)), []byte(big), nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "end of a long output", `document.querySelector('details.entry[data-entry-id="2"] pre.log').textContent.endsWith("stdout: the end\n")`, 10*time.Second)
	if !eval[bool](t, ctx, `(() => {
		const note = document.querySelector('details.entry[data-entry-id="2"] .skipped');
		const pre = document.querySelector('details.entry[data-entry-id="2"] pre.log');
		return !note.hidden && note.textContent.includes("earlier bytes not shown") &&
			note.querySelector("a.whole").getAttribute("href").endsWith("/log/2") &&
			!pre.textContent.includes("lint ok") && pre.textContent.length <= 1048576;
	})()`) {
		t.Error("a long output: want its last MiB, a note saying earlier bytes are not shown, and a link to the whole output")
	}
	if err := ex.MarkComplete(bg, job); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "state completed", `document.getElementById("job-state").dataset.state === "completed" && document.getElementById("finished-at").textContent !== "—"`, 10*time.Second)
	if !eval[bool](t, ctx, `window.__sameDocument === true`) {
		t.Error("the page was reloaded; want live updates in the same document")
	}
	if got := eval[string](t, ctx, `document.querySelector('details.entry[data-entry-id="1"] pre.log').textContent`); got != entry.Out {
		t.Errorf("live log = %q, want %q", got, entry.Out)
	}
	if !eval[bool](t, ctx, `document.getElementById("no-entries").hidden && document.getElementById("cancel-form").hidden && document.getElementById("retry-form").hidden`) {
		t.Error("after completion: want the empty note and both buttons hidden")
	}
}

func TestBrowser_Cancel(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t, time.Minute)
	e.signInBrowser(t, ctx)
	bg := context.Background()

	t.Run("queued", func(t *testing.T) {
		id := e.submit(jobSpec)
		do(t, ctx, "cancel a queued job",
			chromedp.Navigate(fmt.Sprintf("%s/ui/jobs/batches/%d", e.srv.URL, id)),
			chromedp.Click(chromedp.CSS("#cancel")),
		)
		waitText(t, ctx, "Job canceled.")
		if got := eval[string](t, ctx, `document.getElementById("job-state").dataset.state`); got != store.StateCanceled {
			t.Errorf("state on the page = %q, want canceled", got)
		}
		if job, _ := e.c.Store().GetJob(bg, "batches", id); job.State != store.StateCanceled {
			t.Errorf("state in the store = %q, want canceled", job.State)
		}
	})

	t.Run("processing", func(t *testing.T) {
		id := e.submit(jobSpec)
		ex := e.executor("ci-box-2")
		job := dequeue(t, ex)
		do(t, ctx, "cancel a processing job",
			chromedp.Navigate(fmt.Sprintf("%s/ui/jobs/batches/%d", e.srv.URL, id)),
			chromedp.Click(chromedp.CSS("#cancel")),
		)
		waitText(t, ctx, "Cancellation requested")
		if got := eval[string](t, ctx, `document.querySelector("[role=status]").innerText`); !strings.Contains(got, "Cancellation requested") {
			t.Errorf("notice = %q", got)
		}
		if stored, _ := e.c.Store().GetJob(bg, "batches", id); !stored.Cancel || stored.State != store.StateProcessing {
			t.Errorf("in the store: state %q cancel %v, want processing with cancel requested", stored.State, stored.Cancel)
		}
		// The executor learns it from its heartbeat and gives up the job.
		resp, err := ex.Heartbeat(bg, []string{"batches"}, protocol.HeartbeatRequest{ExecutorVersion: coordinatorVersion}, []protocol.Job{job}, 0)
		if err != nil || len(resp.CancelIDs) != 1 {
			t.Fatalf("heartbeat: %+v, %v; want the job to cancel", resp, err)
		}
		if err := ex.MarkFailed(bg, job, "canceled"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "state canceled", `document.getElementById("job-state").dataset.state === "canceled"`, 10*time.Second)
	})
}

func TestBrowser_SiteConfig(t *testing.T) {
	e := newEnv(t)
	ctx := browser(t, time.Minute)
	e.signInBrowser(t, ctx)
	do(t, ctx, "open site config", chromedp.Navigate(e.srv.URL+"/ui/site-config"), chromedp.WaitVisible(chromedp.CSS("#config")))
	if html := eval[string](t, ctx, `document.documentElement.outerHTML`); strings.Contains(html, execSecret) || strings.Contains(html, apiToken) {
		t.Fatal("the site config page holds a secret")
	}
	text := eval[string](t, ctx, `document.getElementById("config").value`)
	bad := strings.Replace(text, `"executors.accessToken": "********"`, `"executors.accessToken": "too-short"`, 1)
	if bad == text {
		t.Fatalf("no masked executors.accessToken in the edit form:\n%s", text)
	}
	do(t, ctx, "save a short executors.accessToken",
		chromedp.SetValue(chromedp.CSS("#config"), bad),
		chromedp.Click(chromedp.CSS("#save")),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	)
	msg := eval[string](t, ctx, `document.getElementById("error").innerText`)
	if !strings.Contains(msg, `"executors.accessToken": is 9 characters long; it must be at least 20`) {
		t.Errorf("error shown = %q, want the reason", msg)
	}
	if got := eval[string](t, ctx, `document.getElementById("config").value`); got != bad {
		t.Errorf("the refused text is not kept in the form for correction")
	}
	if cur := e.c.Config().Current().ExecutorsAccessToken; cur != execSecret {
		t.Errorf("executors.accessToken in force = %q, want unchanged", cur)
	}
	good := strings.Replace(text, `"executors.activeThreshold": "2s"`, `"executors.activeThreshold": "5s"`, 1)
	do(t, ctx, "save a good edit",
		chromedp.SetValue(chromedp.CSS("#config"), good),
		chromedp.Click(chromedp.CSS("#save")),
	)
	waitText(t, ctx, "Saved. The new site config is in force.")
	if got := e.c.Config().Current(); got.Active() != 5*time.Second || got.ExecutorsAccessToken != execSecret {
		t.Errorf("in force after save: threshold %v, secret kept %v; want 5s and the secret unchanged", got.Active(), got.ExecutorsAccessToken == execSecret)
	}
}

// Every page fits a phone's width, and the tests save screenshots of each
// at desktop and phone width to docs/screenshots when
// EXECD_UPDATE_SCREENSHOTS=1.
//
// The pages are served by a UI server of their own over the coordinator's
// store and config, so that the queue size chart can show an hour of
// samples.
func TestBrowser_Screenshots(t *testing.T) {
	e := newEnv(t)
	raw := strings.Replace(string(e.c.Config().Raw()), `"2s"`, `"15s"`, 1)
	if err := e.c.Config().Save([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	jobID := populate(t, e)
	u, err := ui.New(ui.Options{Store: e.c.Store(), Config: e.c.Config(), Version: coordinatorVersion})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 240 {
		at := now.Add(-time.Hour + time.Duration(i)*15*time.Second)
		u.AddSample(at, map[string]int{
			"batches":   int(6 + 5*math.Sin(float64(i)/22) + float64(i%7)/3),
			"codeintel": int(1.5 + 1.5*math.Sin(float64(i)/40)),
		})
	}
	srv := httptest.NewServer(u.Handler())
	defer srv.Close()
	ctx := browser(t, 2*time.Minute)
	save := os.Getenv("EXECD_UPDATE_SCREENSHOTS") == "1"
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if save {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pages := []struct{ name, path, ready string }{
		{"sign-in", "/ui/sign-in", "#token"},
		{"executors", "/ui/executors", "tr[data-executor]"},
		{"queues", "/ui/queues", "svg.chart"},
		{"jobs", "/ui/jobs/batches", "tr[data-job]"},
		{"job", fmt.Sprintf("/ui/jobs/batches/%d", jobID), "details.entry"},
		{"site-config", "/ui/site-config", "#config"},
	}
	sizes := []struct {
		name          string
		width, height int64
		scale         float64
	}{
		{"desktop", 1280, 860, 1},
		{"phone", 390, 844, 1},
	}
	for _, p := range pages {
		if p.name == "executors" {
			signInAt(t, ctx, srv.URL)
		}
		for _, sz := range sizes {
			do(t, ctx, p.name+" at "+sz.name,
				chromedp.EmulateViewport(sz.width, sz.height, chromedp.EmulateScale(sz.scale)),
				chromedp.Navigate(srv.URL+p.path),
				chromedp.WaitVisible(chromedp.CSS(p.ready)),
			)
			if title := eval[string](t, ctx, `document.title`); !strings.HasSuffix(title, " · execd") {
				t.Errorf("%s: title %q", p.name, title)
			}
			if overflow := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); overflow > 0 {
				t.Errorf("%s at %s: the page is %dpx wider than the window", p.name, sz.name, overflow)
			}
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("screenshot %s: %v", p.name, err)
			}
			if save {
				if err := os.WriteFile(filepath.Join(dir, p.name+"-"+sz.name+".png"), png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// populate fills e with what the screenshots show: executors active and
// not, of several versions, and jobs of the last hour in every state. It
// returns the id of a running job with logs.
func populate(t *testing.T, e *env) int {
	t.Helper()
	bg := context.Background()
	st := e.c.Store()
	now := time.Now()
	executors := []struct {
		name, version, docker, ignite, runtime string
		queues                                 []string
		seen                                   time.Duration
	}{
		{"build-eu-1-7f3c", coordinatorVersion, "20.10.24", "", "gvisor", []string{"batches"}, 0},
		{"build-eu-2-91ab", coordinatorVersion, "24.0.7", "", "docker", []string{"batches", "codeintel"}, time.Second},
		{"gpu-box-0e12", "1.1.4", "20.10.24", "release-20240226.0", "", []string{"codeintel"}, 3 * time.Second},
		{"laptop-ana-2", "1.3.0", "", "", "shell", []string{"batches"}, 4 * time.Minute},
		{"old-runner-5", "0.9.2", "19.03.8", "", "", []string{"batches"}, 26 * time.Hour},
	}
	repos := []string{"github.com/acme/widgets", "github.com/acme/gadgets", "github.com/acme/api"}
	spec := func(i int) store.Spec {
		return store.Spec{
			RepositoryName: repos[i%len(repos)], Commit: fmt.Sprintf("%x", sha1.Sum([]byte(strconv.Itoa(i)))),
			DockerSteps: []protocol.DockerStep{{Key: "test", Image: "golang:1.22", Commands: []string{"go test ./..."}, Dir: "."}},
		}
	}
	// An hour of finished jobs, a few at a time.
	for i := range 60 {
		at := now.Add(-time.Hour + time.Duration(i)*time.Minute)
		for k := range 1 + i%4 {
			n := i*4 + k
			id, err := st.Enqueue(bg, "batches", spec(n), 1, at)
			if err != nil {
				t.Fatal(err)
			}
			worker := executors[n%2].name
			if _, ok, err := st.Dequeue(bg, "batches", store.DequeueOptions{ExecutorName: worker}, at.Add(5*time.Second)); err != nil || !ok {
				t.Fatalf("dequeue: %v %v", ok, err)
			}
			end := at.Add(time.Duration(20+n%70) * time.Second)
			if n%9 == 0 {
				err = st.MarkFailed(bg, "batches", id, worker, "step test: exit status 1", end)
			} else {
				err = st.MarkComplete(bg, "batches", id, worker, end)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// Heartbeats after the jobs, whose dequeues counted as sightings.
	for _, x := range executors {
		ex := store.Executor{Name: x.name, Queues: x.queues, OS: "linux", Architecture: "amd64", ExecutorVersion: x.version,
			DockerVersion: x.docker, GitVersion: "2.39.5", IgniteVersion: x.ignite, Runtime: x.runtime}
		if _, _, err := st.Heartbeat(bg, ex, "", nil, now.Add(-x.seen-time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Heartbeat(bg, ex, "", nil, now.Add(-x.seen)); err != nil {
			t.Fatal(err)
		}
	}
	// A running job with logs, taken through the queue API.
	running := e.submit(jobSpec)
	ex := e.executor("build-eu-1-7f3c")
	job := dequeue(t, ex)
	if job.ID != running {
		t.Fatalf("dequeued job %d, want %d", job.ID, running)
	}
	code := 0
	ms := 2140
	entries := []protocol.ExecutionLogEntry{
		{Key: "setup.git.fetch", Command: []string{"git", "-C", "repository", "fetch", "--depth=1", "origin", "4f2a9c1e0b7d"}, StartTime: now.Add(-40 * time.Second), ExitCode: &code, DurationMs: &ms,
			Out: "stderr: From http://127.0.0.1:3080/.executors/git/github.com/acme/widgets\nstderr:  * branch            4f2a9c1e0b7d -> FETCH_HEAD\n"},
		{Key: "step.docker.test", Command: []string{"docker", "run", "--rm", "golang:1.22", "sh", "-c", "go test ./..."}, StartTime: now.Add(-35 * time.Second),
			Out: "stdout: ok  \tgithub.com/acme/widgets/internal/parse\t0.412s\nstdout: ok  \tgithub.com/acme/widgets/internal/render\t1.087s\nstdout: === RUN   TestServer_Routes\nstdout: --- PASS: TestServer_Routes (0.02s)\nstdout: === RUN   TestServer_Shutdown\n"},
	}
	for _, en := range entries {
		if _, err := ex.AddLogEntry(bg, job, en); err != nil {
			t.Fatal(err)
		}
	}
	if err := heartbeat(bg, ex, job); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := st.Enqueue(bg, "batches", spec(i), 3, now.Add(-time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Enqueue(bg, "codeintel", spec(1), 3, now); err != nil {
		t.Fatal(err)
	}
	return running
}
