package protocol_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/execd/execd/internal/protocol"
)

// FuzzJob: decoding never panics, and a decoded job re-encodes and decodes
// to the same job in its own version.
func FuzzJob(f *testing.F) {
	f.Add([]byte(`{"version": 2, "id": 1, "token": "t", "files": {"a": {"content": "aGk="}}, "dockerSteps": [{"image": "x", "commands": ["y"]}]}`))
	f.Add([]byte(`{"id": 1, "files": {"a": {"content": "hi", "bucket": "b", "key": "k"}}, "cliSteps": [{"command": ["x"]}]}`))
	f.Add([]byte(`{"version": 2, "dockerAuthConfig": {"auths": {"r": {"auth": "dTpw"}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var j protocol.Job
		if err := json.Unmarshal(data, &j); err != nil {
			return
		}
		if j.Version != 2 {
			j.Version = 0 // v1 carries no version
			for k, f := range j.Files {
				if !utf8Valid(f.Content) {
					delete(j.Files, k) // v1 content is a string: only UTF-8 round-trips
				}
			}
		}
		out, err := json.Marshal(j)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", j, err)
		}
		var back protocol.Job
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("decode re-encoded %s: %v", out, err)
		}
		a, _ := json.Marshal(j)
		b, _ := json.Marshal(back)
		if string(a) != string(b) {
			t.Fatalf("round trip changed the job:\n%s\n%s", a, b)
		}
	})
}

func utf8Valid(b []byte) bool {
	s := string(b)
	for _, r := range s {
		if r == '\uFFFD' {
			return false
		}
	}
	return true
}

// FuzzHeartbeatRequest: ids given as numbers decode to the same strings as
// ids given as strings.
func FuzzHeartbeatRequest(f *testing.F) {
	f.Add([]byte(`{"version": "V2", "executorName": "e", "jobIds": [1, "2"]}`))
	f.Add([]byte(`{"jobIdsByQueue": [{"queueName": "q", "jobIds": ["1"]}], "queueNames": ["q"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h protocol.HeartbeatRequest
		if err := json.Unmarshal(data, &h); err != nil {
			return
		}
		out, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var back protocol.HeartbeatRequest
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("decode re-encoded %s: %v", out, err)
		}
		if !reflect.DeepEqual(normalize(h), normalize(back)) {
			t.Fatalf("round trip changed the request: %+v vs %+v", h, back)
		}
	})
}

func normalize(h protocol.HeartbeatRequest) protocol.HeartbeatRequest {
	if len(h.JobIDs) == 0 {
		h.JobIDs = nil
	}
	if len(h.JobIDsByQueue) == 0 {
		h.JobIDsByQueue = nil
	}
	if len(h.QueueNames) == 0 {
		h.QueueNames = nil
	}
	return h
}
