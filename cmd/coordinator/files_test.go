package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI_Files(t *testing.T) {
	p := startCoordinator(t, "")
	t.Setenv("EXECD_URL", "http://"+p.addr)
	t.Setenv("EXECD_API_TOKEN", testAPIToken)
	dir := t.TempDir()
	local := filepath.Join(dir, "input.bin")
	content := "line 1\nline 2\x00binary\n"
	if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, error) {
		var out, errOut strings.Builder
		err := run(t.Context(), args, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	if out, err := cli("files", "put", "batches", "ws/input.bin", local); err != nil || !strings.Contains(out, "uploaded batches/ws/input.bin") {
		t.Fatalf("files put: %v\n%s", err, out)
	}
	if out, err := cli("files", "get", "batches", "ws/input.bin"); err != nil || out != content {
		t.Errorf("files get to stdout: %v, %q; want %q", err, out, content)
	}
	copyPath := filepath.Join(dir, "copy.bin")
	if out, err := cli("files", "get", "batches", "ws/input.bin", copyPath); err != nil {
		t.Errorf("files get to a file: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(copyPath); err != nil || string(got) != content {
		t.Errorf("downloaded file = %q, %v; want %q", got, err, content)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing local file", []string{"files", "put", "batches", "k", filepath.Join(dir, "nope")}, "no such file"},
		{"too few arguments", []string{"files", "put", "batches", "k"}, "BUCKET KEY LOCALFILE"},
		{"bad key", []string{"files", "put", "batches", "a//b", local}, "clean relative path"},
		{"missing blob", []string{"files", "get", "batches", "nope"}, "404"},
		{"unknown command", []string{"files", "rm", "batches", "k"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := cli(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v: err = %v (output %q), want an error containing %q", tt.args, err, out, tt.want)
			}
		})
	}
}
