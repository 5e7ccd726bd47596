package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/execd/execd/internal/autoscale/autoscaletest"
	"github.com/execd/execd/internal/jobsapi"
	"github.com/execd/execd/internal/protocol"
	"github.com/execd/execd/internal/queueclient"
	"github.com/execd/execd/internal/store/postgres/pgtest"
)

const (
	testAWSKey    = "AKIAEXECDCOORDINATOR"
	testAWSSecret = "coordinator-test-secret-0123456789abcdef"
)

// awsEnv configures a coordinator to publish to fake through the guide's
// variables and the SDK's AWS_ENDPOINT_URL_CLOUDWATCH, away from this
// machine's AWS settings.
func awsEnv(t *testing.T, fake *autoscaletest.CloudWatch) []string {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"AWS_CONFIG_FILE=" + empty, "AWS_SHARED_CREDENTIALS_FILE=" + empty, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=", "AWS_ENDPOINT_URL=",
		"AWS_ENDPOINT_URL_CLOUDWATCH=" + fake.URL,
		"EXECUTOR_METRIC_AWS_NAMESPACE=sourcegraph-executor",
		"EXECUTOR_METRIC_AWS_REGION=us-west-2",
		"EXECUTOR_METRIC_AWS_ACCESS_KEY_ID=" + testAWSKey,
		"EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY=" + testAWSSecret,
		"EXECUTOR_METRIC_ENVIRONMENT_LABEL=e2e",
	}
}

// gcpEnv configures a coordinator to publish to fake through the guide's
// variables and our endpoint override.
func gcpEnv(fake *autoscaletest.Monitoring) []string {
	return []string{
		"EXECUTOR_METRIC_GCP_PROJECT_ID=execd-test",
		"EXECUTOR_METRIC_GCP_ENDPOINT=" + fake.Addr,
		"EXECUTOR_METRIC_ENVIRONMENT_LABEL=e2e",
	}
}

// queueJobs submits 3 batches jobs and 1 codeintel job, and has an
// executor take one batches job: processing jobs count too.
// Sizes: batches 3, codeintel 1, batches_codeintel 4.
func queueJobs(t *testing.T, p *process) {
	t.Helper()
	api := &jobsapi.Client{BaseURL: "http://" + p.addr, Token: testAPIToken}
	spec := jobsapi.SubmitRequest{}
	spec.DockerSteps = []protocol.DockerStep{{Image: "alpine", Commands: []string{"true"}}}
	for _, q := range []string{"batches", "batches", "batches", "codeintel"} {
		if _, err := api.Submit(t.Context(), q, spec); err != nil {
			t.Fatal(err)
		}
	}
	c := &queueclient.Client{BaseURL: "http://" + p.addr, Secret: testExecSecret, ExecutorName: "multi"}
	if _, ok, err := c.Dequeue(t.Context(), []string{"batches"}, queueclient.DequeueOptions{}); err != nil || !ok {
		t.Fatalf("dequeue: %v, %v", ok, err)
	}
}

// wantSizes are the figures queueJobs leaves.
var wantSizes = map[string]float64{"batches": 3, "codeintel": 1, "batches_codeintel": 4}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s; coordinator log:\n%s", timeout, what, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *process) logText() string {
	b, _ := os.ReadFile(filepath.Join(p.dataDir, "coordinator.log"))
	return string(b)
}

// latestCW is the latest value fake received for each queue name, with
// the dimensions and signature checked.
func latestCW(t *testing.T, fake *autoscaletest.CloudWatch) map[string]float64 {
	got := map[string]float64{}
	for _, d := range fake.Data() {
		if d.Namespace != "sourcegraph-executor" || d.MetricName != "src_executors_queue_size" || d.Unit != "Count" ||
			d.Dimensions["environment"] != "e2e" || len(d.Dimensions) != 2 || d.AccessKeyID != testAWSKey || d.Region != "us-west-2" {
			t.Fatalf("unexpected datum %+v", d)
		}
		got[d.Dimensions["queueName"]] = d.Value
	}
	return got
}

func latestGCP(t *testing.T, fake *autoscaletest.Monitoring) map[string]float64 {
	got := map[string]float64{}
	for _, s := range fake.Series() {
		if s.Name != "projects/execd-test" || s.Type != "custom.googleapis.com/executors/queue/size" || s.Resource != "global" ||
			s.ResourceLabels["project_id"] != "execd-test" || s.Labels["environment"] != "e2e" || len(s.Labels) != 2 ||
			s.Kind != "GAUGE" || s.ValueType != "INT64" || s.Points != 1 {
			t.Fatalf("unexpected series %+v", s)
		}
		got[s.Labels["queueName"]] = float64(s.Value)
	}
	return got
}

func sizesAre(got, want map[string]float64) bool {
	for q, v := range want {
		if g, ok := got[q]; !ok || g != v {
			return false
		}
	}
	return true
}

// TestServe_AutoscaleCloudWatch: a coordinator with queued jobs sends
// src_executors_queue_size for each queue to AWS_ENDPOINT_URL_CLOUDWATCH
// within 10 s, with the guide's dimensions and the right values.
func TestServe_AutoscaleCloudWatch(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testAWSKey, testAWSSecret)
	p := startCoordinatorEnv(t, "", awsEnv(t, fake)...)
	queueJobs(t, p)
	waitFor(t, 10*time.Second, fmt.Sprintf("CloudWatch fake receives %v", wantSizes),
		func() bool { return sizesAre(latestCW(t, fake), wantSizes) }, p.logText)
}

// TestServe_AutoscaleCloudMonitoring is the same for Google, through
// EXECUTOR_METRIC_GCP_ENDPOINT.
func TestServe_AutoscaleCloudMonitoring(t *testing.T) {
	fake := autoscaletest.NewMonitoring(t)
	p := startCoordinatorEnv(t, "", gcpEnv(fake)...)
	queueJobs(t, p)
	waitFor(t, 10*time.Second, fmt.Sprintf("Cloud Monitoring fake receives %v", wantSizes),
		func() bool { return sizesAre(latestGCP(t, fake), wantSizes) }, p.logText)
}

// TestServe_AutoscaleBothClouds splits batches half and half with
// EXECUTOR_ALLOCATIONS: 3 jobs are 2 on each cloud (rounded up), and the
// group gets codeintel whole on each.
func TestServe_AutoscaleBothClouds(t *testing.T) {
	cw, gm := autoscaletest.NewCloudWatch(t, testAWSKey, testAWSSecret), autoscaletest.NewMonitoring(t)
	env := append(awsEnv(t, cw), gcpEnv(gm)...)
	env = append(env, `EXECUTOR_ALLOCATIONS={"batches": {"aws": 0.5, "gcp": 0.5}}`)
	p := startCoordinatorEnv(t, "", env...)
	queueJobs(t, p)
	want := map[string]float64{"batches": 2, "codeintel": 1, "batches_codeintel": 3}
	waitFor(t, 10*time.Second, fmt.Sprintf("both fakes receive %v", want), func() bool {
		return sizesAre(latestCW(t, cw), want) && sizesAre(latestGCP(t, gm), want)
	}, p.logText)
}

// TestServe_AutoscaleFailingSink: a CloudWatch answering 500 is logged
// with the reason and retried at each tick while the coordinator keeps
// serving; once it recovers, the figures arrive.
func TestServe_AutoscaleFailingSink(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testAWSKey, testAWSSecret)
	fake.Fail(http.StatusInternalServerError)
	p := startCoordinatorEnv(t, "", awsEnv(t, fake)...)
	queueJobs(t, p) // the API serves
	waitFor(t, 15*time.Second, "two failed ticks logged", func() bool {
		return strings.Count(p.logText(), "publishing the queue sizes failed") >= 2
	}, p.logText)
	logs := p.logText()
	for _, want := range []string{"sink=aws", "StatusCode: 500", "retrying at the next tick", "PutMetricData"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if resp, err := http.Get("http://" + p.addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz while CloudWatch fails: %v %v", resp, err)
	}
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`execd_autoscale_publish_failures_total{sink="aws"}`, `src_executors_queue_size{queue="batches"} 3`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	fake.Fail(0)
	waitFor(t, 10*time.Second, "figures after CloudWatch recovers", func() bool { return sizesAre(latestCW(t, fake), wantSizes) }, p.logText)
}

// TestServe_AutoscaleOnePublisher runs two coordinators on one database,
// each with a fake of its own: only one publishes; when it stops
// (SIGTERM: it releases the lease), the other takes over.
func TestServe_AutoscaleOnePublisher(t *testing.T) {
	for _, tc := range []struct {
		name string
		db   func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "shared.db") }},
		{"postgres", func(t *testing.T) string { return pgtest.URL(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.db(t)
			fa, fb := autoscaletest.NewMonitoring(t), autoscaletest.NewMonitoring(t)
			a := startCoordinatorEnv(t, db, gcpEnv(fa)...)
			b := startCoordinatorEnv(t, db, gcpEnv(fb)...)
			both := func() string { return "a:\n" + a.logText() + "\nb:\n" + b.logText() }
			waitFor(t, 10*time.Second, "a publishes", func() bool { return fa.Calls() > 0 }, both)
			time.Sleep(6 * time.Second) // a tick of each more
			if n := fb.Calls(); n != 0 {
				t.Fatalf("b published %d times while a held the lease:\n%s", n, both())
			}
			if !strings.Contains(b.logText(), "stands by") {
				t.Errorf("b's log does not say it stands by:\n%s", b.logText())
			}
			if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			_ = a.cmd.Wait()
			waitFor(t, 10*time.Second, "b takes over after a stops", func() bool { return fb.Calls() > 0 }, both)
		})
	}
}

// TestMetricSinks_Errors: a misconfiguration stops serve with an error
// naming the variable.
func TestMetricSinks_Errors(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad allocations", map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_ALLOCATIONS": `{"batches": {"gcp": 2}}`}, "EXECUTOR_ALLOCATIONS"},
		{"allocations not JSON", map[string]string{"EXECUTOR_ALLOCATIONS": `batches`}, "EXECUTOR_ALLOCATIONS"},
		{"half the AWS keys", map[string]string{"EXECUTOR_METRIC_AWS_NAMESPACE": "sourcegraph-executor", "EXECUTOR_METRIC_AWS_ACCESS_KEY_ID": "k"}, "EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY"},
		{"GCP credentials without project", map[string]string{"EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT": "{}"}, "EXECUTOR_METRIC_GCP_PROJECT_ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sinks, _, closeAll, err := metricSinks(t.Context(), func(k string) string { return tt.env[k] }, logger)
			closeAll()
			if err == nil || !strings.Contains(err.Error(), tt.want) || len(sinks) != 0 {
				t.Errorf("metricSinks = %d sinks, %v; want an error naming %s", len(sinks), err, tt.want)
			}
		})
	}
	sinks, _, closeAll, err := metricSinks(t.Context(), func(string) string { return "" }, logger)
	closeAll()
	if err != nil || len(sinks) != 0 {
		t.Errorf("metricSinks with nothing set = %d sinks, %v; want none, nil (publishing is off)", len(sinks), err)
	}
}

func TestWarnUnknownQueues(t *testing.T) {
	var b strings.Builder
	logger := slog.New(slog.NewTextHandler(&b, nil))
	warnUnknownQueues(map[string]map[string]float64{"batches": {"aws": 1}, "batch": {"gcp": 1}}, []string{"batches", "codeintel"}, logger)
	if got := b.String(); !strings.Contains(got, "queue=batch ") || strings.Contains(got, "queue=batches") {
		t.Errorf("log = %q, want one warning about batch only", got)
	}
}
