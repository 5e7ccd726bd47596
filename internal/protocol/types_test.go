package protocol_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/execd/execd/internal/protocol"
)

func TestJobVersionFor(t *testing.T) {
	tests := []struct {
		version string
		want    int
	}{
		{"", 1}, {"4.2.1", 1}, {"3.43.0", 1}, {"4.3.0", 2}, {"4.3.0-rc.1", 2}, {"5.1.2", 2},
		{"v5.0.0", 2}, {"0.0.0+dev", 2}, {"dev", 2}, {"123456_2023-01-01_abcdef", 2},
	}
	for _, tt := range tests {
		if got := protocol.JobVersionFor(tt.version); got != tt.want {
			t.Errorf("JobVersionFor(%q) = %d, want %d", tt.version, got, tt.want)
		}
	}
}

func TestHeartbeatRequest_IntIDs(t *testing.T) {
	var h protocol.HeartbeatRequest
	if err := json.Unmarshal([]byte(`{"executorName": "e", "jobIds": [1, "2", 30]}`), &h); err != nil {
		t.Fatal(err)
	}
	if got := h.JobIDs; len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "30" {
		t.Errorf("JobIDs = %q, want [1 2 30]", got)
	}
	if err := json.Unmarshal([]byte(`{"jobIds": [1.5]}`), &h); err == nil {
		t.Error("a fractional job id decoded without error")
	}
}

func TestJob_V1V2Encoding(t *testing.T) {
	j := protocol.Job{ID: 7, Token: "tok", Files: map[string]protocol.VirtualFile{"a.txt": {Content: []byte("hi")}}}
	v1, _ := json.Marshal(j)
	j.Version = 2
	v2, _ := json.Marshal(j)
	var m1, m2 map[string]any
	json.Unmarshal(v1, &m1)
	json.Unmarshal(v2, &m2)
	if got := m1["files"].(map[string]any)["a.txt"].(map[string]any)["content"]; got != "hi" {
		t.Errorf("v1 content = %v, want \"hi\"", got)
	}
	if got := m2["files"].(map[string]any)["a.txt"].(map[string]any)["content"]; got != "aGk=" {
		t.Errorf("v2 content = %v, want base64 \"aGk=\"", got)
	}
	if _, ok := m1["version"]; ok {
		t.Error("v1 payload carries a version")
	}
	var back protocol.Job
	if err := json.Unmarshal(v2, &back); err != nil || string(back.Files["a.txt"].Content) != "hi" || back.Version != 2 {
		t.Errorf("v2 decode = %+v, %v", back, err)
	}
}

func TestParseExtensions(t *testing.T) {
	tests := []struct {
		values []string
		want   []string
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"long-poll, heartbeat-wait, log-append"}, []string{"long-poll", "heartbeat-wait", "log-append"}},
		{[]string{"log-append", " long-poll ,,log-append", "future-thing"}, []string{"log-append", "long-poll", "future-thing"}},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.values {
			h.Add(protocol.ExtensionsHeader, v)
		}
		if got := protocol.ParseExtensions(h); !slices.Equal(got, tt.want) {
			t.Errorf("ParseExtensions(%q) = %q, want %q", tt.values, got, tt.want)
		}
	}
}

func TestCommandLines(t *testing.T) {
	tests := []struct {
		key     string
		command []string
		want    []string
	}{
		{"step.docker.build", []string{"time go build ./...", "time go vet ./..."}, []string{"time go build ./...", "time go vet ./..."}},
		{"setup.git.fetch", []string{"git", "fetch", "origin"}, []string{"git fetch origin"}},
		{"step.src.0", []string{"src", "batch", "exec"}, []string{"src batch exec"}},
	}
	for _, tt := range tests {
		if got := protocol.CommandLines(tt.key, tt.command); !slices.Equal(got, tt.want) {
			t.Errorf("CommandLines(%q, %q) = %q, want %q", tt.key, tt.command, got, tt.want)
		}
	}
}
