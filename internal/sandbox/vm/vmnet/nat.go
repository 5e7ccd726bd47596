package vmnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// natComment tags a tap's MASQUERADE rule; the tap's name follows.
const natComment = "execd-vm:"

// natRule returns the arguments of tap's MASQUERADE rule in the nat
// table's POSTROUTING, after the chain name: the subnet's traffic leaving
// by any other interface takes the address of that interface.
func natRule(tap string, subnet netip.Prefix) []string {
	return []string{"-s", subnet.Masked().String(), "!", "-o", tap,
		"-m", "comment", "--comment", natComment + tap, "-j", "MASQUERADE"}
}

// addNAT inserts tap's MASQUERADE rule at the top of POSTROUTING, unless
// it is there.
func addNAT(ctx context.Context, tap string, subnet netip.Prefix) error {
	rule := natRule(tap, subnet)
	_, err := iptables(ctx, append([]string{"-t", "nat", "-C", "POSTROUTING"}, rule...)...)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 {
		_, err = iptables(ctx, append([]string{"-t", "nat", "-I", "POSTROUTING", "1"}, rule...)...)
	}
	if err != nil {
		return fmt.Errorf("vmnet: masquerade the subnet %v of tap %s: %w", subnet, tap, err)
	}
	return nil
}

// natRules returns the MASQUERADE rules of VMs in POSTROUTING, as
// `iptables -S` prints them, by tap.
func natRules(ctx context.Context) (map[string][]string, error) {
	out, err := iptables(ctx, "-t", "nat", "-S", "POSTROUTING")
	if err != nil {
		return nil, fmt.Errorf("vmnet: list the NAT rules: %w", err)
	}
	return parseNATRules(out), nil
}

// parseNATRules finds the VMs' rules in the output of iptables -S.
func parseNATRules(out string) map[string][]string {
	rules := map[string][]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "--comment" {
				continue
			}
			if tap, ok := strings.CutPrefix(strings.Trim(f[i+1], `"`), natComment); ok && tap != "" {
				rules[tap] = append(rules[tap], strings.TrimSpace(line))
			}
		}
	}
	return rules
}

// deleteNAT deletes tap's MASQUERADE rules; none is no error.
func deleteNAT(ctx context.Context, tap string) error {
	rules, err := natRules(ctx)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil // no iptables, no rules
		}
		return err
	}
	return deleteNATRules(ctx, tap, rules[tap])
}

func deleteNATRules(ctx context.Context, tap string, rules []string) error {
	for _, r := range rules {
		args, ok := strings.CutPrefix(r, "-A ")
		if !ok {
			continue
		}
		f := strings.Fields(args)
		for i := range f {
			f[i] = strings.Trim(f[i], `"`)
		}
		if _, err := iptables(ctx, append([]string{"-t", "nat", "-D"}, f...)...); err != nil {
			return fmt.Errorf("vmnet: delete the NAT rule of tap %s: %w", tap, err)
		}
	}
	return nil
}

// iptables runs iptables, waiting for its lock, and returns its output.
func iptables(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "iptables", append([]string{"-w"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("iptables is not installed (apt-get install iptables): %w", err)
	}
	if err != nil {
		return "", fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// forwardingPath is the switch of IPv4 forwarding of the caller's
// network namespace.
const forwardingPath = "/proc/sys/net/ipv4/ip_forward"

// enableForwarding turns IPv4 forwarding on, unless it is, and says so.
func enableForwarding(l *slog.Logger) error {
	b, err := os.ReadFile(forwardingPath)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(forwardingPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("vmnet: turn IPv4 forwarding on (run as root): %w", err)
	}
	l.Info("turned IPv4 forwarding on for the VMs' networks (net.ipv4.ip_forward=1); the host forwards between its other interfaces too where its FORWARD policy accepts")
	return nil
}
