// Package gcp publishes the autoscaling metric to Google Cloud
// Monitoring, as the reference does, for the autoscalers of the
// executors' instance groups: the custom metric [MetricType] with labels
// queueName and environment on the global resource of the configured
// project, one CreateTimeSeries call a tick.
//
// EXECUTOR_METRIC_GCP_ENDPOINT (ours; the client library has no variable
// for it) sends the calls to another host:port, such as a test fake:
// over plain gRPC without credentials when the host is a loopback
// address, over TLS with the credentials otherwise.
package gcp

import (
	"context"
	"fmt"
	"net"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/option"
	metricpb "google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/execd/execd/internal/autoscale"
)

// The reference's names, which its Terraform autoscalers query.
const (
	MetricType        = "custom.googleapis.com/executors/queue/size"
	LabelQueue        = "queueName"
	LabelEnv          = "environment"
	ResourceType      = "global"
	maxSeriesPerCall  = 200 // CreateTimeSeries's limit
	sinkName          = "gcp"
	resourceProjectID = "project_id"
)

// Sink publishes to Cloud Monitoring. It is safe for concurrent use.
type Sink struct {
	client  *monitoring.MetricClient
	project string
	env     string
	now     func() time.Time
}

var _ autoscale.Sink = (*Sink)(nil)

// New makes a sink of cfg (see [Config]). It reads the credentials now
// but calls nothing: a refused key shows at the first Publish.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	opts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
	}
	client, err := monitoring.NewMetricClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud monitoring: %w", err)
	}
	return &Sink{client: client, project: cfg.ProjectID, env: cfg.Environment, now: time.Now}, nil
}

func clientOptions(cfg Config) ([]option.ClientOption, error) {
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
		if isLoopback(cfg.Endpoint) {
			// A fake on this machine: no TLS, and so no credentials,
			// which gRPC sends only over a secure transport.
			return append(opts,
				option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials()))), nil
		}
	}
	switch {
	case cfg.CredentialsJSON != nil:
		typ, err := credentialsType(cfg.CredentialsJSON)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option.WithAuthCredentialsJSON(typ, cfg.CredentialsJSON))
	case cfg.CredentialsFile != "":
		typ, err := credentialsFileType(cfg.CredentialsFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option.WithAuthCredentialsFile(typ, cfg.CredentialsFile))
	}
	// Neither: Application Default Credentials.
	return opts, nil
}

// isLoopback reports whether a host:port endpoint is on this machine.
func isLoopback(endpoint string) bool {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		host = endpoint
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name is "gcp", the sink's key in EXECUTOR_ALLOCATIONS.
func (s *Sink) Name() string { return sinkName }

// Close closes the client's connection.
func (s *Sink) Close() error { return s.client.Close() }

// Publish writes one point per sample, each its own time series.
func (s *Sink) Publish(ctx context.Context, samples []autoscale.Sample) error {
	now := timestamppb.New(s.now())
	for len(samples) > 0 {
		n := min(len(samples), maxSeriesPerCall)
		if err := s.client.CreateTimeSeries(ctx, s.request(samples[:n], now)); err != nil {
			return fmt.Errorf("cloud monitoring: CreateTimeSeries in project %s: %w", s.project, err)
		}
		samples = samples[n:]
	}
	return nil
}

// request is the CreateTimeSeries request of samples at now.
func (s *Sink) request(samples []autoscale.Sample, now *timestamppb.Timestamp) *monitoringpb.CreateTimeSeriesRequest {
	series := make([]*monitoringpb.TimeSeries, len(samples))
	for i, sm := range samples {
		series[i] = &monitoringpb.TimeSeries{
			Metric: &metricpb.Metric{
				Type:   MetricType,
				Labels: map[string]string{LabelQueue: sm.Queue, LabelEnv: s.env},
			},
			Resource: &monitoredres.MonitoredResource{
				Type:   ResourceType,
				Labels: map[string]string{resourceProjectID: s.project},
			},
			MetricKind: metricpb.MetricDescriptor_GAUGE,
			ValueType:  metricpb.MetricDescriptor_INT64,
			Points: []*monitoringpb.Point{{
				Interval: &monitoringpb.TimeInterval{StartTime: now, EndTime: now},
				Value:    &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: sm.Value}},
			}},
		}
	}
	return &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + s.project, TimeSeries: series}
}
