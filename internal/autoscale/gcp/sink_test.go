package gcp_test

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/execd/execd/internal/autoscale"
	"github.com/execd/execd/internal/autoscale/autoscaletest"
	"github.com/execd/execd/internal/autoscale/gcp"
)

func newSink(t *testing.T, cfg gcp.Config) *gcp.Sink {
	t.Helper()
	s, err := gcp.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSink_Publish(t *testing.T) {
	fake := autoscaletest.NewMonitoring(t)
	s := newSink(t, gcp.Config{ProjectID: "my-project", Endpoint: fake.Addr, Environment: "prod"})
	if err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 400}, {Queue: "batches_codeintel", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	series := func(queue string, v int64) autoscaletest.Series {
		return autoscaletest.Series{
			Name: "projects/my-project", Type: "custom.googleapis.com/executors/queue/size",
			Labels:   map[string]string{"queueName": queue, "environment": "prod"},
			Resource: "global", ResourceLabels: map[string]string{"project_id": "my-project"},
			Kind: "GAUGE", ValueType: "INT64", Value: v, Points: 1, Interval: true,
		}
	}
	want := []autoscaletest.Series{series("batches", 400), series("batches_codeintel", 0)}
	if got := fake.Series(); !reflect.DeepEqual(got, want) {
		t.Errorf("fake received\n%+v\nwant\n%+v", got, want)
	}
	if s.Name() != "gcp" {
		t.Errorf("Name = %q, want gcp", s.Name())
	}
}

func TestSink_PublishSplit(t *testing.T) {
	fake := autoscaletest.NewMonitoring(t)
	s := newSink(t, gcp.Config{ProjectID: "p", Endpoint: fake.Addr, Environment: "dev"})
	samples := make([]autoscale.Sample, 450)
	for i := range samples {
		samples[i] = autoscale.Sample{Queue: "q" + strings.Repeat("x", i%5), Value: int64(i)}
	}
	if err := s.Publish(t.Context(), samples); err != nil {
		t.Fatal(err)
	}
	if n, calls := len(fake.Series()), fake.Calls(); n != 450 || calls != 3 {
		t.Errorf("fake received %d series in %d calls, want 450 in 3 (at most 200 a call)", n, calls)
	}
}

func TestSink_Failure(t *testing.T) {
	fake := autoscaletest.NewMonitoring(t)
	s := newSink(t, gcp.Config{ProjectID: "p", Endpoint: fake.Addr, Environment: "dev"})
	fake.Fail(codes.PermissionDenied)
	err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 1}})
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), "CreateTimeSeries in project p") {
		t.Errorf("Publish to a failing Cloud Monitoring: %v, want an error naming the call, the project and the code", err)
	}
	fake.Fail(codes.OK)
	if err := s.Publish(t.Context(), []autoscale.Sample{{Queue: "batches", Value: 1}}); err != nil {
		t.Errorf("Publish after recovery: %v", err)
	}
}
