package main

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/execd/execd/internal/autoscale"
	"github.com/execd/execd/internal/autoscale/cloudwatch"
	"github.com/execd/execd/internal/autoscale/gcp"
)

// EnvMetricEnvironment is the guide's variable for the environment
// dimension or label of the autoscaling metric.
const EnvMetricEnvironment = "EXECUTOR_METRIC_ENVIRONMENT_LABEL"

// defaultMetricEnvironment is the reference's default label.
const defaultMetricEnvironment = "dev"

// metricSinks builds the autoscaling metric's sinks from the guide's
// variables (docs/autoscaling.md): CloudWatch when
// EXECUTOR_METRIC_AWS_NAMESPACE is set, Cloud Monitoring when
// EXECUTOR_METRIC_GCP_PROJECT_ID is, none otherwise. closeAll closes
// them.
func metricSinks(ctx context.Context, getenv func(string) string, logger *slog.Logger) (sinks []autoscale.Sink, alloc autoscale.Allocations, closeAll func(), err error) {
	closeAll = func() {
		for _, s := range sinks {
			if c, ok := s.(io.Closer); ok {
				c.Close()
			}
		}
	}
	env := strings.TrimSpace(getenv(EnvMetricEnvironment))
	labelSet := env != ""
	if !labelSet {
		env = defaultMetricEnvironment
	}
	var warnings []string
	awsCfg, awsOK, w, err := cloudwatch.ConfigFromEnv(getenv, env)
	if err != nil {
		return nil, nil, closeAll, err
	}
	warnings = append(warnings, w...)
	gcpCfg, gcpOK, w, err := gcp.ConfigFromEnv(getenv, env)
	if err != nil {
		return nil, nil, closeAll, err
	}
	warnings = append(warnings, w...)
	var clouds []string
	if awsOK {
		clouds = append(clouds, "aws")
	}
	if gcpOK {
		clouds = append(clouds, "gcp")
	}
	alloc, w, err = autoscale.ParseAllocations(getenv(autoscale.AllocationsEnv), clouds)
	if err != nil {
		return nil, nil, closeAll, err
	}
	warnings = append(warnings, w...)
	if len(clouds) == 0 {
		if strings.TrimSpace(getenv(autoscale.AllocationsEnv)) != "" {
			logger.Warn("autoscale: " + autoscale.AllocationsEnv + " is set but no metric sink is: nothing is published (set " + cloudwatch.EnvNamespace + " or " + gcp.EnvProjectID + ")")
		}
		return nil, nil, closeAll, nil
	}
	if !labelSet {
		warnings = append(warnings, EnvMetricEnvironment+` is not set: the environment is "dev"; set it to the executors' metrics_environment_label`)
	}
	for _, w := range warnings {
		logger.Warn("autoscale: " + w)
	}
	if awsOK {
		s, err := cloudwatch.New(ctx, awsCfg)
		if err != nil {
			return nil, nil, closeAll, err
		}
		sinks = append(sinks, s)
	}
	if gcpOK {
		s, err := gcp.New(ctx, gcpCfg)
		if err != nil {
			closeAll()
			return nil, nil, closeAll, err
		}
		sinks = append(sinks, s)
	}
	return sinks, alloc, closeAll, nil
}

// warnUnknownQueues warns of queues that EXECUTOR_ALLOCATIONS names but
// the site config does not: a typo there publishes the queue whole.
func warnUnknownQueues(alloc autoscale.Allocations, queues []string, logger *slog.Logger) {
	for q := range alloc {
		if !slices.Contains(queues, q) {
			logger.Warn("autoscale: "+autoscale.AllocationsEnv+" names a queue the site config does not list", "queue", q, "queues", queues)
		}
	}
}
