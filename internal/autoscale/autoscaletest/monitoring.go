package autoscaletest

import (
	"context"
	"net"
	"sync"
	"testing"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Series is one time series point that the Cloud Monitoring fake accepted.
type Series struct {
	Name            string // of the request: projects/<id>
	Type            string // of the metric
	Labels          map[string]string
	Resource        string
	ResourceLabels  map[string]string
	Kind, ValueType string // the metric kind and value type
	Value           int64  // the point's int64 value
	Points          int    // points in the series (the API takes one)
	Interval        bool   // the point's interval has an end time
}

// Monitoring is a fake Cloud Monitoring MetricService on loopback, over
// plain gRPC. It serves CreateTimeSeries only.
type Monitoring struct {
	monitoringpb.UnimplementedMetricServiceServer
	// Addr is its host:port.
	Addr string

	mu     sync.Mutex
	series []Series
	code   codes.Code
	calls  int
}

// NewMonitoring starts a fake Cloud Monitoring, stopped when t ends.
func NewMonitoring(t testing.TB) *Monitoring {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Monitoring{Addr: l.Addr().String()}
	srv := grpc.NewServer()
	monitoringpb.RegisterMetricServiceServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return f
}

// Fail makes every later call fail with code (codes.OK: succeed again).
func (f *Monitoring) Fail(code codes.Code) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.code = code
}

// Series returns the series accepted so far.
func (f *Monitoring) Series() []Series {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Series(nil), f.series...)
}

// Calls is the number of CreateTimeSeries calls received, failed or not.
func (f *Monitoring) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// CreateTimeSeries records the request's series.
func (f *Monitoring) CreateTimeSeries(ctx context.Context, req *monitoringpb.CreateTimeSeriesRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.code != codes.OK {
		return nil, status.Errorf(f.code, "the fake fails with %v", f.code)
	}
	for _, ts := range req.GetTimeSeries() {
		s := Series{
			Name:           req.GetName(),
			Type:           ts.GetMetric().GetType(),
			Labels:         ts.GetMetric().GetLabels(),
			Resource:       ts.GetResource().GetType(),
			ResourceLabels: ts.GetResource().GetLabels(),
			Kind:           ts.GetMetricKind().String(),
			ValueType:      ts.GetValueType().String(),
			Points:         len(ts.GetPoints()),
		}
		if len(ts.GetPoints()) > 0 {
			p := ts.GetPoints()[0]
			s.Value = p.GetValue().GetInt64Value()
			s.Interval = p.GetInterval().GetEndTime() != nil
		}
		f.series = append(f.series, s)
	}
	return &emptypb.Empty{}, nil
}
