package vmnet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/sandbox/vm/vmnet"
	"github.com/execd/execd/internal/testutil"
	"github.com/execd/execd/internal/testutil/netns"
)

// topology is a host for VMs, in network namespaces of its own, with
// hosts around it:
//
//	ns inet 203.0.113.10 (the internet) ---- 203.0.113.1 ------+ ns host: the executor's
//	ns priv 192.168.77.10 (a private host) --- 192.168.77.1 ---+ host, where Setup makes
//	ns meta 169.254.169.254 (cloud metadata) --- 169.254.0.1 --+ the VMs' taps
//
// inet greets with "inet from <the client's address>" on port 8080; priv
// greets "priv" on ports 8080 and 53; meta greets "meta" on port 80; the
// host greets "host" on port 8080 of every address. The host's firewall
// starts as docker leaves it: an empty DOCKER-USER chain that FORWARD
// jumps to first, and a FORWARD policy that drops. IPv4 forwarding is off
// (Setup turns it on). Nothing of it touches the test's own namespace.
type topology struct {
	prefix string
}

func (tp *topology) ns(name string) string { return tp.prefix + "-" + name }

func newTopology(t *testing.T) *topology {
	t.Helper()
	for _, cmd := range []string{"iptables", "tc"} {
		if _, err := exec.LookPath(cmd); err != nil {
			testutil.Missing(t, "netns", "the VM network needs iptables and tc (apt-get install iptables iproute2): "+err.Error())
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testutil.Missing(t, "netns", "the VM network needs /dev/net/tun: "+err.Error())
	}
	tp := &topology{prefix: fmt.Sprintf("execd-vn%d", os.Getpid())}
	for _, n := range []string{"host", "inet", "priv", "meta"} {
		netns.Add(t, tp.ns(n))
	}
	host := tp.ns("host")
	netns.Run(t, host, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	netns.Link(t, host, "up-inet", "203.0.113.1/24", tp.ns("inet"), "203.0.113.10/24", "203.0.113.1")
	netns.Link(t, host, "up-priv", "192.168.77.1/24", tp.ns("priv"), "192.168.77.10/24", "192.168.77.1")
	netns.Link(t, host, "up-meta", "169.254.0.1/16", tp.ns("meta"), "169.254.169.254/16", "169.254.0.1")
	for _, cmd := range []string{"iptables", "ip6tables"} {
		netns.Run(t, host, cmd, "-N", "DOCKER-USER")
		netns.Run(t, host, cmd, "-I", "FORWARD", "-j", "DOCKER-USER")
		netns.Run(t, host, cmd, "-P", "FORWARD", "DROP")
	}
	netns.ServeFunc(t, tp.ns("inet"), "203.0.113.10:8080", func(c net.Conn) string {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		return "inet from " + host
	})
	netns.Serve(t, tp.ns("priv"), "192.168.77.10:8080", "priv")
	netns.Serve(t, tp.ns("priv"), "192.168.77.10:53", "priv")
	netns.Serve(t, tp.ns("meta"), "169.254.169.254:80", "meta")
	netns.Serve(t, host, ":8080", "host")
	return tp
}

// setup runs vmnet.Setup in the host, and removes the network when the
// test ends.
func (tp *topology) setup(t *testing.T, cfg vmnet.Config) *vmnet.Network {
	t.Helper()
	n, err := tp.trySetup(t, cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return n
}

func (tp *topology) trySetup(t *testing.T, cfg vmnet.Config) (*vmnet.Network, error) {
	t.Helper()
	var n *vmnet.Network
	err := netns.Do(tp.ns("host"), func() (err error) {
		n, err = vmnet.Setup(t.Context(), cfg)
		return err
	})
	if err == nil {
		t.Cleanup(func() { tp.remove(t, n) })
	}
	return n, err
}

// remove runs n.Remove in the host.
func (tp *topology) remove(t *testing.T, n *vmnet.Network) {
	t.Helper()
	if err := netns.Do(tp.ns("host"), func() error { return n.Remove(context.Background()) }); err != nil {
		t.Errorf("Remove(%s): %v", n.Tap, err)
	}
}

// vm plays a VM on n's tap in a namespace of its own, name: its network
// device is a tap device eth0 there, with n's MAC address, whose frames
// the test copies to and from n's tap in the host, as a monitor does
// between the tap and the VM's virtio-net device. The guest's side is
// configured with guestnet by the caller. It runs a server greeting with
// name on port 8080.
func (tp *topology) vm(t *testing.T, name string, n *vmnet.Network) string {
	t.Helper()
	ns := tp.ns(name)
	netns.Add(t, ns)
	guest := openTap(t, ns, "eth0")
	host := openTap(t, tp.ns("host"), n.Tap)
	netns.Run(t, ns, "ip", "link", "set", "eth0", "address", n.MAC)
	var wg sync.WaitGroup
	t.Cleanup(func() { guest.Close(); host.Close(); wg.Wait() })
	wg.Go(func() { copyFrames(host, guest) })
	wg.Go(func() { copyFrames(guest, host) })
	netns.Serve(t, ns, ":8080", name)
	return ns
}

// openTap opens the tap device name in namespace ns, making it unless it
// exists, and returns its file of frames. A tap made so is gone when the
// file is closed.
func openTap(t *testing.T, ns, name string) *os.File {
	t.Helper()
	var f *os.File
	err := netns.Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err == nil {
			err = unix.SetNonblock(fd, true) // so that Close ends a Read
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("open tap %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// copyFrames copies Ethernet frames from one tap to another until src is
// closed. A frame that cannot be written is dropped, as a network card
// does (a tap that is down refuses them).
func copyFrames(dst, src *os.File) {
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		dst.Write(buf[:n])
	}
}

// leftovers returns the host's interfaces of VMs and its rules, for
// comparing before and after.
func (tp *topology) leftovers(t *testing.T) string {
	t.Helper()
	var links []string
	for line := range strings.Lines(netns.Run(t, tp.ns("host"), "ip", "-o", "link")) {
		if strings.Contains(line, "execdv") {
			links = append(links, line)
		}
	}
	return strings.Join(links, "") + netns.Tables(t, tp.ns("host"), "filter", "nat")
}

// transfer connects from namespace ns to the bulk servers at host and
// sends size bytes (up) or receives them (down), and returns how long it
// took.
func transfer(ns, host string, size int, up bool) (time.Duration, error) {
	var d time.Duration
	err := netns.Do(ns, func() error {
		port := "9002"
		if up {
			port = "9001"
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		start := time.Now()
		if up {
			if _, err := io.CopyN(c, zeros{}, int64(size)); err != nil {
				return err
			}
			c.(*net.TCPConn).CloseWrite()
		}
		n, err := io.Copy(io.Discard, c) // the sink closes when it has all
		if err == nil && up != (n == int64(size)) {
			d = time.Since(start)
			return nil
		}
		return fmt.Errorf("received %d bytes: %v", n, err)
	})
	return d, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// serveBulk runs two servers in namespace ns: at host:9001 a sink that
// reads until the client is done, then closes; at host:9002 a source
// that sends size bytes and closes.
func serveBulk(t *testing.T, ns, host string, size int) {
	t.Helper()
	var wg sync.WaitGroup
	var lns []net.Listener
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for _, port := range []string{"9001", "9002"} {
		var ln net.Listener
		if err := netns.Do(ns, func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(host, port)); return err }); err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(30 * time.Second))
					if port == "9001" {
						io.Copy(io.Discard, c)
					} else {
						io.CopyN(c, zeros{}, int64(size))
					}
				})
			}
		})
	}
}
