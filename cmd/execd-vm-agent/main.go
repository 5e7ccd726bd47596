// Command execd-vm-agent is the init (PID 1) of the executor's VM guest:
// `executor install vm` puts it as /init in the initramfs that every
// job's virtual machine boots. It runs the executor's steps inside the
// VM (package internal/sandbox/vm/guest) and is not for running by hand.
//
// Build it static: CGO_ENABLED=0 go build ./cmd/execd-vm-agent
package main

import "github.com/execd/execd/internal/sandbox/vm/guest"

func main() { guest.Main() }
