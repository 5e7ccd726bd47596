package gcp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/api/option"
)

// The guide's variables, and our endpoint override.
const (
	EnvProjectID          = "EXECUTOR_METRIC_GCP_PROJECT_ID"
	EnvCredentialsFile    = "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE"
	EnvCredentialsContent = "EXECUTOR_METRIC_GOOGLE_APPLICATION_CREDENTIALS_FILE_CONTENT"
	EnvEndpoint           = "EXECUTOR_METRIC_GCP_ENDPOINT"
)

// Config configures a [Sink].
type Config struct {
	// ProjectID is the project whose custom metric is written.
	ProjectID string
	// CredentialsFile or CredentialsJSON is a key file (the credentials
	// module's metric_writer_credentials_file, decoded); with neither,
	// Application Default Credentials apply.
	CredentialsFile string
	CredentialsJSON []byte
	// Endpoint, when set, is the host:port to call instead of Cloud
	// Monitoring's; a loopback one is called without TLS or credentials.
	Endpoint string
	// Environment is the environment label's value.
	Environment string
}

// ConfigFromEnv reads the guide's variables through getenv. ok is false
// when EXECUTOR_METRIC_GCP_PROJECT_ID is unset: Cloud Monitoring is not
// configured. Errors and warnings name the variables.
func ConfigFromEnv(getenv func(string) string, environment string) (cfg Config, ok bool, warnings []string, err error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	cfg = Config{
		ProjectID:       get(EnvProjectID),
		CredentialsFile: get(EnvCredentialsFile),
		Endpoint:        get(EnvEndpoint),
		Environment:     environment,
	}
	content := get(EnvCredentialsContent)
	if cfg.ProjectID == "" {
		for _, k := range []string{EnvCredentialsFile, EnvCredentialsContent, EnvEndpoint} {
			if get(k) != "" {
				return Config{}, false, nil, fmt.Errorf("%s is set but %s is not: set it to publish to Cloud Monitoring, or unset the other", k, EnvProjectID)
			}
		}
		return Config{}, false, nil, nil
	}
	if cfg.CredentialsFile != "" && content != "" {
		return Config{}, false, nil, fmt.Errorf("%s and %s are both set: set one", EnvCredentialsFile, EnvCredentialsContent)
	}
	if content != "" {
		js, warning, err := decodeContent(content)
		if err != nil {
			return Config{}, false, nil, err
		}
		if warning != "" {
			warnings = append(warnings, warning)
		}
		cfg.CredentialsJSON = js
	}
	if cfg.CredentialsFile != "" {
		if _, err := credentialsFileType(cfg.CredentialsFile); err != nil {
			return Config{}, false, nil, err
		}
	}
	if cfg.Endpoint != "" {
		if _, _, err := net.SplitHostPort(cfg.Endpoint); err != nil {
			return Config{}, false, nil, fmt.Errorf("%s %q: want host:port, such as 127.0.0.1:8085", EnvEndpoint, cfg.Endpoint)
		}
		if isLoopback(cfg.Endpoint) {
			warnings = append(warnings, fmt.Sprintf("%s is %s, a loopback address: calling it without TLS or credentials (a test fake)", EnvEndpoint, cfg.Endpoint))
		}
	}
	if cfg.CredentialsFile == "" && cfg.CredentialsJSON == nil && !isLoopback(cfg.Endpoint) {
		warnings = append(warnings, fmt.Sprintf("neither %s nor %s is set: Application Default Credentials apply", EnvCredentialsFile, EnvCredentialsContent))
	}
	return cfg, true, warnings, nil
}

// decodeContent returns the key file in the content variable. The guide
// asks for the base64-decoded Terraform output; the encoded form is
// accepted too, with a warning.
func decodeContent(content string) ([]byte, string, error) {
	if _, err := credentialsType([]byte(content)); err == nil {
		return []byte(content), "", nil
	}
	if b, err := base64.StdEncoding.DecodeString(content); err == nil {
		if _, err := credentialsType(b); err == nil {
			return b, fmt.Sprintf("%s holds base64: decoded it (the guide's form is the decoded JSON)", EnvCredentialsContent), nil
		}
	}
	_, err := credentialsType([]byte(content))
	return nil, "", fmt.Errorf("%s: %w", EnvCredentialsContent, err)
}

// credentialsType reads the type of a key file and checks that it is one
// the client library accepts.
func credentialsType(js []byte) (option.CredentialsType, error) {
	var f struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(js, &f); err != nil {
		return "", fmt.Errorf("not a Google credentials JSON file: %v", err)
	}
	switch t := option.CredentialsType(f.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ExternalAccount, option.ImpersonatedServiceAccount:
		return t, nil
	case "":
		return "", fmt.Errorf("not a Google credentials JSON file: no \"type\" (want %q, as the credentials module writes)", option.ServiceAccount)
	default:
		return "", fmt.Errorf("credentials of type %q are not supported: want %q", f.Type, option.ServiceAccount)
	}
}

func credentialsFileType(path string) (option.CredentialsType, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvCredentialsFile, err)
	}
	t, err := credentialsType(b)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", EnvCredentialsFile, path, err)
	}
	return t, nil
}
