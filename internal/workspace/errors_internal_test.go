package workspace

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestStderrTail(t *testing.T) {
	tests := []struct {
		name, stderr, want string
	}{
		{"none", "", ""},
		{"fatal last", "remote: Enumerating objects: 3, done.\nfatal: remote error: upload-pack: not our ref 01\n", "remote error: upload-pack: not our ref 01"},
		{"fatal before other lines", "fatal: couldn't find remote ref x\nhint: something\n\n", "couldn't find remote ref x"},
		{"progress with carriage returns", "Receiving objects:  50% (1/2)\rReceiving objects: 100% (2/2)\r\nerror: RPC failed\n", "RPC failed"},
		{"no fatal: the last line", "something odd\r\n  happened  \n", "happened"},
		{"long", "fatal: " + strings.Repeat("é", 400), strings.Repeat("é", 150) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := error(&exec.ExitError{Stderr: []byte(tt.stderr)})
			if got := stderrTail(err); got != tt.want {
				t.Errorf("stderrTail(%q) = %q, want %q", tt.stderr, got, tt.want)
			}
		})
	}
	if got := stderrTail(errors.New("not an exit")); got != "" {
		t.Errorf("stderrTail of a non-exit error = %q, want empty", got)
	}
}

func TestGitSubcommand(t *testing.T) {
	for argv, want := range map[string]string{
		"git init": "git init",
		"git -c protocol.version=2 fetch --progress origin x": "git fetch",
		"git --no-pager checkout x":                           "git checkout",
	} {
		if got := gitSubcommand(strings.Fields(argv)); got != want {
			t.Errorf("gitSubcommand(%q) = %q, want %q", argv, got, want)
		}
	}
}
