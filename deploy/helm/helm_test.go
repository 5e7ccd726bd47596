// Package helm checks the execd Helm chart: helm lint --strict and helm
// template for several values files, and the rendered objects' important
// parts (probes, secrets referenced and never inlined, the KEDA
// ScaledObject, the executors' grace period, the PodDisruptionBudget);
// kubeconform_test.go validates them against schemas, and envtest_test.go
// creates them in a real kube-apiserver.
//
// It is its own module (for gopkg.in/yaml.v3 and controller-runtime, which
// the main module does not need); .ci/run runs it with
// `cd deploy/helm && go test ./...`.
package helm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const chart = "execd"

// missing mirrors internal/testutil.Missing (this module cannot import the
// main module's internal packages): a skip, unless CI declared the part in
// EXECD_CI_PARTS, in which case a failure.
func missing(t *testing.T, part, why string) {
	t.Helper()
	fields := strings.FieldsFunc(os.Getenv("EXECD_CI_PARTS"), func(r rune) bool { return r == ',' || r == ' ' })
	if slices.Contains(fields, part) {
		t.Fatalf("%s is declared present by EXECD_CI_PARTS but unavailable: %s", part, why)
	}
	t.Skipf("skipping: %s unavailable (%s); CI provides it", part, why)
}

func helmBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("helm")
	if err != nil {
		missing(t, "helm", err.Error())
	}
	return p
}

type obj = map[string]any

func run(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// render runs helm template with the values files and returns the objects
// by "Kind/name".
func render(t *testing.T, helm string, args ...string) map[string]obj {
	t.Helper()
	out, err := run(t, helm, append([]string{"template", "rel", chart, "--namespace", "ns"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	objs := map[string]obj{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o obj
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, out)
		}
		if o == nil {
			continue
		}
		key := str(o, "kind") + "/" + str(o, "metadata", "name")
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = o
	}
	return objs
}

// get follows a path of map keys and list indexes (ints).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func num(v any, path ...any) int {
	n, _ := get(v, path...).(int)
	return n
}

func container(t *testing.T, o obj, name string) obj {
	t.Helper()
	cs, _ := get(o, "spec", "template", "spec", "containers").([]any)
	for _, c := range cs {
		if str(c, "name") == name {
			return c.(obj)
		}
	}
	t.Fatalf("%s has no container %q", str(o, "metadata", "name"), name)
	return nil
}

func env(c obj) map[string]obj {
	m := map[string]obj{}
	l, _ := c["env"].([]any)
	for _, e := range l {
		m[str(e, "name")] = e.(obj)
	}
	return m
}

// secretEnv asserts that name comes from a Secret's key, not a literal.
func secretEnv(t *testing.T, c obj, name, secret, key string) {
	t.Helper()
	e, ok := env(c)[name]
	if !ok {
		t.Fatalf("container %s: no %s", str(c, "name"), name)
	}
	if _, lit := e["value"]; lit {
		t.Errorf("container %s: %s is inlined: %v", str(c, "name"), name, e)
	}
	if got := str(e, "valueFrom", "secretKeyRef", "name"); got != secret {
		t.Errorf("%s's secret = %q, want %q", name, got, secret)
	}
	if got := str(e, "valueFrom", "secretKeyRef", "key"); got != key {
		t.Errorf("%s's key = %q, want %q", name, got, key)
	}
}

func healthz(t *testing.T, c obj, probe, port string) {
	t.Helper()
	if str(c, probe, "httpGet", "path") != "/healthz" || str(c, probe, "httpGet", "port") != port {
		t.Errorf("container %s: %s = %v, want GET /healthz on %s", str(c, "name"), probe, c[probe], port)
	}
}

func valuesFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(chart, "ci", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("values files: %v %v", files, err)
	}
	return files
}

func TestLint(t *testing.T) {
	helm := helmBin(t)
	for _, f := range valuesFiles(t) {
		if out, err := run(t, helm, "lint", "--strict", chart, "-f", f); err != nil {
			t.Errorf("helm lint --strict -f %s: %v\n%s", f, err, out)
		}
	}
}

func TestDefaults(t *testing.T) {
	helm := helmBin(t)
	objs := render(t, helm, "-f", filepath.Join(chart, "ci", "default-values.yaml"))
	for _, k := range []string{"StatefulSet/rel-execd-coordinator", "Service/rel-execd-coordinator",
		"Deployment/rel-execd-executor", "ScaledObject/rel-execd-executor", "PodDisruptionBudget/rel-execd-executor"} {
		if objs[k] == nil {
			t.Fatalf("%s not rendered; have %v", k, keys(objs))
		}
	}
	for k := range objs {
		if strings.HasPrefix(k, "Secret/") || strings.HasPrefix(k, "ConfigMap/") {
			t.Errorf("%s rendered: secrets and the site config must come from existing Secrets", k)
		}
	}

	// The coordinator: SQLite on a claim, the site config from a Secret, probes.
	sts := objs["StatefulSet/rel-execd-coordinator"]
	if num(sts, "spec", "replicas") != 1 {
		t.Errorf("coordinator replicas = %v", get(sts, "spec", "replicas"))
	}
	if str(sts, "spec", "volumeClaimTemplates", 0, "metadata", "name") != "data" {
		t.Errorf("no data claim: %v", get(sts, "spec", "volumeClaimTemplates"))
	}
	c := container(t, sts, "coordinator")
	for _, p := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
		healthz(t, c, p, "http")
	}
	if _, ok := env(c)["EXECD_DATABASE"]; ok {
		t.Errorf("EXECD_DATABASE set with SQLite")
	}
	if got := str(env(c)["EXECD_SITE_CONFIG"], "value"); got != "/etc/execd/site-config.json" {
		t.Errorf("EXECD_SITE_CONFIG = %q", got)
	}
	if got := str(env(c)["EXECD_ADDR"], "value"); got != "0.0.0.0:3080" {
		t.Errorf("EXECD_ADDR = %q", got)
	}
	if str(sts, "spec", "template", "spec", "volumes", 0, "secret", "secretName") != "execd-site-config" {
		t.Errorf("site config volume = %v", get(sts, "spec", "template", "spec", "volumes", 0))
	}
	if get(c, "resources", "requests") == nil {
		t.Errorf("coordinator has no resource requests")
	}
	svc := objs["Service/rel-execd-coordinator"]
	if num(svc, "spec", "ports", 0, "port") != 3080 {
		t.Errorf("service port = %v", get(svc, "spec", "ports"))
	}

	// Executors: the secret by reference, the shell runtime, drain time.
	dep := objs["Deployment/rel-execd-executor"]
	if _, ok := get(dep, "spec").(obj)["replicas"]; ok {
		t.Errorf("executor Deployment sets replicas although KEDA owns them")
	}
	e := container(t, dep, "executor")
	secretEnv(t, e, "EXECUTOR_FRONTEND_PASSWORD", "execd-executor", "accessToken")
	want := map[string]string{
		"EXECUTOR_FRONTEND_URL":            "http://rel-execd-coordinator:3080",
		"EXECUTOR_QUEUE_NAME":              "batches",
		"EXECUTOR_RUNTIME":                 "shell",
		"EXECUTOR_MAXIMUM_RUNTIME_PER_JOB": "1800s",
		"EXECUTOR_METRICS_ADDR":            "0.0.0.0:6060",
	}
	for k, v := range want {
		if got := str(env(e)[k], "value"); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := num(dep, "spec", "template", "spec", "terminationGracePeriodSeconds"); got != 1860 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 1800+60", got)
	}
	healthz(t, e, "readinessProbe", "metrics")
	healthz(t, e, "livenessProbe", "metrics")
	if len(get(dep, "spec", "template", "spec", "containers").([]any)) != 1 {
		t.Errorf("shell runtime has a sidecar")
	}

	// KEDA: 0..10 on the queue, through Prometheus.
	so := objs["ScaledObject/rel-execd-executor"]
	if str(so, "apiVersion") != "keda.sh/v1alpha1" || str(so, "spec", "scaleTargetRef", "name") != "rel-execd-executor" {
		t.Errorf("ScaledObject target: %v", so)
	}
	if v, ok := get(so, "spec", "minReplicaCount").(int); !ok || v != 0 {
		t.Errorf("minReplicaCount = %v, want 0", get(so, "spec", "minReplicaCount"))
	}
	if num(so, "spec", "maxReplicaCount") != 10 {
		t.Errorf("maxReplicaCount = %v", get(so, "spec", "maxReplicaCount"))
	}
	tr := get(so, "spec", "triggers", 0)
	if str(tr, "type") != "prometheus" || str(tr, "metricType") != "AverageValue" {
		t.Errorf("trigger = %v", tr)
	}
	if got := str(tr, "metadata", "query"); got != `sum(max by (queue) (src_executors_queue_size{queue=~"batches"}))` {
		t.Errorf("query = %q", got)
	}
	if str(tr, "metadata", "threshold") != "1" || str(tr, "metadata", "serverAddress") == "" {
		t.Errorf("trigger metadata = %v", get(tr, "metadata"))
	}

	pdb := objs["PodDisruptionBudget/rel-execd-executor"]
	if num(pdb, "spec", "maxUnavailable") != 1 ||
		str(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != "executor" {
		t.Errorf("PDB = %v", get(pdb, "spec"))
	}
	// The PDB and the Deployment select the same pods.
	sel := get(dep, "spec", "selector", "matchLabels").(obj)
	for k, v := range get(pdb, "spec", "selector", "matchLabels").(obj) {
		if sel[k] != v {
			t.Errorf("PDB selects %s=%v, Deployment %v", k, v, sel[k])
		}
		if get(dep, "spec", "template", "metadata", "labels", k) != v {
			t.Errorf("executor pods lack %s=%v", k, v)
		}
	}
}

func TestPostgres(t *testing.T) {
	helm := helmBin(t)
	objs := render(t, helm, "-f", filepath.Join(chart, "ci", "postgres-values.yaml"))
	sts := objs["StatefulSet/rel-execd-coordinator"]
	if num(sts, "spec", "replicas") != 2 {
		t.Errorf("replicas = %v", get(sts, "spec", "replicas"))
	}
	if get(sts, "spec", "volumeClaimTemplates") != nil {
		t.Errorf("a claim with PostgreSQL")
	}
	secretEnv(t, container(t, sts, "coordinator"), "EXECD_DATABASE", "execd-postgres", "url")
	e := container(t, objs["Deployment/rel-execd-executor"], "executor")
	if got := str(env(e)["EXECUTOR_QUEUE_NAMES"], "value"); got != "batches,codeintel" {
		t.Errorf("EXECUTOR_QUEUE_NAMES = %q", got)
	}
	so := objs["ScaledObject/rel-execd-executor"]
	if num(so, "spec", "minReplicaCount") != 1 || num(so, "spec", "maxReplicaCount") != 25 {
		t.Errorf("min/max = %v/%v", get(so, "spec", "minReplicaCount"), get(so, "spec", "maxReplicaCount"))
	}
	tr := get(so, "spec", "triggers", 0)
	if got := str(tr, "metadata", "query"); got != `sum(max by (queue) (src_executors_queue_size{queue=~"batches|codeintel"}))` {
		t.Errorf("query = %q", got)
	}
	if str(tr, "metadata", "threshold") != "4" {
		t.Errorf("threshold = %v", get(tr, "metadata", "threshold"))
	}
}

func TestDocker(t *testing.T) {
	helm := helmBin(t)
	objs := render(t, helm, "-f", filepath.Join(chart, "ci", "docker-values.yaml"))
	if objs["ScaledObject/rel-execd-executor"] != nil || objs["PodDisruptionBudget/rel-execd-executor"] != nil {
		t.Errorf("ScaledObject or PDB rendered though disabled: %v", keys(objs))
	}
	dep := objs["Deployment/rel-execd-executor"]
	if num(dep, "spec", "replicas") != 1 {
		t.Errorf("replicas without KEDA = %v", get(dep, "spec", "replicas"))
	}
	if got := num(dep, "spec", "template", "spec", "terminationGracePeriodSeconds"); got != 3630 {
		t.Errorf("terminationGracePeriodSeconds = %d, want 3600+30", got)
	}
	e := container(t, dep, "executor")
	if str(env(e)["EXECUTOR_MAXIMUM_RUNTIME_PER_JOB"], "value") != "3600s" ||
		str(env(e)["EXECUTOR_RUNTIME"], "value") != "docker" ||
		str(env(e)["DOCKER_HOST"], "value") != "unix:///run/docker/docker.sock" {
		t.Errorf("executor env = %v", e["env"])
	}
	d := container(t, dep, "dind")
	if get(d, "securityContext", "privileged") != true {
		t.Errorf("dind not privileged")
	}
}

// Values the chart must refuse, by the schema or by the templates.
func TestRefused(t *testing.T) {
	helm := helmBin(t)
	for _, tc := range []struct{ name, want string }{
		{"coordinator.replicas=2", "SQLite"},
		{"coordinator.database.type=postgres", "existingSecret is required"},
		{"executors.runtime=podman", "runtime"},
		{"keda.minReplicas=5,keda.maxReplicas=2", "must not exceed"},
		{"keda.prometheus.serverAddress=", "serverAddress is required"},
		{"executors.bogus=1", "bogus"},
		{"executors.passwordSecret.name=", "name"},
	} {
		out, err := run(t, helm, "template", "rel", chart, "--set", tc.name)
		if err == nil {
			t.Errorf("--set %s rendered", tc.name)
		} else if !strings.Contains(out, tc.want) {
			t.Errorf("--set %s: error lacks %q:\n%s", tc.name, tc.want, out)
		}
	}
}

func keys(m map[string]obj) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
