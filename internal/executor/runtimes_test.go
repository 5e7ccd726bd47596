package executor

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/execd/execd/internal/sandbox"
)

// fakeRuntime is a runtime that only answers Name, Capabilities and Check.
type fakeRuntime struct {
	name     string
	caps     sandbox.Capabilities
	checkErr error
}

func (f fakeRuntime) Name() string                       { return f.name }
func (f fakeRuntime) Capabilities() sandbox.Capabilities { return f.caps }
func (f fakeRuntime) Check(context.Context) error        { return f.checkErr }
func (f fakeRuntime) Prepare(context.Context, sandbox.Options) (sandbox.Sandbox, error) {
	return nil, errors.New("fake")
}

// emulatedRuntime runs, but not fast enough to be picked unasked.
type emulatedRuntime struct{ fakeRuntime }

func (emulatedRuntime) AutoSelectable(context.Context) error { return errors.New("software emulation") }

func TestSelectRuntime(t *testing.T) {
	emu := emulatedRuntime{fakeRuntime{name: "emu", caps: sandbox.Capabilities{Images: true, Networks: []sandbox.Network{sandbox.NetworkNone}}}}
	vm := fakeRuntime{name: "vm", caps: sandbox.Capabilities{Images: true, Networks: []sandbox.Network{sandbox.NetworkInternet, sandbox.NetworkNone}}, checkErr: errors.New("no kvm")}
	box := fakeRuntime{name: "box", caps: sandbox.Capabilities{Images: true, Networks: []sandbox.Network{sandbox.NetworkNone}}}
	open := fakeRuntime{name: "open", caps: sandbox.Capabilities{Networks: []sandbox.Network{sandbox.NetworkInternet, sandbox.NetworkNone}}}
	all := []sandbox.Runtime{emu, vm, box, open}
	tests := []struct {
		runtime, network string
		want             string // the runtime chosen, or "error: <part of the message>"
	}{
		{"auto", "", "box"},
		{"auto", "none", "box"},
		{"auto", "internet", "open"},
		{"box", "", "box"},
		{"box", "internet", "error: the box runtime cannot give a job that network"},
		{"vm", "", "error: no kvm"},
		{"emu", "", "emu"},
		{"other", "", "error: this program runs only emu, vm, box, open"},
	}
	for _, tt := range tests {
		rt, why, err := selectRuntime(context.Background(), Config{Runtime: tt.runtime, JobNetwork: tt.network}, all)
		got := ""
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = rt.Name()
		}
		if !strings.HasPrefix(tt.want, "error: ") && got != tt.want || strings.HasPrefix(tt.want, "error: ") && !strings.Contains(got, strings.TrimPrefix(tt.want, "error: ")) {
			t.Errorf("EXECUTOR_RUNTIME=%s EXECUTOR_JOB_NETWORK=%s: got %q (%s), want %q", tt.runtime, tt.network, got, why, tt.want)
		}
	}
	if _, why, _ := selectRuntime(context.Background(), Config{Runtime: "auto", JobNetwork: "internet"}, all); !strings.Contains(why, "vm: no kvm") || !strings.Contains(why, "emu: software emulation") || !strings.Contains(why, "box: EXECUTOR_JOB_NETWORK=internet") {
		t.Errorf("auto's reason %q does not say why vm and box were skipped", why)
	}
}
