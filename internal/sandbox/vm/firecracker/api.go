package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// The request bodies, with the field names of Firecracker's API
// specification (definitions Logger, BootSource, MachineConfiguration,
// Drive, PartialDrive, NetworkInterface, RateLimiter, TokenBucket, Vsock
// and InstanceActionInfo). Only the fields this package sets are declared.

type loggerConfig struct {
	LogPath       string `json:"log_path"`
	Level         string `json:"level"`
	ShowLevel     bool   `json:"show_level"`
	ShowLogOrigin bool   `json:"show_log_origin"`
}

type bootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	BootArgs        string `json:"boot_args,omitempty"`
}

type machineConfig struct {
	VCPUCount  int `json:"vcpu_count"`
	MemSizeMiB int `json:"mem_size_mib"`
}

type drive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
}

type partialDrive struct {
	DriveID    string `json:"drive_id"`
	PathOnHost string `json:"path_on_host"`
}

type networkInterface struct {
	IfaceID       string       `json:"iface_id"`
	HostDevName   string       `json:"host_dev_name"`
	GuestMAC      string       `json:"guest_mac,omitempty"`
	RxRateLimiter *rateLimiter `json:"rx_rate_limiter,omitempty"`
	TxRateLimiter *rateLimiter `json:"tx_rate_limiter,omitempty"`
}

type rateLimiter struct {
	Bandwidth tokenBucket `json:"bandwidth"`
}

type tokenBucket struct {
	Size       int64 `json:"size"`
	RefillTime int64 `json:"refill_time"` // milliseconds
}

type vsockConfig struct {
	GuestCID uint32 `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

type instanceAction struct {
	ActionType string `json:"action_type"`
}

// bandwidthLimiter returns a rate limiter of bytesPerSec bytes a second,
// or nil for 0 (unlimited): a token bucket of one second's worth of bytes
// refilled every second, so bursts are bounded by one second of traffic.
func bandwidthLimiter(bytesPerSec int64) *rateLimiter {
	if bytesPerSec == 0 {
		return nil
	}
	return &rateLimiter{Bandwidth: tokenBucket{Size: bytesPerSec, RefillTime: 1000}}
}

// An APIError is an answer of Firecracker's API other than success.
type APIError struct {
	Method, Path string
	StatusCode   int
	// FaultMessage is Firecracker's explanation, the fault_message of its
	// Error body; if the body was not that, its first bytes.
	FaultMessage string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker: %s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.FaultMessage)
}

// maxAnswer bounds what is read of an answer of the API.
const maxAnswer = 64 << 10

// apiClient talks HTTP/1.1 to Firecracker's API on a Unix socket.
type apiClient struct {
	http http.Client
}

func newAPIClient(socket string) *apiClient {
	var d net.Dialer
	return &apiClient{http: http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
		MaxIdleConns:       1,
	}}}
}

// do sends body (nil for none) as JSON and expects 204 No Content.
func (c *apiClient) do(ctx context.Context, method, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("firecracker: %s %s: %w", method, path, err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, r)
	if err != nil {
		return fmt.Errorf("firecracker: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return &APIError{Method: method, Path: path, StatusCode: resp.StatusCode, FaultMessage: faultMessage(answer)}
}

func faultMessage(answer []byte) string {
	var e struct {
		FaultMessage string `json:"fault_message"`
	}
	if json.Unmarshal(answer, &e) == nil && e.FaultMessage != "" {
		return e.FaultMessage
	}
	s := strings.TrimSpace(string(answer))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	if s == "" {
		s = "(no fault_message)"
	}
	return s
}

func (c *apiClient) close() {
	c.http.CloseIdleConnections()
}
