package install_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/execd/execd/internal/install"
)

func TestMergeDaemonConfig(t *testing.T) {
	runsc := map[string]install.DaemonRuntime{"runsc": {Path: "/usr/local/bin/runsc", RuntimeArgs: []string{"--platform=systrap"}}}
	mirror := []string{"https://mirror.example.com"}
	tests := []struct {
		name     string
		existing string
		want     install.DaemonSettings
		content  string // "" when nothing changes
		added    []string
		present  []string
		err      string // a part of the error
	}{
		{
			name: "no file, a mirror", want: install.DaemonSettings{RegistryMirrors: mirror},
			content: "{\n  \"registry-mirrors\": [\n    \"https://mirror.example.com\"\n  ]\n}\n",
			added:   []string{"the registry mirror https://mirror.example.com"},
		},
		{
			name:     "other keys are kept as written",
			existing: `{"log-driver": "json-file", "max-concurrent-downloads": 10, "default-shm-size": "1G", "features": {"buildkit": true}}`,
			want:     install.DaemonSettings{RegistryMirrors: mirror, Runtimes: runsc},
			content: `{
  "default-shm-size": "1G",
  "features": {
    "buildkit": true
  },
  "log-driver": "json-file",
  "max-concurrent-downloads": 10,
  "registry-mirrors": [
    "https://mirror.example.com"
  ],
  "runtimes": {
    "runsc": {
      "path": "/usr/local/bin/runsc",
      "runtimeArgs": [
        "--platform=systrap"
      ]
    }
  }
}
`,
			added: []string{"the registry mirror https://mirror.example.com", "the runtime runsc (/usr/local/bin/runsc --platform=systrap)"},
		},
		{
			name: "an http mirror is an insecure registry too", want: install.DaemonSettings{RegistryMirrors: []string{"http://10.0.1.4:5000"}},
			content: "{\n  \"insecure-registries\": [\n    \"10.0.1.4:5000\"\n  ],\n  \"registry-mirrors\": [\n    \"http://10.0.1.4:5000\"\n  ]\n}\n",
			added:   []string{"the registry mirror http://10.0.1.4:5000", "the insecure registry 10.0.1.4:5000 (an http:// mirror)"},
		},
		{
			name:     "an http mirror there already, its host among other insecure registries",
			existing: `{"registry-mirrors": ["http://10.0.1.4:5000"], "insecure-registries": ["10.9.9.9:5000", "10.0.1.4:5000"]}`,
			want:     install.DaemonSettings{RegistryMirrors: []string{"http://10.0.1.4:5000"}},
			present:  []string{"the registry mirror http://10.0.1.4:5000", "the insecure registry 10.0.1.4:5000 (an http:// mirror)"},
		},
		{
			name:     "insecure-registries of the wrong type",
			existing: `{"insecure-registries": "10.0.1.4:5000"}`,
			want:     install.DaemonSettings{RegistryMirrors: []string{"http://10.0.1.4:5000"}},
			err:      `"insecure-registries" is not a list`,
		},
		{
			name:     "a mirror there already, with docker's trailing slash",
			existing: `{"registry-mirrors": ["https://mirror.example.com/"]}`,
			want:     install.DaemonSettings{RegistryMirrors: mirror},
			present:  []string{"the registry mirror https://mirror.example.com"},
		},
		{
			name:     "another mirror is kept",
			existing: `{"registry-mirrors": ["https://old.example.com"]}`,
			want:     install.DaemonSettings{RegistryMirrors: mirror},
			content:  "{\n  \"registry-mirrors\": [\n    \"https://old.example.com\",\n    \"https://mirror.example.com\"\n  ]\n}\n",
			added:    []string{"the registry mirror https://mirror.example.com"},
		},
		{
			name:     "the runtime there already",
			existing: `{"runtimes": {"runsc": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=systrap"]}}}`,
			want:     install.DaemonSettings{Runtimes: runsc},
			present:  []string{"the runtime runsc (/usr/local/bin/runsc --platform=systrap)"},
		},
		{
			name:     "a different runsc is replaced, other runtimes kept",
			existing: `{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}, "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=ptrace"]}}}`,
			want:     install.DaemonSettings{Runtimes: runsc},
			content: `{
  "runtimes": {
    "nvidia": {
      "path": "nvidia-container-runtime"
    },
    "runsc": {
      "path": "/usr/local/bin/runsc",
      "runtimeArgs": [
        "--platform=systrap"
      ]
    }
  }
}
`,
			added: []string{"the runtime runsc (/usr/local/bin/runsc --platform=systrap)"},
		},
		{name: "nothing wanted", existing: `{"debug": true}`},
		{name: "empty file", existing: "\n", want: install.DaemonSettings{RegistryMirrors: mirror},
			content: "{\n  \"registry-mirrors\": [\n    \"https://mirror.example.com\"\n  ]\n}\n",
			added:   []string{"the registry mirror https://mirror.example.com"}},
		{name: "not JSON", existing: `{"debug": true,`, want: install.DaemonSettings{RegistryMirrors: mirror}, err: "not a JSON object"},
		{name: "a JSON list", existing: `[]`, want: install.DaemonSettings{RegistryMirrors: mirror}, err: "not a JSON object"},
		{name: "mirrors not a list", existing: `{"registry-mirrors": "https://x"}`, want: install.DaemonSettings{RegistryMirrors: mirror}, err: "registry-mirrors"},
		{name: "runtimes not an object", existing: `{"runtimes": []}`, want: install.DaemonSettings{Runtimes: runsc}, err: "runtimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := install.MergeDaemonConfig([]byte(tt.existing), tt.want)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("MergeDaemonConfig() error = %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("MergeDaemonConfig() error = %v", err)
			}
			if string(got.Content) != tt.content {
				t.Errorf("Content =\n%s\nwant\n%s", got.Content, tt.content)
			}
			if !slices.Equal(got.Added, tt.added) || !slices.Equal(got.Present, tt.present) {
				t.Errorf("Added, Present = %q, %q; want %q, %q", got.Added, got.Present, tt.added, tt.present)
			}
		})
	}
}

func TestCheckMirror(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://mirror.example.com", true},
		{"http://10.0.0.5:5000/", true},
		{"mirror.example.com", false},
		{"ftp://mirror.example.com", false},
		{"https://mirror.example.com/v2", false},
		{"https://user:pw@mirror.example.com", false},
	}
	for _, tt := range tests {
		if err := install.CheckMirror(tt.url); (err == nil) != tt.ok {
			t.Errorf("CheckMirror(%q) = %v, want ok = %v", tt.url, err, tt.ok)
		}
	}
}
