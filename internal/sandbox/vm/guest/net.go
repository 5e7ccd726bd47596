//go:build linux

package guest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/vmnet/guestnet"
)

// setupNetwork brings lo up and, when the kernel command line gives the
// guest a network (execd.ip, execd.gw, execd.dns, execd.mac: package
// guestnet, which the host's vmnet writes), configures its interface
// and returns the steps' resolv.conf ("" for the image's own).
func setupNetwork(cmdline string) (string, error) {
	cfg, ok, err := guestnet.ParseCmdline(cmdline)
	if err != nil {
		loUp()
		return "", err
	}
	if !ok {
		return "", loUp()
	}
	iface := "eth0"
	if cfg.MAC != "" {
		iface = "" // by its hardware address
	}
	if err := guestnet.Configure(iface, cfg); err != nil {
		loUp()
		return "", err
	}
	if len(cfg.DNS) == 0 {
		return "", nil
	}
	return string(guestnet.ResolvConf(cfg)), nil
}

// loUp brings the loopback interface up.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	return nil
}

// writeResolvConf writes the guest's own /etc/resolv.conf (for steps in
// the initramfs's root).
func writeResolvConf(content string) {
	if content == "" {
		return
	}
	os.MkdirAll("/etc", 0o755)
	os.WriteFile("/etc/resolv.conf", []byte(content), 0o644)
}
