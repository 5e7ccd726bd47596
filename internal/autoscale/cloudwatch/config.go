package cloudwatch

import (
	"fmt"
	"strings"
)

// The guide's variables.
const (
	EnvNamespace    = "EXECUTOR_METRIC_AWS_NAMESPACE"
	EnvRegion       = "EXECUTOR_METRIC_AWS_REGION"
	EnvAccessKeyID  = "EXECUTOR_METRIC_AWS_ACCESS_KEY_ID"
	EnvSecretKey    = "EXECUTOR_METRIC_AWS_SECRET_ACCESS_KEY"
	EnvSessionToken = "EXECUTOR_METRIC_AWS_SESSION_TOKEN" // the reference's optional one
)

// Config configures a [Sink].
type Config struct {
	// Namespace is the metric's namespace; the guide's Terraform modules
	// expect DefaultNamespace.
	Namespace string
	// Region is the CloudWatch region; empty leaves it to the SDK
	// (AWS_REGION, the shared config file).
	Region string
	// AccessKeyID, SecretAccessKey and SessionToken are static keys; with
	// none, the SDK's default credential chain applies (environment,
	// shared files, web identity, ECS or EC2 roles).
	AccessKeyID, SecretAccessKey, SessionToken string
	// Environment is the environment dimension's value.
	Environment string
}

// ConfigFromEnv reads the guide's variables through getenv. ok is false
// when EXECUTOR_METRIC_AWS_NAMESPACE is unset: CloudWatch is not
// configured. Errors and warnings name the variables.
func ConfigFromEnv(getenv func(string) string, environment string) (cfg Config, ok bool, warnings []string, err error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	cfg = Config{
		Namespace:       get(EnvNamespace),
		Region:          get(EnvRegion),
		AccessKeyID:     get(EnvAccessKeyID),
		SecretAccessKey: get(EnvSecretKey),
		SessionToken:    get(EnvSessionToken),
		Environment:     environment,
	}
	if cfg.Namespace == "" {
		for _, k := range []string{EnvRegion, EnvAccessKeyID, EnvSecretKey} {
			if get(k) != "" {
				return Config{}, false, nil, fmt.Errorf("%s is set but %s is not: set it (the guide's value is %q) to publish to CloudWatch, or unset the other", k, EnvNamespace, DefaultNamespace)
			}
		}
		return Config{}, false, nil, nil
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return Config{}, false, nil, fmt.Errorf("set both %s and %s, or neither to use the AWS SDK's default credential chain", EnvAccessKeyID, EnvSecretKey)
	}
	if cfg.SessionToken != "" && cfg.AccessKeyID == "" {
		return Config{}, false, nil, fmt.Errorf("%s is set without %s and %s", EnvSessionToken, EnvAccessKeyID, EnvSecretKey)
	}
	if cfg.Namespace != DefaultNamespace {
		warnings = append(warnings, fmt.Sprintf("%s is %q: the guide's Terraform modules scale on the namespace %q; use another only if your alarms read it", EnvNamespace, cfg.Namespace, DefaultNamespace))
	}
	if cfg.Region == "" {
		warnings = append(warnings, fmt.Sprintf("%s is not set: the AWS SDK's region applies (AWS_REGION or the shared config)", EnvRegion))
	}
	if cfg.AccessKeyID == "" {
		warnings = append(warnings, fmt.Sprintf("%s and %s are not set: the AWS SDK's default credential chain applies", EnvAccessKeyID, EnvSecretKey))
	}
	return cfg, true, warnings, nil
}
