// Command execd-sandbox-init is the first process of each step of the
// executor's shell runtime: it builds the sandbox (mounts, limits, an
// unprivileged user) inside the step's new namespaces and runs the step's
// shell. The executor runs it; it is not for running by hand.
//
// The executor can be its own init, but this program starts several times
// faster, for it holds nothing else: installed next to the executor (or
// named by EXECUTOR_SHELL_INIT), it is used instead. It must come from
// the executor's release; the executor checks that when it starts.
package main

import (
	"fmt"
	"os"

	"github.com/execd/execd/internal/sandbox/shell"
)

func main() {
	shell.MaybeRunInit()
	fmt.Fprintln(os.Stderr, "execd-sandbox-init: the executor's shell runtime runs this program for each step; it does nothing by hand")
	os.Exit(2)
}
