// Package pgtest gives tests empty PostgreSQL databases.
//
// With EXECD_TEST_POSTGRES_URL set (an admin URL of an existing server),
// databases are created there. Otherwise the first [URL] call of a test
// binary starts a temporary server (initdb and pg_ctl from PATH or
// /usr/lib/postgresql/*/bin) in a temporary directory, listening on
// 127.0.0.1 on a free port, and [Main] stops it when the tests are done.
// A test binary that uses pgtest should have
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// When PostgreSQL is unavailable, tests skip (or fail in CI, see
// testutil.Missing).
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/execd/execd/internal/testutil"
)

// EnvURL names the variable holding an admin URL of an existing server.
const EnvURL = "EXECD_TEST_POSTGRES_URL"

// dirPrefix starts the names of temporary server directories, followed by
// the pid of the test process that owns the server.
const dirPrefix = "execd-pgtest-"

// server is the one temporary server of this test binary. It is package
// state because starting a server takes seconds and every test of the
// binary shares it; Main stops it.
var server struct {
	once     sync.Once
	adminURL string
	err      error // why there is no server
	stop     func()
}

// Main runs the tests and then stops the temporary server, if one was
// started.
func Main(m *testing.M) {
	code := m.Run()
	if server.stop != nil {
		server.stop()
	}
	os.Exit(code)
}

// URL returns the URL of a new, empty database, dropped when tb ends.
func URL(tb testing.TB) string {
	tb.Helper()
	admin := os.Getenv(EnvURL)
	if admin == "" {
		server.once.Do(func() { server.adminURL, server.stop, server.err = start() })
		if server.err != nil {
			testutil.Missing(tb, "postgres", server.err.Error())
		}
		admin = server.adminURL
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s: want a postgres:// URL, got %q", EnvURL, admin)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL, drop, err := CreateDatabase(ctx, admin)
	if err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := drop(ctx); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	return dbURL
}

// Start starts a temporary server outside of tests (for programs such as
// cmd/bench) and returns its admin URL and a function that stops it and
// removes its files. Tests use [URL] instead.
func Start() (adminURL string, stop func(), err error) {
	return start()
}

// CreateDatabase creates an empty database on the server of the admin URL
// and returns its URL and a function that drops it.
func CreateDatabase(ctx context.Context, admin string) (dbURL string, drop func(context.Context) error, err error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("admin URL: %w", err)
	}
	name := "execd_test_" + strconv.Itoa(os.Getpid()) + "_" + randomHex(6)
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	drop = func(ctx context.Context) error {
		return adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// start initialises and starts a temporary server and returns its admin
// URL and a function that stops it and removes its files.
func start() (adminURL string, stop func(), err error) {
	bin, err := binDir()
	if err != nil {
		return "", nil, err
	}
	// initdb refuses to run as root: run the server as the postgres user.
	var runAs *user.User
	if os.Geteuid() == 0 {
		if runAs, err = serverUser(); err != nil {
			return "", nil, err
		}
	}
	reapOrphans(bin, runAs)

	dir, err := os.MkdirTemp("", dirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if runAs != nil {
		uid, _ := strconv.Atoi(runAs.Uid)
		gid, _ := strconv.Atoi(runAs.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := command(runAs, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("initdb: %v: %s", err, bytes.TrimSpace(out))
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	// Default durability settings (fsync on): benchmarks are honest.
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1",
		"-c port=" + strconv.Itoa(port),
		"-c unix_socket_directories=" + dir,
		"-c max_connections=400",
		"-c shared_buffers=256MB",
	}, " ")
	pgCtl := filepath.Join(bin, "pg_ctl")
	logFile := filepath.Join(dir, "server.log")
	if out, err := command(runAs, pgCtl, "-D", data, "-l", logFile, "-o", opts, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		logTail, _ := os.ReadFile(logFile)
		return "", nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, bytes.TrimSpace(out), tail(logTail, 2000))
	}
	stop = func() {
		command(runAs, pgCtl, "-D", data, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), stop, nil
}

// binDir finds the directory of initdb and pg_ctl.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	// Prefer the newest major version.
	slices.SortFunc(matches, func(a, b string) int { return majorOf(b) - majorOf(a) })
	for _, m := range matches {
		if _, err := os.Stat(filepath.Join(filepath.Dir(m), "pg_ctl")); err == nil {
			return filepath.Dir(m), nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found in PATH or /usr/lib/postgresql/*/bin")
}

func majorOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// serverUser returns the postgres system user, creating it if needed (the
// Debian package creates it).
func serverUser() (*user.User, error) {
	if u, err := user.Lookup("postgres"); err == nil {
		return u, nil
	}
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--shell", "/usr/sbin/nologin", "postgres").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres user: useradd: %v: %s", err, bytes.TrimSpace(out))
	}
	return user.Lookup("postgres")
}

// command runs name as runAs (when not nil) through runuser.
func command(runAs *user.User, name string, args ...string) *exec.Cmd {
	if runAs == nil {
		return exec.Command(name, args...)
	}
	return exec.Command("runuser", append([]string{"-u", runAs.Username, "--", name}, args...)...)
}

// reapOrphans stops and removes the servers of test processes that died
// without stopping theirs (killed by a timeout, say).
func reapOrphans(bin string, runAs *user.User) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		pidPart, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), dirPrefix), "-")
		pid, err := strconv.Atoi(pidPart)
		if err != nil || processAlive(pid) {
			continue
		}
		command(runAs, filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Databases runs f as two subtests: "sqlite" with an empty database URL
// (the caller's SQLite default) and "postgres" with a fresh database of the
// test server.
func Databases(t *testing.T, f func(t *testing.T, database string)) {
	t.Run("sqlite", func(t *testing.T) { f(t, "") })
	t.Run("postgres", func(t *testing.T) { f(t, URL(t)) })
}
