// Package cloudwatch publishes the autoscaling metric to Amazon
// CloudWatch, as the reference does, for the alarms of the executors'
// auto scaling groups: metric [MetricName] in the configured namespace
// (the guide's [DefaultNamespace]), with dimensions queueName and
// environment, one PutMetricData call a tick.
//
// It uses aws-sdk-go-v2, so the SDK's own settings apply: the default
// credential chain when no keys are configured, and AWS_ENDPOINT_URL or
// AWS_ENDPOINT_URL_CLOUDWATCH to send the calls elsewhere (a test fake).
package cloudwatch

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/execd/execd/internal/autoscale"
)

// The reference's names, which its Terraform alarms query.
const (
	MetricName       = "src_executors_queue_size"
	DimensionQueue   = "queueName"
	DimensionEnv     = "environment"
	DefaultNamespace = "sourcegraph-executor"
	maxDatumsPerCall = 1000 // PutMetricData's limit
	sinkName         = "aws"
)

// Sink publishes to CloudWatch. It is safe for concurrent use.
type Sink struct {
	client    *cloudwatch.Client
	namespace string
	env       string
}

var _ autoscale.Sink = (*Sink)(nil)

// New makes a sink of cfg (see [Config]). It resolves the region and the
// credential chain now, but calls nothing: a bad key shows at the first
// Publish.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloudwatch: load the AWS SDK's configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("cloudwatch: no region: set %s (or the SDK's AWS_REGION)", EnvRegion)
	}
	return &Sink{client: cloudwatch.NewFromConfig(awsCfg), namespace: cfg.Namespace, env: cfg.Environment}, nil
}

// Name is "aws", the sink's key in EXECUTOR_ALLOCATIONS.
func (s *Sink) Name() string { return sinkName }

// Publish puts one datum per sample.
func (s *Sink) Publish(ctx context.Context, samples []autoscale.Sample) error {
	for len(samples) > 0 {
		n := min(len(samples), maxDatumsPerCall)
		if _, err := s.client.PutMetricData(ctx, s.input(samples[:n])); err != nil {
			return err // the SDK's error names the operation, the status and the service's message
		}
		samples = samples[n:]
	}
	return nil
}

// input is the PutMetricData request of samples.
func (s *Sink) input(samples []autoscale.Sample) *cloudwatch.PutMetricDataInput {
	data := make([]types.MetricDatum, len(samples))
	for i, sm := range samples {
		data[i] = types.MetricDatum{
			MetricName: aws.String(MetricName),
			Unit:       types.StandardUnitCount,
			Value:      aws.Float64(float64(sm.Value)),
			Dimensions: []types.Dimension{
				{Name: aws.String(DimensionQueue), Value: aws.String(sm.Queue)},
				{Name: aws.String(DimensionEnv), Value: aws.String(s.env)},
			},
		}
	}
	return &cloudwatch.PutMetricDataInput{Namespace: aws.String(s.namespace), MetricData: data}
}
