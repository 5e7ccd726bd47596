package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/store"
)

// jobsPageSize is the number of jobs on one page of a queue's list.
const jobsPageSize = 50

type jobsData struct {
	Queue      string
	Queues     []string
	State      string
	Repository string
	Before     int
	Jobs       []store.Job
	Next       string // URL of the next (older) page, if any
	Newest     string // URL of the first page with the same filters
	Filtered   bool
}

func (s *Server) handleJobsIndex(w http.ResponseWriter, r *http.Request, _ *session) {
	http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(s.config.Current().Queues[0]), http.StatusSeeOther)
}

func (s *Server) handleJobs(w http.ResponseWriter, r *http.Request, sess *session) {
	cfg := s.config.Current()
	q := r.URL.Query()
	data := jobsData{
		Queue:      r.PathValue("queue"),
		Queues:     cfg.Queues,
		State:      q.Get("state"),
		Repository: strings.TrimSpace(q.Get("repository")),
	}
	if !cfg.HasQueue(data.Queue) {
		s.errorPage(w, r, sess, http.StatusNotFound, fmt.Sprintf("Queue %q is not configured; the queues are %s (site config key executors.queues).", data.Queue, strings.Join(cfg.Queues, ", ")))
		return
	}
	if data.State != "" && !slices.Contains(store.States, data.State) {
		data.State = ""
	}
	data.Before, _ = strconv.Atoi(q.Get("before"))
	data.Filtered = data.State != "" || data.Repository != "" || data.Before > 0
	jobs, err := s.store.ListJobs(r.Context(), data.Queue, store.ListOptions{
		State: data.State, RepositoryName: data.Repository, BeforeID: data.Before, Limit: jobsPageSize + 1,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	filters := url.Values{}
	if data.State != "" {
		filters.Set("state", data.State)
	}
	if data.Repository != "" {
		filters.Set("repository", data.Repository)
	}
	base := "/ui/jobs/" + url.PathEscape(data.Queue)
	data.Newest = base
	if len(filters) > 0 {
		data.Newest += "?" + filters.Encode()
	}
	if len(jobs) > jobsPageSize {
		jobs = jobs[:jobsPageSize]
		filters.Set("before", strconv.Itoa(jobs[len(jobs)-1].ID))
		data.Next = base + "?" + filters.Encode()
	}
	data.Jobs = jobs
	s.render(w, r, http.StatusOK, "jobs.html", page{Title: "Jobs in " + data.Queue, Nav: "jobs", CSRF: sess.csrf, Data: data})
}

type jobData struct {
	Job       store.Job
	Entries   []entryView
	Spec      string // indented JSON, secrets masked
	Steps     int
	Live      bool // not finished: the page follows its event stream
	CanCancel bool
	CanRetry  bool
	Blank     entryView // the template of entries the page adds live
}

// entryView is a log entry as the job page shows it.
type entryView struct {
	store.LogEntry
	Open  bool   // expanded: running or failed, or the last entry
	Whole string // the URL of the whole output, when the page shows its end
}

// logTail is how much of each entry's output a job page shows and its
// live stream keeps up with: the end of it, with a link to the rest.
const logTail = 1 << 20

// wholeLogURL is the URL of an entry's whole output.
func wholeLogURL(queue string, id, entry int) string {
	return fmt.Sprintf("/ui/jobs/%s/%d/log/%d", url.PathEscape(queue), id, entry)
}

// messages are the notices a redirect after a form may ask for.
var messages = map[string]string{
	"canceled":         "Job canceled.",
	"cancel-requested": "Cancellation requested: the executor stops the job as soon as it hears of it (at its next heartbeat at the latest).",
	"retried":          "Job queued again.",
}

func (s *Server) jobFromPath(w http.ResponseWriter, r *http.Request, sess *session) (store.Job, bool) {
	queue := r.PathValue("queue")
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id <= 0 {
		s.errorPage(w, r, sess, http.StatusNotFound, fmt.Sprintf("%q is not a job id.", r.PathValue("id")))
		return store.Job{}, false
	}
	job, err := s.store.GetJob(r.Context(), queue, id)
	if errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, sess, http.StatusNotFound, fmt.Sprintf("There is no job %d in queue %q.", id, queue))
		return store.Job{}, false
	}
	if err != nil {
		s.fail(w, r, err)
		return store.Job{}, false
	}
	return job, true
}

func (s *Server) handleJob(w http.ResponseWriter, r *http.Request, sess *session) {
	job, ok := s.jobFromPath(w, r, sess)
	if !ok {
		return
	}
	entries, err := s.store.LogEntries(r.Context(), job.Queue, job.ID, store.LogRange{Tail: logTail})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	masker := newMasker(job.Spec.RedactedValues)
	data := jobData{
		Job:       job,
		Spec:      masker.specJSON(job.Spec),
		Steps:     len(job.Spec.DockerSteps) + len(job.Spec.CliSteps),
		Live:      !finished(job.State),
		CanCancel: canCancel(job),
		CanRetry:  canRetry(job),
		Blank:     entryView{Open: true},
	}
	for i, e := range entries {
		e.Out = masker.mask(e.Out)
		failed := e.ExitCode != nil && *e.ExitCode != 0
		v := entryView{LogEntry: e, Open: e.ExitCode == nil || failed || i == len(entries)-1}
		if e.From > 0 {
			v.Whole = wholeLogURL(job.Queue, job.ID, e.ID)
		}
		data.Entries = append(data.Entries, v)
	}
	p := page{Title: fmt.Sprintf("Job %d · %s", job.ID, job.Queue), Nav: "jobs", CSRF: sess.csrf, Data: data}
	p.Flash = messages[r.URL.Query().Get("done")]
	s.render(w, r, http.StatusOK, "job.html", p)
}

// handleWholeLog answers an entry's whole output as text, masked like the
// job page's.
func (s *Server) handleWholeLog(w http.ResponseWriter, r *http.Request, sess *session) {
	job, ok := s.jobFromPath(w, r, sess)
	if !ok {
		return
	}
	entryID, err := strconv.Atoi(r.PathValue("entry"))
	if err != nil || entryID <= 0 {
		s.errorPage(w, r, sess, http.StatusNotFound, fmt.Sprintf("%q is not a log entry id.", r.PathValue("entry")))
		return
	}
	entries, err := s.store.LogEntries(r.Context(), job.Queue, job.ID, store.LogRange{Only: entryID})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, e := range entries {
		if e.ID == entryID {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, newMasker(job.Spec.RedactedValues).mask(e.Out))
			return
		}
	}
	s.errorPage(w, r, sess, http.StatusNotFound, fmt.Sprintf("Job %d has no log entry %d.", job.ID, entryID))
}

// finished reports whether a job in state will not change by itself.
func finished(state string) bool {
	switch state {
	case store.StateCompleted, store.StateFailed, store.StateCanceled:
		return true
	}
	return false
}

func canCancel(j store.Job) bool {
	switch j.State {
	case store.StateQueued, store.StateErrored:
		return true
	case store.StateProcessing:
		return !j.Cancel
	}
	return false
}

func canRetry(j store.Job) bool {
	switch j.State {
	case store.StateFailed, store.StateErrored, store.StateCanceled:
		return true
	}
	return false
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request, sess *session) {
	job, ok := s.jobFromPath(w, r, sess)
	if !ok {
		return
	}
	err := s.store.Cancel(r.Context(), job.Queue, job.ID, s.now())
	if errors.Is(err, store.ErrInvalidState) {
		s.errorPage(w, r, sess, http.StatusConflict, fmt.Sprintf("Job %d cannot be canceled: it is %s.", job.ID, job.State))
		return
	}
	if err != nil {
		s.fail(w, r, fmt.Errorf("cancel job %d: %w", job.ID, err))
		return
	}
	s.logger.Info("ui: job canceled", "queue", job.Queue, "id", job.ID, "state", job.State)
	done := "canceled"
	if job.State == store.StateProcessing {
		done = "cancel-requested"
	}
	http.Redirect(w, r, jobURL(job)+"?done="+done, http.StatusSeeOther)
}

func (s *Server) handleRetry(w http.ResponseWriter, r *http.Request, sess *session) {
	job, ok := s.jobFromPath(w, r, sess)
	if !ok {
		return
	}
	err := s.store.Retry(r.Context(), job.Queue, job.ID, s.now())
	if errors.Is(err, store.ErrInvalidState) {
		s.errorPage(w, r, sess, http.StatusConflict, fmt.Sprintf("Job %d cannot be retried: it is %s.", job.ID, job.State))
		return
	}
	if err != nil {
		s.fail(w, r, fmt.Errorf("retry job %d: %w", job.ID, err))
		return
	}
	s.logger.Info("ui: job retried", "queue", job.Queue, "id", job.ID)
	http.Redirect(w, r, jobURL(job)+"?done=retried", http.StatusSeeOther)
}

func jobURL(j store.Job) string {
	return fmt.Sprintf("/ui/jobs/%s/%d", url.PathEscape(j.Queue), j.ID)
}

// masker hides a job's secrets (the keys of its redactedValues) wherever
// they appear: in its spec and, should an executor have missed one, in its
// logs.
type masker struct {
	r *strings.Replacer
}

func newMasker(redacted map[string]string) masker {
	var pairs []string
	for secret, replacement := range redacted {
		if secret == "" {
			continue
		}
		pairs = append(pairs, secret, replacement)
		// As it appears inside a JSON string.
		if quoted, err := json.Marshal(secret); err == nil {
			if inner := string(quoted[1 : len(quoted)-1]); inner != secret {
				pairs = append(pairs, inner, replacement)
			}
		}
	}
	if len(pairs) == 0 {
		return masker{}
	}
	return masker{r: strings.NewReplacer(pairs...)}
}

func (m masker) mask(s string) string {
	if m.r == nil {
		return s
	}
	return m.r.Replace(s)
}

// specJSON is the spec as indented JSON with its secrets masked: the
// redactedValues keys and registry credentials by [jobsapi.MaskSecrets],
// then any other occurrence of a secret (in env, commands or files).
func (m masker) specJSON(spec store.Spec) string {
	b, err := json.MarshalIndent(jobsapi.MaskSecrets(spec), "", "  ")
	if err != nil {
		return fmt.Sprintf("(the spec cannot be shown: %v)", err)
	}
	return m.mask(string(b))
}
