package vmnet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/execd/execd/internal/hostlock"
	"github.com/execd/execd/internal/sandbox"
	"github.com/execd/execd/internal/sandbox/netpolicy"
)

// Clean removes the networks of VMs that stale reports over, whoever
// made them, from the caller's network namespace: each tap device whose
// label (its alias: owner and job) stale reports true for, with its
// rules and its ifb device; and the rules and ifb devices of taps that
// no longer exist, whatever their job. A tap without a label (its
// executor died while making it) is reported as an empty Leftover. It
// returns the taps whose networks it removed, and is safe to run
// alongside Setup and Remove.
func Clean(ctx context.Context, stale func(sandbox.Leftover) bool) (removed []string, err error) {
	// The rules are listed before the devices: a tap whose rules exist
	// now exists already (Setup makes the tap first).
	// Without iptables there are no rules (a host whose jobs have no
	// network need not have it).
	ruled, err := netpolicy.Bridges(ctx)
	if err != nil && !errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("vmnet: janitor: %w", err)
	}
	nat, err := natRules(ctx)
	if err != nil && !errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("vmnet: janitor: %w", err)
	}
	taps, ifbs, err := listDevices(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, tap := range slices.Sorted(maps.Keys(taps)) {
		if !stale(parseLabel(taps[tap])) {
			continue
		}
		if err := remove(ctx, tap); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, tap)
	}
	// What is left of taps that are gone.
	gone := map[string]bool{}
	for _, b := range ruled {
		if _, ok := tapSubnet(b); ok && !hasTap(taps, b) {
			gone[b] = true
		}
	}
	for tap := range nat {
		if !hasTap(taps, tap) {
			gone[tap] = true
		}
	}
	for _, ifb := range ifbs {
		if tap := TapPrefix + strings.TrimPrefix(ifb, ifbPrefix); !hasTap(taps, tap) {
			gone[tap] = true
		}
	}
	for _, tap := range slices.Sorted(maps.Keys(gone)) {
		if slices.Contains(removed, tap) {
			continue
		}
		if err := remove(ctx, tap); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, tap)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("vmnet: janitor: %w", err)
	}
	return removed, nil
}

// Taps lists the VMs' tap devices on this host, each with whose it is
// (from its label; empty for a tap without one).
func Taps(ctx context.Context) (map[string]sandbox.Leftover, error) {
	taps, _, err := listDevices(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]sandbox.Leftover, len(taps))
	for tap, alias := range taps {
		out[tap] = parseLabel(alias)
	}
	return out, nil
}

// listDevices returns the VMs' tap devices with their aliases, and the
// ifb devices, under the allocation lock: no tap is half made.
func listDevices(ctx context.Context) (taps map[string]string, ifbs []string, err error) {
	unlock, err := hostlock.Lock(ctx, lockPath)
	if err != nil {
		return nil, nil, fmt.Errorf("vmnet: janitor: %w", err)
	}
	defer unlock()
	links, err := netlink.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("vmnet: janitor: list the interfaces: %w", err)
	}
	taps = map[string]string{}
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := tapSubnet(name); ok {
			taps[name] = l.Attrs().Alias
		} else if _, ok := tapSubnet(TapPrefix + strings.TrimPrefix(name, ifbPrefix)); ok && strings.HasPrefix(name, ifbPrefix) {
			ifbs = append(ifbs, name)
		}
	}
	return taps, ifbs, nil
}

func hasTap(taps map[string]string, tap string) bool {
	_, ok := taps[tap]
	return ok
}
