//go:build linux

package guest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// openChannel opens the channel to the host: the virtio-serial port
// named PortName (QEMU), or, when the kernel command line says
// execd.vsock=PORT, a vsock connection to the host (CID 2) on PORT
// (Firecracker, whose host side is the vsock's Unix socket). It waits up
// to timeout for the device to appear.
func openChannel(timeout time.Duration) (io.ReadWriteCloser, error) {
	cmdline, _ := os.ReadFile("/proc/cmdline")
	if port, ok := cmdlineValue(string(cmdline), "execd.vsock"); ok {
		p, err := strconv.ParseUint(port, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("execd.vsock=%q: not a port", port)
		}
		return dialVsock(uint32(p), timeout)
	}
	deadline := time.Now().Add(timeout)
	for {
		dev, err := findPort("/sys/class/virtio-ports", PortName)
		if err == nil {
			f, err := os.OpenFile(filepath.Join("/dev", dev), os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("open the agent's port /dev/%s: %w", dev, err)
			}
			return f, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port named %s after %v: %w", PortName, timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// findPort returns the device name (vportNpM) of the virtio-serial port
// called name, from the sysfs class directory dir.
func findPort(dir, name string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err == nil && strings.TrimSpace(string(b)) == name {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("none of %d ports is named %s", len(entries), name)
}

// cmdlineValue returns the value of key=value on the kernel command line.
func cmdlineValue(cmdline, key string) (string, bool) {
	for f := range strings.FieldsSeq(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// dialVsock connects to the host's vsock port, retrying until timeout.
func dialVsock(port uint32, timeout time.Duration) (io.ReadWriteCloser, error) {
	deadline := time.Now().Add(timeout)
	for {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: port})
			if err == nil {
				return os.NewFile(uintptr(fd), "vsock"), nil
			}
			unix.Close(fd)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to the host's vsock port %d: %w", port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
