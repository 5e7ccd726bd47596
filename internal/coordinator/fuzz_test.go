package coordinator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
)

// fuzzRoutes are the routes that decode a JSON body, with the type each
// decodes into.
var fuzzRoutes = []struct {
	path   string
	header map[string]string
	target func() any
}{
	{"/.executors/queue/batches/dequeue", execAuth(), func() any { return new(protocol.DequeueRequest) }},
	{"/.executors/queue/dequeue", execAuth(), func() any { return new(protocol.DequeueRequest) }},
	{"/.executors/queue/batches/heartbeat", execAuth(), func() any { return new(protocol.HeartbeatRequest) }},
	{"/.executors/queue/heartbeat", execAuth(), func() any { return new(protocol.HeartbeatRequest) }},
	{"/.executors/queue/batches/addExecutionLogEntry", execAuth(), func() any { return new(protocol.AddExecutionLogEntryRequest) }},
	{"/.executors/queue/batches/updateExecutionLogEntry", execAuth(), func() any { return new(protocol.UpdateExecutionLogEntryRequest) }},
	{"/.executors/queue/batches/markComplete", execAuth(), func() any { return new(protocol.MarkCompleteRequest) }},
	{"/.executors/queue/batches/markErrored", execAuth(), func() any { return new(protocol.MarkErroredRequest) }},
	{"/.executors/queue/batches/markFailed", execAuth(), func() any { return new(protocol.MarkErroredRequest) }},
	{"/api/queues/batches/jobs", map[string]string{"Authorization": "token " + apiToken}, func() any { return new(jobsapi.SubmitRequest) }},
}

// FuzzRoutes sends arbitrary bodies to every route that decodes JSON: no
// panic, a body that does not decode is a 400, and a 500 (the protocol's
// answer to a well-formed request the handler refuses, such as an empty
// executorName) always carries {"error": ...}.
func FuzzRoutes(f *testing.F) {
	seeds := []string{
		`{"executorName": "ex", "version": "5.0.0", "queues": ["batches"]}`,
		`{"version": "V2", "executorName": "ex", "jobIds": [1, "2"], "queueNames": ["batches"], "jobIdsByQueue": [{"queueName": "batches", "jobIds": ["1"]}]}`,
		`{"executorName": "ex", "jobId": 1, "entryId": 1, "key": "k", "command": ["a"], "startTime": "2024-01-01T00:00:00Z", "exitCode": 1, "out": "x", "durationMs": 3}`,
		`{"executorName": "ex", "jobId": 1, "errorMessage": "boom"}`,
		`{"dockerSteps": [{"image": "alpine", "commands": ["true"]}], "files": {"../x": {}}}`,
		`{"jobIds": [1.5e300]}`, `[]`, `null`, `{`, ``, `"x"`, `{"jobId": "1"}`,
	}
	for i := range fuzzRoutes {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	e := newEnv(f, "")
	f.Cleanup(func() { e.srv.Close(); e.c.Close() })
	handler := e.c.Handler()
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(http.MethodPost, r.path, strings.NewReader(string(body)))
		for k, v := range r.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		decodeErr := json.Unmarshal(body, r.target())
		if trimmed := bytes.TrimSpace(body); decodeErr == nil && !bytes.HasPrefix(trimmed, []byte("{")) {
			decodeErr = errors.New("not a JSON object")
		}
		code := rec.Code
		if decodeErr != nil && code != http.StatusBadRequest {
			t.Fatalf("POST %s %q: body does not decode (%v) but got %d %q, want 400", r.path, body, decodeErr, code, rec.Body.String())
		}
		if code == http.StatusInternalServerError {
			var m map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["error"] == "" {
				t.Fatalf("POST %s %q: 500 without an error body: %q", r.path, body, rec.Body.String())
			}
			if strings.Contains(m["error"], "database") || strings.Contains(m["error"], "SQL") {
				t.Fatalf("POST %s %q: 500 from the database: %s", r.path, body, m["error"])
			}
		}
		if code >= 500 && code != http.StatusInternalServerError {
			t.Fatalf("POST %s %q: %d", r.path, body, code)
		}

	})
}
