// Package netns builds test networks out of Linux network namespaces:
// namespaces that play hosts, commands and goroutines run in them, and
// TCP servers that greet whoever connects, to probe what reaches what.
// Everything needs root; a test that cannot have it skips, but fails in
// CI, where .ci/run declares the part "netns".
package netns

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/execd/execd/internal/testutil"
)

// Add creates the network namespace name (as `ip netns add` does), with
// lo up and no IPv6 duplicate address detection (link-local addresses
// are usable at once), and deletes it when the test ends.
func Add(t testing.TB, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		testutil.Missing(t, "netns", fmt.Sprintf("ip netns add: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	Run(t, name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	Run(t, name, "ip", "link", "set", "lo", "up")
}

// Run runs a command in namespace ns and returns its output; a failure
// fails the test.
func Run(t testing.TB, ns string, args ...string) string {
	t.Helper()
	argv := append([]string{"netns", "exec", ns}, args...)
	out, err := exec.Command("ip", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Do runs fn on a thread in namespace ns: the sockets it opens, the
// interfaces it makes and the commands it starts are in ns. The thread
// is left there, locked, and exits with its goroutine. An ns of "" is
// the caller's own namespace: fn just runs.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Serve runs a TCP server at addr in namespace ns ("" for the test's
// own) until the test ends:
// it sends each client the line greeting and closes the connection.
func Serve(t testing.TB, ns, addr, greeting string) {
	t.Helper()
	ServeFunc(t, ns, addr, func(net.Conn) string { return greeting })
}

// ServeFunc is [Serve] with a greeting made for each client.
func ServeFunc(t testing.TB, ns, addr string, greet func(net.Conn) string) {
	t.Helper()
	var ln net.Listener
	err := Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, greet(c))
			c.Close()
		}
	})
}

// Greeting connects from namespace ns to addr and returns the line its
// server greets with, waiting for each at most timeout.
func Greeting(ns, addr string, timeout time.Duration) (string, error) {
	var line string
	err := Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

// Link connects namespace ns to namespace host with a veth pair: eth0 in
// ns with addr (a prefix such as 203.0.113.10/24) and a default route via
// gw; hostSide in host, with hostAddr unless it is "".
func Link(t testing.TB, host, hostSide, hostAddr, ns, addr, gw string) {
	t.Helper()
	Run(t, host, "ip", "link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", ns)
	if hostAddr != "" {
		Run(t, host, "ip", "addr", "add", hostAddr, "dev", hostSide)
	}
	Run(t, host, "ip", "link", "set", hostSide, "up")
	Run(t, ns, "ip", "addr", "add", addr, "dev", "eth0")
	Run(t, ns, "ip", "link", "set", "eth0", "up")
	Run(t, ns, "ip", "route", "add", "default", "via", gw)
}

// Tables returns the given iptables tables of namespace ns, IPv4 then
// IPv6, without the comment lines and counters of iptables-save: two
// calls return the same text when the rules are the same.
func Tables(t testing.TB, ns string, tables ...string) string {
	t.Helper()
	var b strings.Builder
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		for _, table := range tables {
			for line := range strings.Lines(Run(t, ns, cmd, "-t", table)) {
				if strings.HasPrefix(line, "#") {
					continue
				}
				if i := strings.Index(line, " ["); strings.HasPrefix(line, ":") && i > 0 {
					line = line[:i] + "\n"
				}
				b.WriteString(line)
			}
		}
	}
	return b.String()
}

// Probe is a connection a test tries: from namespace From to Addr, whose
// server should greet with Want.
type Probe struct {
	Name, From, Addr, Want string
}

// Reach tries the probes at once and reports which ones connected and
// were greeted as they should be, waiting for each at most timeout.
func Reach(probes []Probe, timeout time.Duration) map[string]bool {
	got := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Go(func() {
			greeting, err := Greeting(p.From, p.Addr, timeout)
			mu.Lock()
			got[p.Name] = err == nil && greeting == p.Want
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

// WantReach tries the probes and fails the test for each whose outcome
// is not the expected one: the probes named in reachable must connect,
// the others must not.
func WantReach(t testing.TB, probes []Probe, reachable ...string) {
	t.Helper()
	got := Reach(probes, 2*time.Second)
	for _, p := range probes {
		want := slices.Contains(reachable, p.Name)
		if got[p.Name] != want {
			t.Errorf("%s (%s -> %s): reachable = %v, want %v", p.Name, p.From, p.Addr, got[p.Name], want)
		}
	}
}

// Names returns the names of the probes.
func Names(probes []Probe) []string {
	var names []string
	for _, p := range probes {
		names = append(names, p.Name)
	}
	return names
}
