package vmnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/execd/execd/internal/sandbox/netpolicy"
)

// Check reports whether VMs' networks can be made here, for `executor
// validate`: /dev/net/tun, the firewall (netpolicy's Check) and, when
// shaping is true, the tc command. The ifb driver is found only when a
// network with an egress limit is made.
func Check(ctx context.Context, shaping bool) error {
	var errs []error
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		errs = append(errs, fmt.Errorf("vmnet: tap devices need /dev/net/tun (modprobe tun): %w", err))
	}
	if err := netpolicy.Check(ctx); err != nil {
		errs = append(errs, err)
	}
	if shaping {
		if _, err := exec.LookPath("tc"); err != nil {
			errs = append(errs, fmt.Errorf("vmnet: bandwidth limits need tc (apt-get install iproute2): %w", err))
		}
	}
	return errors.Join(errs...)
}
