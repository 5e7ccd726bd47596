// Package firecracker drives the Firecracker virtual machine monitor: it
// starts one firecracker process per micro-VM, configures it over its API
// socket, boots it, and gives the caller a byte stream to the guest agent
// over vsock.
//
// # The process
//
// [Start] runs `firecracker --api-sock <Dir>/api.sock --id <id>` with
// stdin on /dev/null and stdout and stderr captured: the guest's serial
// console goes to Firecracker's stdout. The capture keeps a bounded tail in
// memory ([Machine.Console]) and writes at most [ConsoleFileLimit] bytes to
// <Dir>/console.log, so a guest that floods its console cannot fill the
// host's disk. Firecracker's own log goes to <Dir>/firecracker.log at level
// Warning. The process is in its own process group and gets SIGKILL when
// its parent dies (Pdeathsig), so an executor killed with kill -9 does not
// leave VMs running; a janitor is still needed for the rest. Linux sends
// that signal when the parent thread exits: do not call Start from a
// goroutine locked to an OS thread that then exits (runtime.LockOSThread
// held to the goroutine's end, as network namespace code does), or the VM
// dies with the thread.
//
// The VM lives until the guest powers off (Firecracker then exits with
// status 0), Firecracker fails, or [Machine.Kill]. The context given to
// [Start] bounds the start only.
//
// # The requests
//
// Start sends, in this order, each answered by 204 No Content:
//
//	PUT /logger                  {"log_path": "<Dir>/firecracker.log", "level": "Warning", "show_level": true, "show_log_origin": false}
//	PUT /boot-source             {"kernel_image_path", "initrd_path", "boot_args"}
//	PUT /machine-config          {"vcpu_count", "mem_size_mib"}
//	PUT /drives/<id>             {"drive_id", "path_on_host", "is_root_device": false, "is_read_only"}, one per drive, in order
//	PUT /network-interfaces/eth0 {"iface_id": "eth0", "host_dev_name", "guest_mac", "rx_rate_limiter", "tx_rate_limiter"}, when Spec.Tap is set
//	PUT /vsock                   {"guest_cid": 3, "uds_path": "<Dir>/vsock.sock"}, when Spec.AgentPort is set
//	                             (with Spec.AgentDials, Start listens on <Dir>/vsock.sock_<AgentPort> first)
//	PUT /actions                 {"action_type": "InstanceStart"}
//
// Any other answer fails the start with an [*APIError] carrying
// Firecracker's fault_message; the process is then killed and reaped and
// its sockets removed before Start returns. The shapes follow the API
// specification (src/firecracker/swagger/firecracker.yaml) of Firecracker
// v1.16.1; see docs/vm-firecracker.md for what was and was not verified.
//
// # Concurrency
//
// A [Machine]'s methods are safe for concurrent use. Kill may be called
// any number of times, also after the VM has exited.
package firecracker
