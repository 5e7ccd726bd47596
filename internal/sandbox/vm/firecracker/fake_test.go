package firecracker_test

// A fake of the firecracker binary, run by TestMain when the test binary
// is started under the name "firecracker" (a symbolic link made by
// newFake). It serves the API socket as Firecracker v1.16.1 does: it
// checks every body against the shapes of the API specification
// (src/firecracker/swagger/firecracker.yaml at v1.16.1: unknown and
// missing fields and wrong types are refused as Firecracker's serde
// parsing refuses them), enforces the rules the tests rely on (files must
// exist, pre-boot and post-boot only requests, vCPU limits, path IDs
// matching body IDs), answers 204 or 400 with {"fault_message": ...}
// using Firecracker's own messages, and records each request. At
// InstanceStart it prints a console line and listens on the vsock Unix
// socket with Firecracker's host-initiated handshake, behind which a tiny
// agent says hello, echoes lines and powers the "guest" off on request.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fakeConfig scripts the fake; newFake writes it as fake.json next to the
// fake binary.
type fakeConfig struct {
	Record  string // requests, one JSON record a line
	PIDFile string
	Args    string // the fake's arguments, one a line

	Version      string        // first line of --version; default "Firecracker v1.16.1"
	CrashAtStart string        // print this to stderr and exit 1 before serving the API
	DelayAPI     time.Duration // wait this long before serving the API
	Hang         string        // "METHOD /path": never answer it

	// Fail answers "METHOD /path" with 400 and this fault_message.
	Fail map[string]string

	Console       string // printed to stdout at InstanceStart, as the guest's serial console
	AgentPort     uint32 // where the fake guest agent listens once started
	AgentRefusals int    // connections to AgentPort closed first, as while the guest boots
	// GuestDials makes the fake guest agent connect to the host on
	// AgentPort once started (Firecracker forwards that to the Unix
	// socket <uds_path>_<AgentPort>) instead of listening.
	GuestDials bool
}

// A record is one request seen by the fake: an API request, or a vsock
// connection's CONNECT line (Method "VSOCK").
type record struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
}

func fakeMain(args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
		return 1
	}
	var cfg fakeConfig
	b, err := os.ReadFile(filepath.Join(filepath.Dir(os.Args[0]), "fake.json"))
	if err != nil {
		return fail("fake firecracker: %v", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fail("fake firecracker: %v", err)
	}
	if slices.Contains(args, "--version") {
		v := cmp(cfg.Version, "Firecracker v1.16.1")
		fmt.Printf("%s\n\n", v)
		return 0
	}
	if cfg.PIDFile != "" {
		os.WriteFile(cfg.PIDFile, []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	if cfg.Args != "" {
		os.WriteFile(cfg.Args, []byte(strings.Join(args, "\n")), 0o644)
		os.WriteFile(cfg.Args+".env", []byte(strings.Join(os.Environ(), "\n")), 0o644)
	}
	var sock, id string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--api-sock":
			sock = args[i+1]
		case "--id":
			id = args[i+1]
		default:
			return fail("Arguments parsing error: Found argument '%s' which wasn't expected", args[i])
		}
	}
	if sock == "" || id == "" || len(id) > 64 {
		return fail("fake firecracker: want --api-sock and --id, got %q", args)
	}
	if cfg.CrashAtStart != "" {
		return fail("%s", cfg.CrashAtStart)
	}
	time.Sleep(cfg.DelayAPI)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fail("Failed to open the API socket at: %s. Check that it is not already used.", sock)
	}
	f := &fake{cfg: cfg, drives: map[string]string{}}
	if err := http.Serve(l, f); err != nil {
		return fail("%v", err)
	}
	return 0
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type fake struct {
	cfg fakeConfig

	mu        sync.Mutex
	started   bool
	kernel    bool
	logPath   string
	udsPath   string
	drives    map[string]string
	vsock     net.Listener
	hostPort  uint32
	refusals  int
	recording sync.Mutex
}

func (f *fake) record(r record) {
	f.recording.Lock()
	defer f.recording.Unlock()
	b, _ := json.Marshal(r)
	file, err := os.OpenFile(f.cfg.Record, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	file.Write(append(b, '\n'))
	file.Close()
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := record{Method: r.Method, Path: r.URL.Path}
	if len(body) > 0 {
		rec.Body = json.RawMessage(body)
	}
	f.record(rec)
	key := r.Method + " " + r.URL.Path
	if key == f.cfg.Hang {
		<-r.Context().Done()
		select {}
	}
	if msg, ok := f.cfg.Fail[key]; ok {
		fault(w, msg)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.serve(r.Method, r.URL.Path, body); err != nil {
		fault(w, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func fault(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"fault_message": msg})
}

// Firecracker's messages (VmmActionError in src/vmm/src/rpc_interface.rs).
const (
	postBoot = "The requested operation is not supported after starting the microVM."
	preBoot  = "The requested operation is not supported before starting the microVM."
)

func (f *fake) serve(method, path string, body []byte) error {
	resource, id, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	sch, ok := schemas[method+" /"+resource]
	if !ok || (id != "") != (resource == "drives" || resource == "network-interfaces") {
		return fmt.Errorf("Invalid request method and/or path: %s %s.", method, path)
	}
	var v map[string]any
	d := json.NewDecoder(strings.NewReader(string(body)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("An error occurred when deserializing the json body of a request: %v", err)
	}
	if err := sch.check(v); err != nil {
		return fmt.Errorf("An error occurred when deserializing the json body of a request: %v", err)
	}
	if method == "PUT" && f.started {
		return errors.New(postBoot)
	}
	str := func(k string) string { s, _ := v[k].(string); return s }
	num := func(k string) int64 { n, _ := v[k].(json.Number).Int64(); return n }
	switch method + " /" + resource {
	case "PUT /logger":
		f.logPath = str("log_path")
	case "PUT /boot-source":
		if _, err := os.Stat(str("kernel_image_path")); err != nil {
			return fmt.Errorf("Boot source error: The kernel file cannot be opened: %s", osError(err))
		}
		if p := str("initrd_path"); p != "" {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. %s", osError(err))
			}
		}
		f.kernel = true
	case "PUT /machine-config":
		n := num("vcpu_count")
		smt, _ := v["smt"].(bool)
		if n < 1 || n > 32 || smt && n > 1 && n%2 == 1 {
			return errors.New("Machine config error: The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled.")
		}
		if num("mem_size_mib") == 0 {
			return errors.New("Machine config error: The memory size (MiB) is either 0, or not a multiple of the configured page size.")
		}
	case "PUT /drives":
		if id != str("drive_id") {
			return errors.New("The id from the path does not match the id from the body!")
		}
		if _, ok := v["is_read_only"]; !ok {
			return errors.New("An error occurred when deserializing the json body of a request: is_read_only is required for a virtio block device")
		}
		if _, err := os.Stat(str("path_on_host")); err != nil {
			return fmt.Errorf("Drive config error: Unable to create the virtio block device: %s", osError(err))
		}
		f.drives[id] = str("path_on_host")
	case "PATCH /drives":
		if !f.started {
			return errors.New(preBoot)
		}
		if id != str("drive_id") {
			return errors.New("The id from the path does not match the id from the body!")
		}
		if _, ok := f.drives[id]; !ok {
			return errors.New("Drive config error: Unable to patch the block device: DeviceNotFound Please verify the request arguments.")
		}
		if _, err := os.Stat(str("path_on_host")); err != nil {
			return fmt.Errorf("Drive config error: Unable to patch the block device: %s Please verify the request arguments.", osError(err))
		}
	case "PUT /network-interfaces":
		if id != str("iface_id") {
			return errors.New("The id from the path does not match the id from the body!")
		}
		if mac, ok := v["guest_mac"]; ok && !macPattern.MatchString(mac.(string)) {
			return fmt.Errorf("An error occurred when deserializing the json body of a request: invalid MAC address %q", mac)
		}
	case "PUT /vsock":
		f.udsPath = str("uds_path")
		if num("guest_cid") < 3 {
			return errors.New("Vsock config error: Cannot create vsock device: guest CID must be at least 3")
		}
		l, err := net.Listen("unix", str("uds_path"))
		if err != nil {
			return fmt.Errorf("Vsock config error: Cannot create backend for vsock device: Error binding to the host-side Unix socket: %v", err)
		}
		f.vsock = l
		go f.serveVsock(l)
	case "PUT /actions":
		if str("action_type") != "InstanceStart" {
			return errors.New(preBoot)
		}
		if !f.kernel {
			return errors.New("Start microvm error: Cannot start microvm without kernel configuration.")
		}
		f.started = true
		fmt.Print(f.cfg.Console)
		if f.cfg.GuestDials && f.udsPath != "" {
			go f.guestDials(fmt.Sprintf("%s_%d", f.udsPath, f.cfg.AgentPort))
		}
		if f.logPath != "" {
			if lf, err := os.OpenFile(f.logPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
				fmt.Fprintf(lf, "2026-12-04T00:00:00.000000000 [fake:main:WARN] fake guest started\n")
				lf.Close()
			}
		}
	}
	return nil
}

// macPattern is the form Firecracker's MacAddr parses: six colon-separated
// pairs of hexadecimal digits.
var macPattern = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)

func osError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) && errors.Is(err, os.ErrNotExist) {
		return "No such file or directory (os error 2)"
	}
	return err.Error()
}

// serveVsock does Firecracker's host-initiated connections: read
// "CONNECT <port>\n"; if the guest listens on port, answer
// "OK <host port>\n" and bridge to it, else close.
func (f *fake) serveVsock(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go f.vsockConn(c)
	}
}

func (f *fake) vsockConn(c net.Conn) {
	r := bufio.NewReader(io.LimitReader(c, 64))
	line, err := r.ReadString('\n')
	f.record(record{Method: "VSOCK", Path: strings.TrimSuffix(line, "\n")})
	port, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "CONNECT ")
	f.mu.Lock()
	listening := err == nil && ok && f.started && port == strconv.Itoa(int(f.cfg.AgentPort))
	if listening && f.refusals < f.cfg.AgentRefusals {
		f.refusals++
		listening = false
	}
	f.hostPort++
	hostPort := 1073741823 + f.hostPort
	f.mu.Unlock()
	if !listening {
		c.Close()
		return
	}
	// The answer and the agent's first bytes in one write: the host must
	// not read past the answer's newline.
	fmt.Fprintf(c, "OK %d\nhello from the guest\n", hostPort)
	fakeAgent(c)
}

// guestDials is the guest agent connecting to the host (CID 2) on
// AgentPort: Firecracker connects to the host's Unix socket at path,
// with no handshake; the guest retries while nothing listens.
func (f *fake) guestDials(path string) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("unix", path)
		if err != nil {
			continue
		}
		f.record(record{Method: "VSOCK", Path: "guest connects to " + filepath.Base(path)})
		fmt.Fprintf(c, "hello from the guest\n")
		fakeAgent(c)
		return
	}
}

// fakeAgent echoes lines; "poweroff" ends the VM as a guest powering off
// does (Firecracker exits with status 0).
func fakeAgent(c net.Conn) {
	defer c.Close()
	s := bufio.NewScanner(c)
	for s.Scan() {
		if s.Text() == "poweroff" {
			fmt.Fprintf(c, "bye\n")
			os.Exit(0)
		}
		fmt.Fprintf(c, "echo: %s\n", s.Text())
	}
}

// schemas are the request bodies of Firecracker v1.16.1's API
// specification that this package may send, by "METHOD /resource".
var schemas = func() map[string]*schema {
	tokenBucket := &schema{required: []string{"refill_time", "size"}, fields: map[string]any{
		"one_time_burst": kindInt, "refill_time": kindInt, "size": kindInt,
	}}
	rateLimiter := &schema{fields: map[string]any{"bandwidth": tokenBucket, "ops": tokenBucket}}
	return map[string]*schema{
		"PUT /logger": {fields: map[string]any{
			"level":    enum{"error", "warning", "warn", "info", "debug", "trace", "off"}, // any case
			"log_path": kindString, "show_level": kindBool,
			"show_log_origin": kindBool, "module": kindString,
		}},
		"PUT /boot-source": {required: []string{"kernel_image_path"}, fields: map[string]any{
			"boot_args": kindString, "initrd_path": kindString, "kernel_image_path": kindString,
		}},
		"PUT /machine-config": {required: []string{"mem_size_mib", "vcpu_count"}, fields: map[string]any{
			"cpu_template": kindString, "smt": kindBool, "mem_size_mib": kindInt,
			"track_dirty_pages": kindBool, "vcpu_count": kindInt, "huge_pages": kindString,
		}},
		"PUT /drives": {required: []string{"drive_id", "is_root_device"}, fields: map[string]any{
			"drive_id": kindString, "partuuid": kindString, "is_root_device": kindBool,
			"cache_type": enum{"Unsafe", "Writeback"}, "is_read_only": kindBool, "path_on_host": kindString,
			"rate_limiter": rateLimiter, "io_engine": enum{"Sync", "Async"}, "socket": kindString,
		}},
		"PATCH /drives": {required: []string{"drive_id"}, fields: map[string]any{
			"drive_id": kindString, "path_on_host": kindString, "rate_limiter": rateLimiter,
		}},
		"PUT /network-interfaces": {required: []string{"host_dev_name", "iface_id"}, fields: map[string]any{
			"guest_mac": kindString, "host_dev_name": kindString, "iface_id": kindString,
			"mtu": kindInt, "rx_rate_limiter": rateLimiter, "tx_rate_limiter": rateLimiter,
		}},
		"PUT /vsock": {required: []string{"guest_cid", "uds_path"}, fields: map[string]any{
			"guest_cid": kindInt, "uds_path": kindString, "vsock_id": kindString,
		}},
		"PUT /actions": {required: []string{"action_type"}, fields: map[string]any{
			"action_type": enum{"FlushMetrics", "InstanceStart", "SendCtrlAltDel"},
		}},
	}
}()

type kind int

// An enum is a string field's values; Logger's level is compared in any
// case, as Firecracker does.
type enum []string

const (
	kindString kind = iota
	kindBool
	kindInt
)

// A schema is an object of the specification: its fields are kinds or
// nested schemas.
type schema struct {
	required []string
	fields   map[string]any
}

func (s *schema) check(v map[string]any) error {
	for _, k := range s.required {
		if _, ok := v[k]; !ok {
			return fmt.Errorf("missing field `%s`", k)
		}
	}
	for k, x := range v {
		t, ok := s.fields[k]
		if !ok {
			return fmt.Errorf("unknown field `%s`", k)
		}
		var good bool
		switch t := t.(type) {
		case kind:
			switch t {
			case kindString:
				_, good = x.(string)
			case kindBool:
				_, good = x.(bool)
			case kindInt:
				n, isNum := x.(json.Number)
				i, err := n.Int64()
				good = isNum && err == nil && i >= 0
			}
		case enum:
			str, _ := x.(string)
			good = slices.Contains(t, str) || k == "level" && slices.Contains(t, strings.ToLower(str))
		case *schema:
			var o map[string]any
			if o, good = x.(map[string]any); good {
				if err := t.check(o); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
			}
		}
		if !good {
			return fmt.Errorf("invalid type for field `%s`: %v", k, x)
		}
	}
	return nil
}
