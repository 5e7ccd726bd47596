package cloudwatch_test

import (
	"strings"
	"testing"

	"github.com/execd/execd/internal/autoscale/cloudwatch"
)

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		wantOK       bool
		want         cloudwatch.Config
		wantErr      string
		wantWarnings []string
	}{
		{name: "unset", env: nil},
		{name: "guide", env: map[string]string{
			"EXECUTOR_METRIC_AWS_NAMESPACE": "sourcegraph-executor", "EXECUTOR_METRIC_AWS_REGION": "us-west-2",
			"EXECUTOR_METRIC_AWS_ACCESS_KEY_ID": "AKIA1", "EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY": "s3cret",
		}, wantOK: true, want: cloudwatch.Config{Namespace: "sourcegraph-executor", Region: "us-west-2", AccessKeyID: "AKIA1", SecretAccessKey: "s3cret", Environment: "prod"}},
		{name: "other namespace, default chain, SDK region", env: map[string]string{"EXECUTOR_METRIC_AWS_NAMESPACE": "mine"},
			wantOK: true, want: cloudwatch.Config{Namespace: "mine", Environment: "prod"},
			wantWarnings: []string{`EXECUTOR_METRIC_AWS_NAMESPACE is "mine"`, "EXECUTOR_METRIC_AWS_REGION is not set", "default credential chain"}},
		{name: "session token", env: map[string]string{
			"EXECUTOR_METRIC_AWS_NAMESPACE": "sourcegraph-executor", "EXECUTOR_METRIC_AWS_REGION": "us-west-2",
			"EXECUTOR_METRIC_AWS_ACCESS_KEY_ID": "AKIA1", "EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY": "s3cret", "EXECUTOR_METRIC_AWS_SESSION_TOKEN": "tok",
		}, wantOK: true, want: cloudwatch.Config{Namespace: "sourcegraph-executor", Region: "us-west-2", AccessKeyID: "AKIA1", SecretAccessKey: "s3cret", SessionToken: "tok", Environment: "prod"}},
		{name: "key without secret", env: map[string]string{"EXECUTOR_METRIC_AWS_NAMESPACE": "sourcegraph-executor", "EXECUTOR_METRIC_AWS_ACCESS_KEY_ID": "AKIA1"},
			wantErr: "set both EXECUTOR_METRIC_AWS_ACCESS_KEY_ID and EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY"},
		{name: "secret without key", env: map[string]string{"EXECUTOR_METRIC_AWS_NAMESPACE": "sourcegraph-executor", "EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY": "s"},
			wantErr: "set both"},
		{name: "token alone", env: map[string]string{"EXECUTOR_METRIC_AWS_NAMESPACE": "sourcegraph-executor", "EXECUTOR_METRIC_AWS_SESSION_TOKEN": "t"},
			wantErr: "EXECUTOR_METRIC_AWS_SESSION_TOKEN is set without"},
		{name: "region without namespace", env: map[string]string{"EXECUTOR_METRIC_AWS_REGION": "us-west-2"},
			wantErr: "EXECUTOR_METRIC_AWS_REGION is set but EXECUTOR_METRIC_AWS_NAMESPACE is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok, warnings, err := cloudwatch.ConfigFromEnv(func(k string) string { return tt.env[k] }, "prod")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.wantOK || cfg != tt.want {
				t.Fatalf("ConfigFromEnv = %+v, %v, %v; want %+v, %v, nil", cfg, ok, err, tt.want, tt.wantOK)
			}
			if len(warnings) != len(tt.wantWarnings) {
				t.Fatalf("warnings = %q, want %d", warnings, len(tt.wantWarnings))
			}
			for i, w := range tt.wantWarnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}
