package vmnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// shape applies bw to tap with tc: a token bucket (tbf) on the tap's
// egress limits what enters the VM; what leaves the VM enters the host
// on the tap, where only policing is possible, so the tap's ingress is
// redirected to an ifb device whose egress has the token bucket: shaping
// in both directions, as the CNI bandwidth plugin does.
func shape(ctx context.Context, tap string, bw Bandwidth) error {
	if bw.Ingress > 0 {
		if err := tc(ctx, append([]string{"qdisc", "replace", "dev", tap, "root"}, tbf(bw.Ingress)...)...); err != nil {
			return fmt.Errorf("vmnet: limit the ingress of tap %s: %w", tap, err)
		}
	}
	if bw.Egress <= 0 {
		return nil
	}
	ifb := ifbName(tap)
	link := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: ifb}}
	if err := netlink.LinkAdd(link); err != nil {
		return fmt.Errorf("vmnet: create %s to limit the egress of tap %s (the kernel needs ifb): %w", ifb, tap, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("vmnet: bring %s up: %w", ifb, err)
	}
	for _, args := range [][]string{
		append([]string{"qdisc", "replace", "dev", ifb, "root"}, tbf(bw.Egress)...),
		{"qdisc", "replace", "dev", tap, "handle", "ffff:", "ingress"},
		{"filter", "replace", "dev", tap, "parent", "ffff:", "protocol", "all", "prio", "1",
			"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb},
	} {
		if err := tc(ctx, args...); err != nil {
			return fmt.Errorf("vmnet: limit the egress of tap %s: %w", tap, err)
		}
	}
	return nil
}

// tbf returns the arguments of a token bucket qdisc of rate bytes per
// second: its bucket holds 20 ms of traffic, at least 64 KiB (one GSO
// segment), and at most 50 ms more may wait in its queue.
func tbf(rate int64) []string {
	burst := max(rate/50, 64<<10)
	return []string{"tbf", "rate", strconv.FormatInt(rate*8, 10) + "bit", "burst", strconv.FormatInt(burst, 10), "latency", "50ms"}
}

// tc runs the tc command.
func tc(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "tc", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("tc is not installed (apt-get install iproute2): %w", err)
	}
	if err != nil {
		return fmt.Errorf("tc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
