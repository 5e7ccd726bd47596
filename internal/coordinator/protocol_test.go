package coordinator_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/execd/execd/internal/store/postgres/pgtest"
)

const spec = `{
  "repositoryName": "github.com/sourcegraph/demo",
  "commit": "deadbeef",
  "files": {"script.sh": {"content": "` + "ZWNobyBoaQ==" + `"}},
  "dockerSteps": [{"key": "build", "image": "alpine:3", "commands": ["echo hi"], "dir": ".", "env": ["A=1"]}],
  "redactedValues": {"s3cr3t": "******"}
}`

func TestAuth_ExecutorSecret(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		tests := []struct {
			name   string
			header map[string]string
			want   int
		}{
			{"no header", nil, http.StatusUnauthorized},
			{"wrong secret", map[string]string{"Authorization": "token-executor wrong-secret-0123456789"}, http.StatusUnauthorized},
			{"wrong scheme", map[string]string{"Authorization": "Bearer " + execSecret}, http.StatusUnauthorized},
			{"malformed", map[string]string{"Authorization": "token-executor"}, http.StatusUnauthorized},
			{"right secret", execAuth(), http.StatusOK},
		}
		for _, tt := range tests {
			code, body := e.call("GET", "/.executors/test/auth", tt.header, "")
			if code != tt.want {
				t.Errorf("%s: GET /test/auth = %d %q, want %d", tt.name, code, body, tt.want)
			}
			if tt.want == http.StatusOK && body != "ok" {
				t.Errorf("%s: body %q, want ok", tt.name, body)
			}
		}
	})
}

func TestAuth_NotConfigured(t *testing.T) {
	e := newEnvConfig(t, "", `{"api.accessToken": "`+apiToken+`"}`)
	code, body := e.call("GET", "/.executors/test/auth", execAuth(), "")
	if code != http.StatusInternalServerError || !strings.Contains(body, "not configured") {
		t.Errorf("GET /test/auth without executors.accessToken = %d %q, want 500 saying executors are not configured", code, body)
	}
}

func TestDequeue_PayloadVersions(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		if code, body := e.call("POST", "/.executors/queue/batches/dequeue", execAuth(), `{"executorName": "ex-1", "version": "5.0.0"}`); code != http.StatusNoContent {
			t.Fatalf("dequeue from empty queue = %d %q, want 204", code, body)
		}
		e.submit("batches", spec)
		e.submit("batches", spec)

		v1 := e.dequeue("batches", "ex-old", "4.2.0")
		if _, ok := v1["version"]; ok {
			t.Errorf("v1 payload has a version field: %v", v1)
		}
		if got := v1["files"].(map[string]any)["script.sh"].(map[string]any)["content"]; got != "echo hi" {
			t.Errorf("v1 file content = %v, want the plain string %q", got, "echo hi")
		}
		if _, ok := v1["queue"]; ok {
			t.Errorf("single-queue payload names the queue: %v", v1)
		}

		v2 := e.dequeue("batches", "ex-new", "5.1.0")
		if v2["version"] != float64(2) {
			t.Errorf("version = %v, want 2 for executor 5.1.0", v2["version"])
		}
		if got := v2["files"].(map[string]any)["script.sh"].(map[string]any)["content"]; got != base64.StdEncoding.EncodeToString([]byte("echo hi")) {
			t.Errorf("v2 file content = %v, want base64", got)
		}
		tok := v2["token"].(string)
		if len(tok) != 40 || tok == v1["token"] {
			t.Errorf("token %q: want 40 hex characters, distinct per job", tok)
		}
		step := v2["dockerSteps"].([]any)[0].(map[string]any)
		if step["image"] != "alpine:3" || step["key"] != "build" || step["dir"] != "." {
			t.Errorf("docker step = %v", step)
		}
		for _, k := range []string{"id", "repositoryName", "repositoryDirectory", "commit", "fetchTags", "shallowClone", "sparseCheckout", "cliSteps", "redactedValues", "dockerAuthConfig"} {
			if _, ok := v2[k]; !ok {
				t.Errorf("v2 payload lacks key %q: %v", k, v2)
			}
		}
		if st := e.jobState("batches", int(v2["id"].(float64))); st["state"] != "processing" || st["workerHostname"] != "ex-new" {
			t.Errorf("after dequeue: state %v, worker %v; want processing by ex-new", st["state"], st["workerHostname"])
		}
	})
}

// TestDequeue_BadRequests: what a client got wrong is a 400 naming it; 500
// is for the coordinator's own faults.
func TestDequeue_BadRequests(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		tests := []struct {
			name, path, body string
			want             int
			wantBody         string
		}{
			{"malformed json", "/.executors/queue/batches/dequeue", `{"executorName": `, 400, ""},
			{"wrong type", "/.executors/queue/batches/dequeue", `{"executorName": 7}`, 400, ""},
			{"null", "/.executors/queue/batches/dequeue", `null`, 400, "JSON object"},
			{"multi null", "/.executors/queue/dequeue", ` null `, 400, "JSON object"},
			{"heartbeat null", "/.executors/queue/batches/heartbeat", `null`, 400, "JSON object"},
			{"empty body", "/.executors/queue/batches/dequeue", ``, 400, "JSON object"},
			{"array", "/.executors/queue/batches/dequeue", `[]`, 400, ""},
			{"empty executor name", "/.executors/queue/batches/dequeue", `{"executorName": ""}`, 400, `{"error":"worker hostname cannot be empty"}`},
			{"heartbeat empty executor name", "/.executors/queue/batches/heartbeat", `{}`, 400, `worker hostname cannot be empty`},
			{"heartbeat bad job id", "/.executors/queue/batches/heartbeat", `{"executorName": "x", "jobIds": ["one"]}`, 400, `one`},
			{"multi heartbeat no queues", "/.executors/queue/heartbeat", `{"executorName": "x"}`, 400, `queueNames`},
			{"unknown queue", "/.executors/queue/nope/dequeue", `{"executorName": "x"}`, 400, `nope`},
			{"multi unknown queue", "/.executors/queue/dequeue", `{"executorName": "x", "queues": ["batches", "nope"]}`, 400, `nope`},
			{"multi no queues", "/.executors/queue/dequeue", `{"executorName": "x"}`, 204, ""},
			{"bad wait", "/.executors/queue/batches/dequeue?wait=soon", `{"executorName": "x"}`, 400, "wait"},
		}
		for _, tt := range tests {
			code, body := e.call("POST", tt.path, execAuth(), tt.body)
			if code != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s: POST %s %s = %d %q, want %d containing %q", tt.name, tt.path, tt.body, code, body, tt.want, tt.wantBody)
			}
		}
	})
}

func TestJobRoutes_Lifecycle(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		id := e.submit("batches", spec)
		job := e.dequeue("batches", "ex-1", "5.0.0")
		tok := job["token"].(string)
		auth := jobAuth(tok, id, "ex-1")

		code, body := e.call("POST", "/.executors/queue/batches/addExecutionLogEntry", auth,
			fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d, "key": "step.docker.build", "command": ["echo", "hi"], "startTime": "2024-01-02T03:04:05Z"}`, id))
		if code != http.StatusOK || strings.TrimSpace(body) != "1" {
			t.Fatalf("addExecutionLogEntry = %d %q, want 200 with entry id 1", code, body)
		}
		code, body = e.call("POST", "/.executors/queue/batches/updateExecutionLogEntry", auth,
			fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d, "entryId": 1, "key": "step.docker.build", "command": ["echo", "hi"], "startTime": "2024-01-02T03:04:05Z", "exitCode": 0, "out": "stdout: hi\n", "durationMs": 12}`, id))
		if code != http.StatusNoContent {
			t.Fatalf("updateExecutionLogEntry = %d %q, want 204", code, body)
		}
		code, body = e.call("POST", "/.executors/queue/batches/updateExecutionLogEntry", auth,
			fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d, "entryId": 7, "key": "x", "command": [], "startTime": "2024-01-02T03:04:05Z"}`, id))
		if code != http.StatusNotFound {
			t.Errorf("update of a missing entry = %d %q, want 404", code, body)
		}

		// Heartbeats: ids as strings (V2) and as ints (old executors).
		for _, ids := range []string{fmt.Sprintf(`["%d", "999"]`, id), fmt.Sprintf(`[%d, 999]`, id)} {
			code, body = e.call("POST", "/.executors/queue/batches/heartbeat", execAuth(),
				fmt.Sprintf(`{"version": "V2", "executorName": "ex-1", "jobIds": %s, "os": "linux", "architecture": "amd64", "executorVersion": "5.0.0", "gitVersion": "2.39", "dockerVersion": "20.10", "igniteVersion": "", "srcCliVersion": "5.0", "prometheusMetrics": ""}`, ids))
			if code != http.StatusOK || compact(body) != fmt.Sprintf(`{"knownIds":["%d"],"cancelIds":[]}`, id) {
				t.Errorf("heartbeat with jobIds %s = %d %s, want knownIds [%d] and no cancels", ids, code, body, id)
			}
		}

		code, body = e.call("POST", "/.executors/queue/batches/markComplete", auth, fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d}`, id))
		if code != http.StatusNoContent {
			t.Fatalf("markComplete = %d %q, want 204", code, body)
		}
		st := e.jobState("batches", id)
		if st["state"] != "completed" {
			t.Errorf("state = %v, want completed", st["state"])
		}
		logs := st["executionLogs"].([]any)
		if len(logs) != 1 || logs[0].(map[string]any)["out"] != "stdout: hi\n" || logs[0].(map[string]any)["exitCode"] != float64(0) {
			t.Errorf("executionLogs = %v, want the one updated entry", logs)
		}
		// The token died with the job.
		code, _ = e.call("POST", "/.executors/queue/batches/markComplete", auth, fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d}`, id))
		if code != http.StatusUnauthorized {
			t.Errorf("markComplete with the token of a finished job = %d, want 401", code)
		}
		// The shared secret still works on job routes, and a finished job is 404.
		code, _ = e.call("POST", "/.executors/queue/batches/markComplete", execAuth(), fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d}`, id))
		if code != http.StatusNotFound {
			t.Errorf("markComplete of a completed job (shared secret) = %d, want 404", code)
		}
	})
}

func TestJobRoutes_TokenScope(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		a := e.submit("batches", spec)
		b := e.submit("batches", spec)
		jobA := e.dequeue("batches", "ex-a", "5.0.0")
		jobB := e.dequeue("batches", "ex-b", "5.0.0")
		tokA, tokB := jobA["token"].(string), jobB["token"].(string)
		body := func(id int, executor string) string {
			return fmt.Sprintf(`{"executorName": %q, "jobId": %d, "key": "k", "command": [], "startTime": "2024-01-02T03:04:05Z"}`, executor, id)
		}
		tests := []struct {
			name   string
			path   string
			header map[string]string
			body   string
			want   int
		}{
			{"token of another job", "batches", jobAuth(tokA, b, "ex-b"), body(b, "ex-b"), http.StatusForbidden},
			{"token of the job, body names another", "batches", jobAuth(tokA, a, "ex-a"), body(b, "ex-a"), http.StatusForbidden},
			{"wrong queue", "codeintel", jobAuth(tokA, a, "ex-a"), body(a, "ex-a"), http.StatusForbidden},
			{"unknown token", "batches", jobAuth("0000000000000000000000000000000000000000", a, "ex-a"), body(a, "ex-a"), http.StatusUnauthorized},
			{"no job id header", "batches", map[string]string{"Authorization": "Bearer " + tokA, "X-Sourcegraph-Executor-Name": "ex-a"}, body(a, "ex-a"), http.StatusBadRequest},
			{"no executor header", "batches", map[string]string{"Authorization": "Bearer " + tokA, "X-Sourcegraph-Job-ID": fmt.Sprint(a)}, body(a, "ex-a"), http.StatusBadRequest},
			{"unknown executor", "batches", jobAuth(tokA, a, "ghost"), body(a, "ghost"), http.StatusForbidden},
			{"wrong shared secret", "batches", map[string]string{"Authorization": "token-executor nope-nope-nope-nope-nope"}, body(a, "ex-a"), http.StatusForbidden},
			{"other executor owns it", "batches", map[string]string{"Authorization": "token-executor " + execSecret}, body(a, "ex-b"), http.StatusNotFound},
			{"right token", "batches", jobAuth(tokB, b, "ex-b"), body(b, "ex-b"), http.StatusOK},
		}
		for _, tt := range tests {
			code, resp := e.call("POST", "/.executors/queue/"+tt.path+"/addExecutionLogEntry", tt.header, tt.body)
			if code != tt.want {
				t.Errorf("%s: addExecutionLogEntry = %d %q, want %d", tt.name, code, resp, tt.want)
			}
		}
	})
}

func TestMarkErrored_RetriesThenFails(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db) // batches: maxAttempts 2, retryDelay 1ms
		id := e.submit("batches", spec)
		for attempt, want := range []string{"errored", "failed"} {
			job := e.dequeue("batches", "ex-1", "5.0.0")
			if int(job["id"].(float64)) != id {
				t.Fatalf("attempt %d dequeued job %v, want %d", attempt, job["id"], id)
			}
			code, body := e.call("POST", "/.executors/queue/batches/markErrored", jobAuth(job["token"].(string), id, "ex-1"),
				fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d, "errorMessage": "step 1 failed"}`, id))
			if code != http.StatusNoContent {
				t.Fatalf("markErrored = %d %q", code, body)
			}
			st := e.jobState("batches", id)
			if st["state"] != want || st["failureMessage"] != "step 1 failed" || st["numFailures"] != float64(attempt+1) {
				t.Errorf("after attempt %d: state %v, message %v, failures %v; want %s, step 1 failed, %d", attempt+1, st["state"], st["failureMessage"], st["numFailures"], want, attempt+1)
			}
			time.Sleep(5 * time.Millisecond) // past the retry delay
		}
		if code, _ := e.call("POST", "/.executors/queue/batches/dequeue", execAuth(), `{"executorName": "ex-1"}`); code != http.StatusNoContent {
			t.Errorf("dequeue after the job failed = %d, want 204", code)
		}
	})
}

func TestCancel_ThroughHeartbeat(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		id := e.submit("batches", spec)
		job := e.dequeue("batches", "ex-1", "5.0.0")
		code, body := e.call("POST", fmt.Sprintf("/api/queues/batches/jobs/%d/cancel", id), map[string]string{"Authorization": "token " + apiToken}, "")
		if code != http.StatusOK || !strings.Contains(body, `"cancelRequested":true`) {
			t.Fatalf("cancel = %d %s", code, body)
		}
		code, body = e.call("POST", "/.executors/queue/batches/heartbeat", execAuth(), fmt.Sprintf(`{"version": "V2", "executorName": "ex-1", "jobIds": ["%d"]}`, id))
		if code != http.StatusOK || compact(body) != fmt.Sprintf(`{"knownIds":["%d"],"cancelIds":["%d"]}`, id, id) {
			t.Fatalf("heartbeat after cancel = %d %s, want the job in cancelIds", code, body)
		}
		code, _ = e.call("POST", "/.executors/queue/batches/markFailed", jobAuth(job["token"].(string), id, "ex-1"), fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d, "errorMessage": "canceled"}`, id))
		if code != http.StatusNoContent {
			t.Fatalf("markFailed = %d", code)
		}
		if st := e.jobState("batches", id); st["state"] != "canceled" {
			t.Errorf("state = %v, want canceled", st["state"])
		}
		// A queued job is canceled at once.
		id2 := e.submit("batches", spec)
		e.call("POST", fmt.Sprintf("/api/queues/batches/jobs/%d/cancel", id2), map[string]string{"Authorization": "token " + apiToken}, "")
		if st := e.jobState("batches", id2); st["state"] != "canceled" {
			t.Errorf("queued job after cancel: state %v, want canceled", st["state"])
		}
		// Retry brings it back.
		code, body = e.call("POST", fmt.Sprintf("/api/queues/batches/jobs/%d/retry", id2), map[string]string{"Authorization": "token " + apiToken}, "")
		if code != http.StatusOK || !strings.Contains(body, `"state":"queued"`) {
			t.Errorf("retry = %d %s, want 200 and queued", code, body)
		}
		code, body = e.call("POST", fmt.Sprintf("/api/queues/batches/jobs/%d/retry", id2), map[string]string{"Authorization": "token " + apiToken}, "")
		if code != http.StatusConflict {
			t.Errorf("retry of a queued job = %d %s, want 409", code, body)
		}
	})
}

// TestCancel_WaitingHeartbeat: a heartbeat that asks to wait (our
// extension) returns as soon as one of its jobs is canceled, on any
// coordinator sharing the database; without a cancellation, when the wait
// is over.
func TestCancel_WaitingHeartbeat(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		other := e // where the cancel goes: another coordinator on postgres
		if db != "" {
			other = newEnv(t, db)
		}
		id := e.submit("batches", spec)
		e.dequeue("batches", "ex-1", "5.0.0")
		heartbeat := func(wait, jobs string) (int, string) {
			return e.call("POST", "/.executors/queue/batches/heartbeat", map[string]string{"Authorization": "token-executor " + execSecret, "X-Executor-Wait": wait},
				fmt.Sprintf(`{"version": "V2", "executorName": "ex-1", "jobIds": [%s]}`, jobs))
		}
		jobs := fmt.Sprintf(`"%d"`, id)
		if code, body := heartbeat("200ms", jobs); code != http.StatusOK || compact(body) != fmt.Sprintf(`{"knownIds":["%d"],"cancelIds":[]}`, id) {
			t.Fatalf("waiting heartbeat without a cancel = %d %s, want the job known, nothing canceled", code, body)
		}
		if code, body := heartbeat("soon", jobs); code != http.StatusBadRequest || !strings.Contains(body, "X-Executor-Wait") {
			t.Errorf("heartbeat with a bad wait = %d %s, want 400 naming the header", code, body)
		}
		type answer struct {
			code int
			body string
		}
		answered := make(chan answer, 1)
		go func() {
			code, body := heartbeat("60s", jobs)
			answered <- answer{code, body}
		}()
		// Canceled while the heartbeat waits (or just before it does: it
		// then answers at once).
		time.Sleep(100 * time.Millisecond)
		code, body := other.call("POST", fmt.Sprintf("/api/queues/batches/jobs/%d/cancel", id), map[string]string{"Authorization": "token " + apiToken}, "")
		if code != http.StatusOK {
			t.Fatalf("cancel = %d %s", code, body)
		}
		select {
		case a := <-answered:
			if a.code != http.StatusOK || compact(a.body) != fmt.Sprintf(`{"knownIds":["%d"],"cancelIds":["%d"]}`, id, id) {
				t.Errorf("waiting heartbeat after cancel = %d %s, want the job in cancelIds", a.code, a.body)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the waiting heartbeat did not answer the cancellation (it waits 60s)")
		}
	})
}

func TestMultiQueue_DequeueAndHeartbeat(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		b := e.submit("batches", spec)
		c := e.submit("codeintel", spec)
		got := map[string]int{}
		tokens := map[string]string{}
		for range 2 {
			code, body := e.call("POST", "/.executors/queue/dequeue", execAuth(), `{"executorName": "ex-m", "version": "5.2.0", "queues": ["batches", "codeintel"]}`)
			if code != http.StatusOK {
				t.Fatalf("multi dequeue = %d %s", code, body)
			}
			j := decodeMap(t, body)
			got[j["queue"].(string)] = int(j["id"].(float64))
			tokens[j["queue"].(string)] = j["token"].(string)
		}
		if got["batches"] != b || got["codeintel"] != c {
			t.Fatalf("multi dequeue got %v, want batches %d and codeintel %d", got, b, c)
		}
		code, body := e.call("POST", "/.executors/queue/heartbeat", execAuth(), fmt.Sprintf(
			`{"version": "V2", "executorName": "ex-m", "queueNames": ["batches", "codeintel"], "jobIdsByQueue": [{"queueName": "batches", "jobIds": ["%d"]}, {"queueName": "codeintel", "jobIds": ["%d", "12345"]}]}`, b, c))
		want := fmt.Sprintf(`{"knownIds":["%d-batches","%d-codeintel"],"cancelIds":[]}`, b, c)
		if code != http.StatusOK || compact(body) != want {
			t.Errorf("multi heartbeat = %d %s, want %s", code, body, want)
		}
		code, body = e.call("POST", "/.executors/queue/heartbeat", execAuth(), `{"version": "V2", "executorName": "ex-m", "queueNames": ["batches"], "jobIdsByQueue": [{"queueName": "codeintel", "jobIds": []}]}`)
		if code != http.StatusBadRequest || !strings.Contains(body, "codeintel") {
			t.Errorf("heartbeat naming a queue outside queueNames = %d %s, want 400 naming it", code, body)
		}
		code, _ = e.call("POST", "/.executors/queue/codeintel/markComplete", jobAuth(tokens["codeintel"], c, "ex-m"), fmt.Sprintf(`{"executorName": "ex-m", "jobId": %d}`, c))
		if code != http.StatusNoContent {
			t.Errorf("markComplete of the codeintel job = %d, want 204", code)
		}
	})
}

func TestLongPoll_WokenByEnqueue(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		type result struct {
			code int
			body string
		}
		done := make(chan result, 1)
		go func() {
			code, body := e.call("POST", "/.executors/queue/batches/dequeue", map[string]string{"Authorization": "token-executor " + execSecret, "X-Executor-Wait": "20s"}, `{"executorName": "ex-lp", "version": "5.0.0"}`)
			done <- result{code, body}
		}()
		time.Sleep(200 * time.Millisecond)
		select {
		case r := <-done:
			t.Fatalf("long-poll returned before any job: %d %s", r.code, r.body)
		default:
		}
		id := e.submit("batches", spec)
		select {
		case r := <-done:
			if r.code != http.StatusOK || !strings.Contains(r.body, fmt.Sprintf(`"id":%d`, id)) {
				t.Fatalf("long-poll = %d %s, want job %d", r.code, r.body, id)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("long-poll not woken by the enqueue")
		}
		// A short wait on an empty queue ends with 204.
		code, _ := e.call("POST", "/.executors/queue/batches/dequeue?wait=100ms", execAuth(), `{"executorName": "ex-lp"}`)
		if code != http.StatusNoContent {
			t.Errorf("long-poll on an empty queue = %d, want 204 after the wait", code)
		}
	})
}

func TestResetter_RequeuesStalledJobs(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db) // batches: stalledAge 1s, maxResets 1
		id := e.submit("batches", spec)
		e.dequeue("batches", "ex-dead", "5.0.0")
		time.Sleep(1100 * time.Millisecond)
		e.c.ResetStalled(t.Context())
		st := e.jobState("batches", id)
		if st["state"] != "queued" || st["numResets"] != float64(1) {
			t.Fatalf("after stall: state %v resets %v, want queued 1", st["state"], st["numResets"])
		}
		e.dequeue("batches", "ex-dead", "5.0.0")
		time.Sleep(1100 * time.Millisecond)
		e.c.ResetStalled(t.Context())
		if st := e.jobState("batches", id); st["state"] != "failed" || !strings.Contains(st["failureMessage"].(string), "stalled") {
			t.Errorf("after a second stall: state %v (%v), want failed for stalling", st["state"], st["failureMessage"])
		}
	})
}

func TestSubmissionAPI_Errors(t *testing.T) {
	e := newEnv(t, "")
	auth := map[string]string{"Authorization": "token " + apiToken}
	tests := []struct {
		name, method, path string
		header             map[string]string
		body               string
		want               int
		wantBody           string
	}{
		{"no token", "POST", "/api/queues/batches/jobs", nil, spec, 401, "api.accessToken"},
		{"wrong token", "POST", "/api/queues/batches/jobs", map[string]string{"Authorization": "token nope-nope-nope-nope-nope"}, spec, 401, ""},
		{"unknown queue", "POST", "/api/queues/nope/jobs", auth, spec, 400, `\"nope\" is not configured`},
		{"no steps", "POST", "/api/queues/batches/jobs", auth, `{}`, 400, "dockerSteps, cliSteps"},
		{"unknown field", "POST", "/api/queues/batches/jobs", auth, `{"dockerStep": []}`, 400, `dockerStep`},
		{"bad file path", "POST", "/api/queues/batches/jobs", auth, `{"cliSteps": [{"command": ["x"]}], "files": {"../../etc/x": {}}}`, 400, `files[\"../../etc/x\"]`},
		{"trailing data", "POST", "/api/queues/batches/jobs", auth, `{"cliSteps": [{"command": ["x"]}]} {}`, 400, "unexpected data"},
		{"missing job", "GET", "/api/queues/batches/jobs/999", auth, "", 404, "999"},
		{"bad id", "GET", "/api/queues/batches/jobs/x", auth, "", 400, "positive integer"},
		{"bad state filter", "GET", "/api/queues/batches/jobs?state=done", auth, "", 400, "queued"},
		{"cancel missing", "POST", "/api/queues/batches/jobs/999/cancel", auth, "", 404, ""},
	}
	for _, tt := range tests {
		code, body := e.call(tt.method, tt.path, tt.header, tt.body)
		if code != tt.want || !strings.Contains(body, tt.wantBody) || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s: %s %s = %d %s, want %d with an error containing %q", tt.name, tt.method, tt.path, code, body, tt.want, tt.wantBody)
		}
	}
}

func TestExecutorsAndMetrics(t *testing.T) {
	e := newEnv(t, "")
	e.submit("batches", spec)
	e.submit("batches", spec)
	e.dequeue("batches", "ex-metrics", "5.0.0")
	e.call("POST", "/.executors/queue/batches/heartbeat", execAuth(), `{"version": "V2", "executorName": "ex-metrics", "jobIds": [], "os": "linux", "architecture": "amd64", "executorVersion": "5.0.0", "runtime": "gvisor"}`)

	code, body := e.call("GET", "/api/executors", map[string]string{"Authorization": "token " + apiToken}, "")
	if code != http.StatusOK || !strings.Contains(body, `"name":"ex-metrics"`) || !strings.Contains(body, `"active":true`) || !strings.Contains(body, `"os":"linux"`) || !strings.Contains(body, `"runtime":"gvisor"`) {
		t.Errorf("GET /api/executors = %d %s, want ex-metrics active on linux", code, body)
	}
	code, body = e.call("GET", "/metrics", nil, "")
	for _, want := range []string{
		`src_executors_queue_size{queue="batches"} 2`,
		`execd_jobs{queue="batches",state="processing"} 1`,
		`execd_jobs{queue="batches",state="queued"} 1`,
		`execd_executors_active 1`,
		`execd_http_requests_total{code="200",route="POST /.executors/queue/{queue}/dequeue"} 1`,
		`execd_http_request_duration_seconds_count{code="201",route="POST /api/queues/{queue}/jobs"} 2`,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
	if code, body := e.call("GET", "/healthz", nil, ""); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q", code, body)
	}
}

func TestSiteConfig_ReloadedWhileRunning(t *testing.T) {
	e := newEnv(t, "")
	newSecret := "a-brand-new-secret-0123456789"
	if err := os.WriteFile(e.cfgFn, []byte(fmt.Sprintf(baseConfig, newSecret, apiToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	if !e.c.Config().Reload() {
		t.Fatal("a good edit was not reloaded")
	}
	if code, _ := e.call("GET", "/.executors/test/auth", map[string]string{"Authorization": "token-executor " + newSecret}, ""); code != http.StatusOK {
		t.Errorf("new secret after reload: %d, want 200", code)
	}
	if code, _ := e.call("GET", "/.executors/test/auth", execAuth(), ""); code != http.StatusUnauthorized {
		t.Errorf("old secret after reload: %d, want 401", code)
	}
	os.WriteFile(e.cfgFn, []byte(`{"executors.accessToken": "short"}`), 0o600)
	if e.c.Config().Reload() {
		t.Error("a bad edit was reloaded")
	}
	if code, _ := e.call("GET", "/.executors/test/auth", map[string]string{"Authorization": "token-executor " + newSecret}, ""); code != http.StatusOK {
		t.Errorf("after a refused edit the config in force changed: %d", code)
	}
}

func TestSubmissionAPI_MasksSecrets(t *testing.T) {
	e := newEnv(t, "")
	id := e.submit("batches", `{"dockerSteps": [{"image": "a", "commands": ["x"]}], "redactedValues": {"hunter2-secret-value": "***"},
		"dockerAuthConfig": {"auths": {"registry.example.com": {"auth": "dXNlcjpzM2NyM3Q="}}}}`)
	_, body := e.call("GET", fmt.Sprintf("/api/queues/batches/jobs/%d", id), map[string]string{"Authorization": "token " + apiToken}, "")
	if strings.Contains(body, "hunter2-secret-value") || strings.Contains(body, "dXNlcjpzM2NyM3Q=") {
		t.Errorf("GET job shows a secret: %s", body)
	}
	// The executor still gets them.
	job := e.dequeue("batches", "ex-1", "5.0.0")
	if _, ok := job["redactedValues"].(map[string]any)["hunter2-secret-value"]; !ok {
		t.Errorf("the dequeued job lacks the secret to redact: %v", job["redactedValues"])
	}
}

func TestScipUpload(t *testing.T) {
	e := newEnv(t, "")
	if code, _ := e.call("HEAD", "/.executors/scip/upload", execAuth(), ""); code != http.StatusOK {
		t.Errorf("HEAD /scip/upload = %d, want 200", code)
	}
	if code, _ := e.call("POST", "/.executors/scip/upload", nil, "index"); code != http.StatusUnauthorized {
		t.Errorf("POST /scip/upload without the secret = %d, want 401", code)
	}
	code, body := e.call("POST", "/.executors/scip/upload?repository=r&commit=c", execAuth(), "the index bytes")
	if code != http.StatusOK {
		t.Fatalf("POST /scip/upload = %d %s", code, body)
	}
	key := decodeMap(t, body)["id"].(string)
	code, body = e.call("GET", "/api/files/scip-uploads/"+key, map[string]string{"Authorization": "token " + apiToken}, "")
	if code != http.StatusOK || body != "the index bytes" {
		t.Errorf("GET the upload = %d %q", code, body)
	}
}

func TestAppendLogEntry(t *testing.T) {
	pgtest.Databases(t, func(t *testing.T, db string) {
		e := newEnv(t, db)
		id := e.submit("batches", spec)
		job := e.dequeue("batches", "ex-1", "5.0.0")
		auth := jobAuth(job["token"].(string), id, "ex-1")
		code, body := e.call("POST", "/.executors/queue/batches/addExecutionLogEntry", auth,
			fmt.Sprintf(`{"executorName": "ex-1", "jobId": %d, "key": "step.0", "command": ["spew"], "startTime": "2024-01-02T03:04:05Z", "out": "stdout: a\n"}`, id))
		if code != http.StatusOK {
			t.Fatalf("addExecutionLogEntry = %d %q", code, body)
		}
		appendPath := func(query string) string {
			return "/.executors/queue/batches/appendExecutionLogEntry?executorName=ex-1&jobId=" + fmt.Sprint(id) + query
		}
		tests := []struct {
			name     string
			query    string
			body     string
			want     int
			wantBody string
		}{
			{"append at the stored length", "&entryId=1&offset=10", "stdout: \"ö\"\n", http.StatusOK, `{"length":23}`},
			{"the same append again", "&entryId=1&offset=10", "stdout: \"ö\"\n", http.StatusConflict, `{"length":23}`},
			{"offset past the end", "&entryId=1&offset=99", "x", http.StatusConflict, `{"length":23}`},
			{"not UTF-8", "&entryId=1&offset=23", "\xff\n", http.StatusBadRequest, "not valid UTF-8"},
			{"no offset", "&entryId=1", "x", http.StatusBadRequest, "offset is missing"},
			{"bad offset", "&entryId=1&offset=-1", "x", http.StatusBadRequest, `offset is "-1"`},
			{"bad exit code", "&entryId=1&offset=23&exitCode=x", "", http.StatusBadRequest, `exitCode is "x"`},
			{"missing entry", "&entryId=9&offset=0", "x", http.StatusNotFound, "unknown job"},
			{"finish with the last output", "&entryId=1&offset=23&exitCode=-1&durationMs=7", "stdout: z\n", http.StatusOK, `{"length":33}`},
		}
		for _, tt := range tests {
			code, body := e.call("POST", appendPath(tt.query), auth, tt.body)
			if code != tt.want || !strings.Contains(compact(body), tt.wantBody) {
				t.Errorf("%s: appendExecutionLogEntry = %d %q, want %d with %q", tt.name, code, body, tt.want, tt.wantBody)
			}
		}
		other := "/.executors/queue/batches/appendExecutionLogEntry?executorName=ex-1&jobId=" + fmt.Sprint(id+1) + "&entryId=1&offset=33"
		if code, body := e.call("POST", other, auth, "x"); code != http.StatusForbidden {
			t.Errorf("append naming another job than the token's = %d %q, want 403", code, body)
		}

		st := e.jobState("batches", id)
		logs := st["executionLogs"].([]any)
		entry := logs[0].(map[string]any)
		if len(logs) != 1 || entry["out"] != "stdout: a\nstdout: \"ö\"\nstdout: z\n" || entry["exitCode"] != float64(-1) || entry["durationMs"] != float64(7) {
			t.Errorf("executionLogs = %v, want one entry with the appended output, exit code -1 and duration 7", logs)
		}
		// Pollers may leave the logs out.
		code, body = e.call("GET", fmt.Sprintf("/api/queues/batches/jobs/%d?logs=false", id), map[string]string{"Authorization": "token " + apiToken}, "")
		if code != http.StatusOK || strings.Contains(body, "executionLogs") || !strings.Contains(body, `"state":"processing"`) {
			t.Errorf("GET job ?logs=false = %d %s, want 200 with the state and no executionLogs", code, body)
		}
		code, body = e.call("GET", fmt.Sprintf("/api/queues/batches/jobs/%d?logs=no", id), map[string]string{"Authorization": "token " + apiToken}, "")
		if code != http.StatusBadRequest || !strings.Contains(body, "want true or false") {
			t.Errorf("GET job ?logs=no = %d %s, want 400 naming the values", code, body)
		}
		// The logs route reads part of each output.
		api := map[string]string{"Authorization": "token " + apiToken}
		for _, tt := range []struct {
			query string
			code  int
			want  []string
		}{
			{"", http.StatusOK, []string{`"out":"stdout: a\nstdout: \"ö\"\nstdout: z\n"`, `"outFrom":0,"outLength":33`}},
			{"?from=1:10", http.StatusOK, []string{`"out":"stdout: \"ö\"\nstdout: z\n"`, `"outFrom":10,"outLength":33`}},
			{"?tail=10", http.StatusOK, []string{`"out":"stdout: z\n"`, `"outFrom":23,"outLength":33`}},
			{"?from=1:33", http.StatusOK, []string{`"outFrom":33,"outLength":33`}},
			{"?from=1", http.StatusBadRequest, []string{"ENTRY:OFFSET"}},
			{"?from=1:-4", http.StatusBadRequest, []string{"ENTRY:OFFSET"}},
			{"?tail=0", http.StatusBadRequest, []string{"positive number of bytes"}},
		} {
			code, body := e.call("GET", fmt.Sprintf("/api/queues/batches/jobs/%d/logs%s", id, tt.query), api, "")
			ok := code == tt.code && (code != http.StatusOK || strings.Contains(body, `"state":"processing"`))
			for _, w := range tt.want {
				ok = ok && strings.Contains(compact(body), w)
			}
			if tt.query == "?from=1:33" && strings.Contains(body, `"out"`) {
				ok = false
			}
			if !ok {
				t.Errorf("GET logs%s = %d %s, want %d with %q", tt.query, code, body, tt.code, tt.want)
			}
		}
	})
}
