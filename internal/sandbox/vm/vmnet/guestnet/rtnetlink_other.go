//go:build !linux

package guestnet

import (
	"errors"
	"net/netip"
)

type conn struct{}

func dial() (*conn, error) { return nil, errors.New("the guest's network is configured on Linux only") }

func (*conn) close()                                {}
func (*conn) setLink(int, int) error                { return nil }
func (*conn) addAddr(int, netip.Prefix) error       { return nil }
func (*conn) addDefaultRoute(int, netip.Addr) error { return nil }
