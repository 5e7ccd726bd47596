//go:build !linux

package netpolicy

import (
	"context"
	"errors"
)

// lock fails: the firewall is Linux's.
func lock(context.Context) (func(), error) {
	return nil, errors.New("netpolicy: the network policy needs Linux's firewall")
}
