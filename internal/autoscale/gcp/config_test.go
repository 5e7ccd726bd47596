package gcp_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/execd/execd/internal/autoscale/gcp"
)

const keyJSON = `{"type": "service_account", "project_id": "p", "client_email": "metric-writer@p.iam.gserviceaccount.com"}`

func TestConfigFromEnv(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.json")
	badFile := filepath.Join(dir, "bad.json")
	for path, data := range map[string]string{keyFile: keyJSON, badFile: `{"client_email": "x"}`} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name         string
		env          map[string]string
		wantOK       bool
		check        func(t *testing.T, c gcp.Config)
		wantErr      string
		wantWarnings []string
	}{
		{name: "unset"},
		{name: "file", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE": keyFile}, wantOK: true,
			check: func(t *testing.T, c gcp.Config) {
				if c.ProjectID != "p" || c.CredentialsFile != keyFile || c.CredentialsJSON != nil || c.Environment != "prod" {
					t.Errorf("config = %+v", c)
				}
			}},
		{name: "content", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT": keyJSON}, wantOK: true,
			check: func(t *testing.T, c gcp.Config) {
				if string(c.CredentialsJSON) != keyJSON {
					t.Errorf("CredentialsJSON = %s", c.CredentialsJSON)
				}
			}},
		{name: "content still base64", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT": base64.StdEncoding.EncodeToString([]byte(keyJSON))}, wantOK: true,
			wantWarnings: []string{"holds base64: decoded it"},
			check: func(t *testing.T, c gcp.Config) {
				if string(c.CredentialsJSON) != keyJSON {
					t.Errorf("CredentialsJSON = %s", c.CredentialsJSON)
				}
			}},
		{name: "default credentials", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p"}, wantOK: true,
			wantWarnings: []string{"Application Default Credentials apply"}},
		{name: "loopback endpoint", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GCP_ENDPOINT": "127.0.0.1:8085"}, wantOK: true,
			wantWarnings: []string{"a loopback address: calling it without TLS or credentials"}},
		{name: "both credentials", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE": keyFile, "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT": keyJSON},
			wantErr: "are both set"},
		{name: "missing file", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE": filepath.Join(dir, "none")},
			wantErr: "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE: open"},
		{name: "file without type", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE": badFile},
			wantErr: `no "type"`},
		{name: "content not JSON", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT": "hello"},
			wantErr: "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT: not a Google credentials JSON file"},
		{name: "unsupported type", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT": `{"type": "gdch_service_account"}`},
			wantErr: `type "gdch_service_account" are not supported`},
		{name: "endpoint without port", env: map[string]string{"EXECUTOR_METRIC_GCP_PROJECT_ID": "p", "EXECUTOR_METRIC_GCP_ENDPOINT": "localhost"},
			wantErr: "want host:port"},
		{name: "credentials without project", env: map[string]string{"EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE": keyFile},
			wantErr: "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE is set but EXECUTOR_METRIC_GCP_PROJECT_ID is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok, warnings, err := gcp.ConfigFromEnv(func(k string) string { return tt.env[k] }, "prod")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.wantOK {
				t.Fatalf("ConfigFromEnv = %+v, %v, %v; want ok %v", cfg, ok, err, tt.wantOK)
			}
			if tt.check != nil {
				tt.check(t, cfg)
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
