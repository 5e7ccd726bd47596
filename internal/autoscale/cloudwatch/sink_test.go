package cloudwatch_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/execd/execd/internal/autoscale"
	"github.com/execd/execd/internal/autoscale/autoscaletest"
	"github.com/execd/execd/internal/autoscale/cloudwatch"
)

const (
	testKey    = "AKIAEXECDTEST0000001"
	testSecret = "execd-test-secret-key-0123456789abcdef"
)

// isolate keeps the SDK away from this machine's AWS settings and points
// it at fake through the SDK's own variable.
func isolate(t *testing.T, fake *autoscaletest.CloudWatch) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL_CLOUDWATCH", fake.URL)
}

func newSink(t *testing.T, cfg cloudwatch.Config) *cloudwatch.Sink {
	t.Helper()
	s, err := cloudwatch.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSink_Publish(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testKey, testSecret)
	isolate(t, fake)
	s := newSink(t, cloudwatch.Config{Namespace: "sourcegraph-executor", Region: "eu-west-1", AccessKeyID: testKey, SecretAccessKey: testSecret, Environment: "prod"})
	if err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 400}, {Queue: "batches_codeintel", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	want := []autoscaletest.Datum{
		{Namespace: "sourcegraph-executor", MetricName: "src_executors_queue_size", Unit: "Count", Value: 400,
			Dimensions: map[string]string{"queueName": "batches", "environment": "prod"}, AccessKeyID: testKey, Region: "eu-west-1"},
		{Namespace: "sourcegraph-executor", MetricName: "src_executors_queue_size", Unit: "Count", Value: 0,
			Dimensions: map[string]string{"queueName": "batches_codeintel", "environment": "prod"}, AccessKeyID: testKey, Region: "eu-west-1"},
	}
	if got := fake.Data(); !reflect.DeepEqual(got, want) {
		t.Errorf("fake received\n%+v\nwant\n%+v", got, want)
	}
	if s.Name() != "aws" {
		t.Errorf("Name = %q, want aws", s.Name())
	}
}

// TestSink_PublishLarge checks that a request over 10 KiB arrives gzipped
// and that more samples than a call takes are split.
func TestSink_PublishLarge(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testKey, testSecret)
	isolate(t, fake)
	s := newSink(t, cloudwatch.Config{Namespace: "sourcegraph-executor", Region: "us-east-1", AccessKeyID: testKey, SecretAccessKey: testSecret, Environment: "dev"})
	samples := make([]autoscale.Sample, 1200)
	for i := range samples {
		samples[i] = autoscale.Sample{Queue: fmt.Sprintf("queue-%04d", i), Value: int64(i)}
	}
	if err := s.Publish(t.Context(), samples); err != nil {
		t.Fatal(err)
	}
	got := fake.Data()
	if len(got) != len(samples) || fake.Calls() != 2 {
		t.Fatalf("fake received %d data in %d calls, want %d in 2", len(got), fake.Calls(), len(samples))
	}
	for i, d := range got {
		if d.Dimensions["queueName"] != samples[i].Queue || d.Value != float64(samples[i].Value) || !d.Gzipped {
			t.Fatalf("datum %d = %+v, want queue %s value %d, gzipped", i, d, samples[i].Queue, samples[i].Value)
		}
	}
}

// TestSink_DefaultChain checks that without keys of its own the sink uses
// the SDK's default credential chain and region.
func TestSink_DefaultChain(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testKey, testSecret)
	isolate(t, fake)
	t.Setenv("AWS_ACCESS_KEY_ID", testKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_REGION", "ap-south-1")
	s := newSink(t, cloudwatch.Config{Namespace: "other", Environment: "dev"})
	if err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := fake.Data(); len(got) != 1 || got[0].AccessKeyID != testKey || got[0].Region != "ap-south-1" || got[0].Namespace != "other" {
		t.Errorf("fake received %+v, want one datum signed by %s in ap-south-1, namespace other", got, testKey)
	}
}

func TestSink_NoRegion(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testKey, testSecret)
	isolate(t, fake)
	_, err := cloudwatch.New(t.Context(), cloudwatch.Config{Namespace: "sourcegraph-executor", AccessKeyID: testKey, SecretAccessKey: testSecret})
	if err == nil || !strings.Contains(err.Error(), "EXECUTOR_METRIC_AWS_REGION") {
		t.Errorf("New without a region: %v, want an error naming EXECUTOR_METRIC_AWS_REGION", err)
	}
}

func TestSink_Failure(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(t, testKey, testSecret)
	isolate(t, fake)
	s := newSink(t, cloudwatch.Config{Namespace: "sourcegraph-executor", Region: "us-east-1", AccessKeyID: testKey, SecretAccessKey: testSecret})
	fake.Fail(http.StatusInternalServerError)
	err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 1}})
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "PutMetricData") {
		t.Errorf("Publish to a failing CloudWatch: %v, want an error naming PutMetricData and 500", err)
	}
	fake.Fail(0)
	if err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 1}}); err != nil {
		t.Errorf("Publish after recovery: %v", err)
	}
}

func TestSink_WrongSecret(t *testing.T) {
	fake := autoscaletest.NewCloudWatch(&ignoreErrors{T: t}, testKey, testSecret)
	isolate(t, fake)
	s := newSink(t, cloudwatch.Config{Namespace: "sourcegraph-executor", Region: "us-east-1", AccessKeyID: testKey, SecretAccessKey: "wrong"})
	if err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 1}}); err == nil {
		t.Error("Publish signed with a wrong secret succeeded; the fake must verify signatures")
	}
}

// ignoreErrors is a testing.TB whose Errorf does not fail the test: the
// fake reports requests it refuses through it.
type ignoreErrors struct{ *testing.T }

func (i *ignoreErrors) Errorf(string, ...any) {}
