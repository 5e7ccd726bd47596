package dockerconfig

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// A Mirror is one registry mirror of EXECUTOR_DOCKER_REGISTRY_MIRROR_URL.
type Mirror struct {
	// Host is the mirror's host[:port], as image references name it.
	Host string
	// Scheme is the URL's ("http", "https"), or "" for a mirror given as
	// host[:port], whose protocol dockerd decides.
	Scheme string
}

// ParseMirror parses a registry mirror given as a URL without a path
// (http://mirror:5000) or as host[:port].
func ParseMirror(s string) (Mirror, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Mirror{}, errors.New("empty")
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return Mirror{}, err
		}
		if u.Host == "" || (u.Path != "" && u.Path != "/") {
			return Mirror{}, errors.New("want a URL such as http://mirror.example.com:5000, without a path")
		}
		return Mirror{Host: u.Host, Scheme: u.Scheme}, nil
	}
	if strings.ContainsAny(s, "/ ") {
		return Mirror{}, errors.New("want a URL such as http://mirror.example.com:5000, or host:port")
	}
	return Mirror{Host: s}, nil
}

// Addr returns the mirror's host name and TCP port: the one written,
// else 80 for http and 443 otherwise (docker's default).
func (m Mirror) Addr() (name string, port uint16, err error) {
	name, p := m.Host, "443"
	if m.Scheme == "http" {
		p = "80"
	}
	if h, hp, err := net.SplitHostPort(m.Host); err == nil {
		name, p = h, hp
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, errors.New("bad port " + strconv.Quote(p))
	}
	return name, uint16(n), nil
}
