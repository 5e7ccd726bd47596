// Package vm is the micro-VM sandbox runtime: each job runs in a virtual
// machine of its own, under Firecracker or QEMU's microvm, with a guest
// agent as its init that runs the steps.
package vm
