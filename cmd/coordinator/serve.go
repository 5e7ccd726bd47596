package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/execd/execd/internal/coordinator"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := envFlag(fs, "addr", "EXECD_ADDR", "127.0.0.1:3080", "address to listen on")
	dataDir := envFlag(fs, "data-dir", "EXECD_DATA_DIR", "./data", "directory of the SQLite database and the site config")
	siteConfig := envFlag(fs, "site-config", "EXECD_SITE_CONFIG", "", "site config file (default <data-dir>/site-config.json; created with fresh secrets if missing)")
	database := envFlag(fs, "database", "EXECD_DATABASE", "", "database: empty for SQLite in the data dir, a file path for SQLite elsewhere, or a postgres:// URL")
	reposDir := envFlag(fs, "repos-dir", "EXECD_REPOS_DIR", "", "directory of git repositories served to executors by name (repository github.com/x/y is DIR/github.com/x/y, bare or not)")
	mirrorInterval := envFlag(fs, "mirror-interval", "EXECD_MIRROR_INTERVAL", "1m", "how often the mirrors of the site config's repositories are fetched")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	interval, err := time.ParseDuration(*mirrorInterval)
	if err != nil || interval <= 0 {
		return fmt.Errorf("serve: --mirror-interval %q: want a positive duration such as 1m or 30s", *mirrorInterval)
	}
	logger := newLogger(stderr)
	sinks, alloc, closeSinks, err := metricSinks(ctx, os.Getenv, logger)
	if err != nil {
		return fmt.Errorf("serve: autoscaling metric: %w", err)
	}
	defer closeSinks()
	// Listen first: a new site config's externalURL is where we listen.
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another coordinator running? choose another with --addr)", *addr, err)
	}
	c, err := coordinator.New(ctx, coordinator.Options{
		ExternalURL:    externalURL(l.Addr()),
		DataDir:        *dataDir,
		SiteConfigPath: *siteConfig,
		Database:       *database,
		ReposDir:       *reposDir,
		MirrorInterval: interval,
		Version:        version,
		Logger:         logger,
		// Off unless the guide's variables name a cloud (docs/autoscaling.md).
		MetricSinks:       sinks,
		MetricAllocations: alloc,
	})
	if err != nil {
		l.Close()
		return err
	}
	defer c.Close()
	warnUnknownQueues(alloc, c.Config().Current().Queues, logger)
	cfgPath := *siteConfig
	if cfgPath == "" {
		cfgPath = filepath.Join(*dataDir, "site-config.json")
	}
	db := *database
	if db == "" {
		db = filepath.Join(*dataDir, "execd.db")
	}
	logger.Info("coordinator listening", "url", "http://"+l.Addr().String(), "site_config", cfgPath, "database", redactURL(db), "version", version)
	return c.Serve(ctx, l)
}

// externalURL is the URL a new site config names for a coordinator
// listening on addr: the machine's host name when it listens on every
// address, since 0.0.0.0 reaches nothing from elsewhere.
func externalURL(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "localhost"
		if name, err := os.Hostname(); err == nil && name != "" {
			host = name
		}
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// redactURL hides a password in a database URL before it is logged.
func redactURL(s string) string {
	if u, err := parseURL(s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return s
}
