// Package autoscaletest has fakes of the cloud metric services that the
// autoscale sinks call, for tests: [CloudWatch], an HTTP server speaking
// CloudWatch's Smithy RPC v2 CBOR protocol that checks each request's
// SigV4 signature, and [Monitoring], a gRPC Cloud Monitoring
// MetricService. Both record what they accept and can be made to fail.
package autoscaletest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/encoding/cbor"
)

// PutMetricDataPath is where CloudWatch's RPC v2 CBOR protocol posts
// PutMetricData.
const PutMetricDataPath = "/service/GraniteServiceVersion20100801/operation/PutMetricData"

// Datum is one metric datum that the CloudWatch fake accepted.
type Datum struct {
	Namespace  string
	MetricName string
	Unit       string
	Value      float64
	Dimensions map[string]string
	// AccessKeyID is the key named by the request's signature, which
	// the fake verified with the secret it knows.
	AccessKeyID string
	Region      string
	Gzipped     bool // the request body was gzip-compressed
}

// CloudWatch is a fake CloudWatch. Requests that are not well-formed,
// signed PutMetricData calls fail the test.
type CloudWatch struct {
	*httptest.Server
	t      testing.TB
	secret map[string]string // access key id -> secret key

	mu     sync.Mutex
	data   []Datum
	status int // when not 0, answer every call with it
	calls  int
}

// NewCloudWatch starts a fake CloudWatch that accepts signatures by
// accessKeyID with secretKey, and stops it when t ends.
func NewCloudWatch(t testing.TB, accessKeyID, secretKey string) *CloudWatch {
	f := &CloudWatch{t: t, secret: map[string]string{accessKeyID: secretKey}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// Fail makes every later call answer status (0: succeed again), with an
// RPC v2 CBOR error body.
func (f *CloudWatch) Fail(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// Data returns the data accepted so far.
func (f *CloudWatch) Data() []Datum {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Datum(nil), f.data...)
}

// Calls is the number of PutMetricData calls received, failed or not.
func (f *CloudWatch) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *CloudWatch) serve(w http.ResponseWriter, r *http.Request) {
	data, err := f.check(r)
	if err != nil {
		f.t.Errorf("CloudWatch fake: %s %s: %v", r.Method, r.URL, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls++
	status := f.status
	if status == 0 {
		f.data = append(f.data, data...)
	}
	f.mu.Unlock()
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	if status != 0 {
		w.WriteHeader(status)
		_, _ = w.Write(cbor.Encode(cbor.Map{
			"__type":  cbor.String("InternalServiceFault"),
			"Message": cbor.String(fmt.Sprintf("the fake answers %d", status)),
		}))
		return
	}
	_, _ = w.Write([]byte{0xA0}) // the empty map: PutMetricData's empty output
}

var credentialRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/monitoring/aws4_request, SignedHeaders=([^,]+), Signature=[0-9a-f]{64}$`)

// check verifies the request's protocol and signature and decodes it.
func (f *CloudWatch) check(r *http.Request) ([]Datum, error) {
	if r.Method != http.MethodPost || r.URL.Path != PutMetricDataPath {
		return nil, fmt.Errorf("want POST %s", PutMetricDataPath)
	}
	if got := r.Header.Get("Smithy-Protocol"); got != "rpc-v2-cbor" {
		return nil, fmt.Errorf("Smithy-Protocol = %q, want rpc-v2-cbor", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/cbor" {
		return nil, fmt.Errorf("Content-Type = %q, want application/cbor", got)
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	key, region, err := f.verify(r, raw)
	if err != nil {
		return nil, err
	}
	body, gzipped := raw, false
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		gzipped = true
	default:
		return nil, fmt.Errorf("unexpected Content-Encoding %q", enc)
	}
	data, err := decodePutMetricData(body)
	if err != nil {
		return nil, err
	}
	for i := range data {
		data[i].AccessKeyID, data[i].Region, data[i].Gzipped = key, region, gzipped
	}
	return data, nil
}

// verify checks the SigV4 Authorization header by signing the request
// again with the known secret, and returns its key and region.
func (f *CloudWatch) verify(r *http.Request, body []byte) (key, region string, err error) {
	auth := r.Header.Get("Authorization")
	m := credentialRE.FindStringSubmatch(auth)
	if m == nil {
		return "", "", fmt.Errorf("Authorization %q is not a SigV4 signature for the monitoring service", auth)
	}
	key, region = m[1], m[3]
	secret, ok := f.secret[key]
	if !ok {
		return "", "", fmt.Errorf("signed by unknown access key %q", key)
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "", "", fmt.Errorf("X-Amz-Date: %w", err)
	}
	again, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return "", "", err
	}
	for _, h := range strings.Split(m[4], ";") {
		if h != "host" {
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	again.ContentLength = int64(len(body))
	again.Header.Del("Authorization")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: key, SecretAccessKey: secret, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hex.EncodeToString(sum[:]), "monitoring", region, signedAt); err != nil {
		return "", "", err
	}
	if got := again.Header.Get("Authorization"); got != auth {
		return "", "", fmt.Errorf("signature does not verify with the secret of %s:\n got  %s\n want %s", key, auth, got)
	}
	return key, region, nil
}

// decodePutMetricData decodes a PutMetricData input.
func decodePutMetricData(body []byte) ([]Datum, error) {
	v, err := cbor.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("decode CBOR body: %w", err)
	}
	in, ok := v.(cbor.Map)
	if !ok {
		return nil, fmt.Errorf("body is a %T, want a map", v)
	}
	ns, _ := in["Namespace"].(cbor.String)
	list, ok := in["MetricData"].(cbor.List)
	if !ok {
		return nil, fmt.Errorf("MetricData is a %T, want a list", in["MetricData"])
	}
	var out []Datum
	for _, item := range list {
		m, ok := item.(cbor.Map)
		if !ok {
			return nil, fmt.Errorf("a MetricData entry is a %T, want a map", item)
		}
		d := Datum{Namespace: string(ns), Dimensions: map[string]string{}}
		name, _ := m["MetricName"].(cbor.String)
		unit, _ := m["Unit"].(cbor.String)
		d.MetricName, d.Unit = string(name), string(unit)
		if d.Value, err = cbor.AsFloat64(m["Value"]); err != nil {
			return nil, fmt.Errorf("Value: %w", err)
		}
		dims, _ := m["Dimensions"].(cbor.List)
		for _, dim := range dims {
			dm, _ := dim.(cbor.Map)
			n, _ := dm["Name"].(cbor.String)
			val, _ := dm["Value"].(cbor.String)
			d.Dimensions[string(n)] = string(val)
		}
		out = append(out, d)
	}
	return out, nil
}
