package jobsapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/execd/execd/internal/jobsapi"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name, spec string
		want       string // substring of the error; empty: valid
	}{
		{"valid docker", `{"dockerSteps": [{"image": "alpine", "commands": ["true"]}]}`, ""},
		{"valid cli", `{"cliSteps": [{"command": ["batcher", "run"]}], "repositoryName": "r", "commit": "abc", "files": {"a/b.txt": {}}}`, ""},
		{"no steps", `{}`, "dockerSteps, cliSteps"},
		{"no image", `{"dockerSteps": [{"commands": ["true"]}]}`, "dockerSteps[0].image"},
		{"no commands", `{"dockerSteps": [{"image": "alpine"}]}`, "dockerSteps[0].commands"},
		{"cli no command", `{"cliSteps": [{"dir": "."}]}`, "cliSteps[0].command"},
		{"absolute file", `{"cliSteps": [{"command": ["x"]}], "files": {"/etc/passwd": {}}}`, `files["/etc/passwd"]`},
		{"escaping file", `{"cliSteps": [{"command": ["x"]}], "files": {"a/../../x": {}}}`, "escapes the workspace"},
		{"workspace itself", `{"cliSteps": [{"command": ["x"]}], "files": {".": {}}}`, `files["."]`},
		{"escaping dir", `{"dockerSteps": [{"image": "a", "commands": ["x"], "dir": "../.."}]}`, "dockerSteps[0].dir"},
		{"escaping repo dir", `{"cliSteps": [{"command": ["x"]}], "repositoryName": "r", "commit": "c", "repositoryDirectory": "/abs"}`, "repositoryDirectory"},
		{"bad env", `{"dockerSteps": [{"image": "a", "commands": ["x"], "env": ["NOVALUE"]}]}`, "dockerSteps[0].env[0]"},
		{"bucket without key", `{"cliSteps": [{"command": ["x"]}], "files": {"f": {"bucket": "b"}}}`, "bucket and key"},
		{"valid bucket and key", `{"cliSteps": [{"command": ["x"]}], "files": {"f": {"bucket": "b", "key": "dir/f.txt"}}}`, ""},
		{"bad bucket", `{"cliSteps": [{"command": ["x"]}], "files": {"f": {"bucket": "a/b", "key": "k"}}}`, `files["f"]: bucket "a/b"`},
		{"bad key", `{"cliSteps": [{"command": ["x"]}], "files": {"f": {"bucket": "b", "key": "a/../k"}}}`, `files["f"]: key "a/../k"`},
		{"commit without repo", `{"cliSteps": [{"command": ["x"]}], "commit": "abc"}`, "repositoryName"},
		{"repo without commit", `{"cliSteps": [{"command": ["x"]}], "repositoryName": "r"}`, "commit"},
		{"negative attempts", `{"cliSteps": [{"command": ["x"]}], "maxAttempts": -1}`, "maxAttempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req jobsapi.SubmitRequest
			if err := json.Unmarshal([]byte(tt.spec), &req); err != nil {
				t.Fatal(err)
			}
			err := jobsapi.Validate(req)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate(%s) = %v, want nil", tt.spec, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate(%s) = %v, want an error naming %q", tt.spec, err, tt.want)
			}
		})
	}
}
