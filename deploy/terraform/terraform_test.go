// Package terraform_test checks the Terraform modules under deploy/terraform
// without any tool or provider: it parses every .tf file with hashicorp/hcl
// and checks the provider-bound blocks (which tofu cannot validate here, as
// the AWS and Google providers cannot be downloaded) against the Go constants
// of the queue-size publisher and the deployment guide's variable names.
// mirror_test.go runs the docker registry mirror's configuration for real,
// with Debian's docker-registry and dockerd.
package terraform_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/execd/execd/internal/autoscale/cloudwatch"
	"github.com/execd/execd/internal/autoscale/gcp"
)

// guideBlock is the deployment guide's module block, with its placeholders
// filled in; it must work with only its source changed.
const guideBlock = `
module "executors" {
  source  = "sourcegraph/executors/<cloud>"
  version = "<version>"

  executor_sourcegraph_external_url            = "<sourcegraph_external_url>"
  executor_sourcegraph_executor_proxy_password = "<shared_secret_configured_in_sourcegraph_instance>"
  executor_queue_name                          = "codeintel" # Type of work (e.g., codeintel, batches)
  executor_instance_tag                        = "codeintel"
  executor_metrics_environment_label           = "prod"
  docker_mirror_static_ip                      = "10.0.1.4"
}
`

// The root variables the issue and the guide name.
var rootVariables = []string{
	"executor_sourcegraph_external_url", "executor_sourcegraph_executor_proxy_password",
	"executor_queue_name", "queue_names", "executor_instance_tag",
	"executor_metrics_environment_label", "docker_mirror_static_ip",
	"min_replicas", "max_replicas", "jobs_per_instance_scaling",
	"executor_maximum_runtime_per_job", "executor_maximum_num_jobs",
	"executor_num_total_jobs", "executor_max_active_time",
	"executor_job_num_cpus", "executor_job_memory",
	"executor_firecracker_disk_space", "executor_use_firecracker",
	"executor_docker_registry_mirror", "executor_docker_auth_config",
	"executor_release_url",
}

// module is the parsed .tf files of one directory.
type module struct {
	dir    string
	blocks []*hclsyntax.Block
	src    map[string][]byte
}

func parseAll(t *testing.T) map[string]*module {
	t.Helper()
	p := hclparse.NewParser()
	mods := map[string]*module{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "." {
			return filepath.SkipDir // .terraform of local runs
		}
		if d.IsDir() || !strings.HasSuffix(path, ".tf") {
			return nil
		}
		f, diags := p.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Errorf("%s: %s", path, diags.Error())
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		m := mods[dir]
		if m == nil {
			m = &module{dir: dir, src: map[string][]byte{}}
			mods[dir] = m
		}
		m.blocks = append(m.blocks, f.Body.(*hclsyntax.Body).Blocks...)
		m.src[path] = f.Bytes
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) < 14 {
		t.Fatalf("found %d modules under deploy/terraform, want at least 14", len(mods))
	}
	return mods
}

func (m *module) find(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type == typ && slices.Equal(b.Labels[:min(len(labels), len(b.Labels))], labels) {
			out = append(out, b)
		}
	}
	return out
}

func (m *module) one(t *testing.T, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	bs := m.find(typ, labels...)
	if len(bs) != 1 {
		t.Fatalf("%s: %d %s %v blocks, want 1", m.dir, len(bs), typ, labels)
	}
	return bs[0]
}

func nested(b *hclsyntax.Block, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, c := range b.Body.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

// literal evaluates an attribute that must need no variables.
func literal(t *testing.T, b *hclsyntax.Block, name string) cty.Value {
	t.Helper()
	a, ok := b.Body.Attributes[name]
	if !ok {
		t.Fatalf("%s %v at %s: no attribute %s", b.Type, b.Labels, b.TypeRange, name)
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s %v: %s is not a literal: %s", b.Type, b.Labels, name, diags.Error())
	}
	return v
}

// source is an attribute's expression as written.
func source(m *module, a *hclsyntax.Attribute) string {
	rng := a.Expr.Range()
	return string(rng.SliceBytes(m.src[filepath.FromSlash(rng.Filename)]))
}

func TestScalingModuleNamesMatchPublisher(t *testing.T) {
	m := parseAll(t)["modules/scaling"]
	locals := map[string]string{}
	for _, b := range m.find("locals") {
		for name, a := range b.Body.Attributes {
			if v, diags := a.Expr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
				locals[name] = v.AsString()
			}
		}
	}
	for name, want := range map[string]string{
		"aws_metric_namespace": cloudwatch.DefaultNamespace,
		"aws_metric_name":      cloudwatch.MetricName,
		"google_metric_type":   gcp.MetricType,
		"label_queue":          cloudwatch.DimensionQueue,
		"label_environment":    cloudwatch.DimensionEnv,
	} {
		if locals[name] != want {
			t.Errorf("modules/scaling local.%s = %q, want %q", name, locals[name], want)
		}
	}
	if gcp.LabelQueue != cloudwatch.DimensionQueue || gcp.LabelEnv != cloudwatch.DimensionEnv {
		t.Errorf("the clouds' labels differ: %s/%s and %s/%s", gcp.LabelQueue, gcp.LabelEnv, cloudwatch.DimensionQueue, cloudwatch.DimensionEnv)
	}
}

func TestAWSAlarmsQueryThePublishedMetric(t *testing.T) {
	m := parseAll(t)["aws/modules/executors"]
	alarm := m.one(t, "resource", "aws_cloudwatch_metric_alarm", "executor")
	var sawQueue, sawExpr bool
	for _, q := range nested(alarm, "metric_query") {
		if e, ok := q.Body.Attributes["expression"]; ok {
			expr := source(m, e)
			if !strings.Contains(expr, "CEIL(queue / ${var.jobs_per_instance_scaling}) - instances") {
				t.Errorf("alarm expression %s, want CEIL(queue / jobs_per_instance_scaling) - instances", expr)
			}
			sawExpr = true
			continue
		}
		for _, mb := range nested(q, "metric") {
			if literal(t, mb, "metric_name").AsString() != cloudwatch.MetricName {
				continue
			}
			sawQueue = true
			if ns := literal(t, mb, "namespace").AsString(); ns != cloudwatch.DefaultNamespace {
				t.Errorf("alarm namespace %q, want %q", ns, cloudwatch.DefaultNamespace)
			}
			obj, ok := mb.Body.Attributes["dimensions"].Expr.(*hclsyntax.ObjectConsExpr)
			if !ok {
				t.Fatal("alarm dimensions is not an object")
			}
			var keys []string
			for _, item := range obj.Items {
				k, diags := item.KeyExpr.Value(nil)
				if diags.HasErrors() {
					t.Fatalf("dimension key: %s", diags.Error())
				}
				keys = append(keys, k.AsString())
			}
			sort.Strings(keys)
			want := []string{cloudwatch.DimensionEnv, cloudwatch.DimensionQueue}
			sort.Strings(want)
			if !slices.Equal(keys, want) {
				t.Errorf("alarm dimensions %v, want %v", keys, want)
			}
		}
	}
	if !sawQueue || !sawExpr {
		t.Errorf("the alarm must query %s and an expression (queue %v, expression %v)", cloudwatch.MetricName, sawQueue, sawExpr)
	}
	if !strings.Contains(source(m, alarm.Body.Attributes["for_each"]), "local.autoscaling") {
		t.Error("the alarms must exist only when auto scaling is on")
	}
}

func TestGoogleAutoscalerUsesThePublishedMetric(t *testing.T) {
	m := parseAll(t)["google/modules/executors"]
	as := m.one(t, "resource", "google_compute_autoscaler", "executor")
	if c := source(m, as.Body.Attributes["count"]); !strings.Contains(c, "var.max_replicas > var.min_replicas") {
		t.Errorf("autoscaler count %s, want it only when max_replicas > min_replicas", c)
	}
	pol := nested(as, "autoscaling_policy")
	if len(pol) != 1 {
		t.Fatal("no autoscaling_policy")
	}
	mets := nested(pol[0], "metric")
	if len(mets) != 1 {
		t.Fatal("no metric")
	}
	if name := literal(t, mets[0], "name").AsString(); name != gcp.MetricType {
		t.Errorf("autoscaler metric %q, want %q", name, gcp.MetricType)
	}
	filter := source(m, mets[0].Body.Attributes["filter"])
	for _, want := range []string{
		`resource.type = \"` + gcp.ResourceType + `\"`,
		"metric.labels." + gcp.LabelQueue + " = ",
		"metric.labels." + gcp.LabelEnv + " = ",
	} {
		if !strings.Contains(filter, want) {
			t.Errorf("autoscaler filter %s lacks %s", filter, want)
		}
	}
	if s := source(m, mets[0].Body.Attributes["single_instance_assignment"]); s != "var.jobs_per_instance_scaling" {
		t.Errorf("single_instance_assignment = %s, want var.jobs_per_instance_scaling", s)
	}
}

func TestCredentialsGrantMetricWriting(t *testing.T) {
	mods := parseAll(t)
	aws := mods["aws/modules/credentials"]
	doc := aws.one(t, "data", "aws_iam_policy_document", "metric_writer")
	st := nested(doc, "statement")
	if len(st) != 1 {
		t.Fatal("want one statement")
	}
	acts := literal(t, st[0], "actions")
	if acts.LengthInt() != 1 || acts.Index(cty.NumberIntVal(0)).AsString() != "cloudwatch:PutMetricData" {
		t.Errorf("actions %#v, want [cloudwatch:PutMetricData]", acts)
	}
	cond := nested(st[0], "condition")
	if len(cond) != 1 || literal(t, cond[0], "values").Index(cty.NumberIntVal(0)).AsString() != cloudwatch.DefaultNamespace {
		t.Errorf("the policy must be limited to the namespace %s", cloudwatch.DefaultNamespace)
	}
	for _, o := range []string{"metric_writer_access_key_id", "metric_writer_secret_key"} {
		aws.one(t, "output", o)
	}

	g := mods["google/modules/credentials"]
	member := g.one(t, "resource", "google_project_iam_member", "metric_writer")
	if r := literal(t, member, "role").AsString(); r != "roles/monitoring.metricWriter" {
		t.Errorf("role %q, want roles/monitoring.metricWriter", r)
	}
	g.one(t, "output", "metric_writer_credentials_file")
}

func TestRootModulesTakeTheGuidesBlock(t *testing.T) {
	mods := parseAll(t)
	f, diags := hclsyntax.ParseConfig([]byte(guideBlock), "guide.tf", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	block := f.Body.(*hclsyntax.Body).Blocks[0]
	for _, root := range []string{"aws", "google"} {
		m := mods[root]
		vars := map[string]*hclsyntax.Block{}
		for _, b := range m.find("variable") {
			vars[b.Labels[0]] = b
		}
		for _, name := range rootVariables {
			if vars[name] == nil {
				t.Errorf("%s: no root variable %s", root, name)
			}
		}
		for name := range block.Body.Attributes {
			if name != "source" && name != "version" && vars[name] == nil {
				t.Errorf("%s: the guide's %s is not a variable", root, name)
			}
		}
		for name, v := range vars {
			if _, ok := v.Body.Attributes["default"]; !ok {
				if _, ok := block.Body.Attributes[name]; !ok {
					t.Errorf("%s: variable %s has no default and is not in the guide's block", root, name)
				}
			}
		}
		for _, sub := range []string{"executors", "docker-mirror", "networking", "credentials"} {
			if mods[root+"/modules/"+sub] == nil {
				t.Errorf("%s: no submodule %s", root, sub)
			}
		}
		for _, ex := range []string{"single-executor", "multiple-executors"} {
			if mods[root+"/examples/"+ex] == nil {
				t.Errorf("%s: no example %s", root, ex)
			}
		}
	}
}

// The start-up script writes only variables the executor documents.
func TestStartupEnvironmentIsTheExecutors(t *testing.T) {
	m := parseAll(t)["modules/startup"]
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	hclsyntax.VisitAll(m.one(t, "locals").Body, func(n hclsyntax.Node) hcl.Diagnostics {
		if obj, ok := n.(*hclsyntax.ObjectConsExpr); ok {
			for _, item := range obj.Items {
				if k, d := item.KeyExpr.Value(nil); !d.HasErrors() && k.Type() == cty.String && strings.HasPrefix(k.AsString(), "EXECUTOR_") {
					names = append(names, k.AsString())
				}
			}
		}
		return nil
	})
	if len(names) < 15 {
		t.Fatalf("found %d EXECUTOR_ variables in the start-up environment: %v", len(names), names)
	}
	for _, n := range names {
		if !strings.Contains(string(readme), "`"+n+"`") && !strings.Contains(string(readme), n+"` /") {
			t.Errorf("the start-up script writes %s, which README's executor configuration does not document", n)
		}
	}
}

// renderTemplate evaluates a .tftpl file as Terraform's templatefile does
// (the same HCL template syntax), with string and bool variables.
func renderTemplate(t *testing.T, path string, vars map[string]cty.Value) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	expr, diags := hclsyntax.ParseTemplate(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	v, diags := expr.Value(&hcl.EvalContext{Variables: vars})
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	return v.AsString()
}

// The rendered start-up scripts are valid bash in each of their variants.
func TestStartupScriptsAreBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	check := func(name, script string) {
		t.Helper()
		cmd := exec.Command(bash, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v\n%s\n%s", name, err, out, script)
		}
	}
	for _, fc := range []bool{true, false} {
		for _, off := range []bool{true, false} {
			for _, sum := range []string{"", "0123abcd"} {
				s := renderTemplate(t, "modules/startup/executor.sh.tftpl", map[string]cty.Value{
					"release_url":     cty.StringVal("https://releases.example.com/v1"),
					"executor_sha256": cty.StringVal(sum),
					"env_file":        cty.StringVal("EXECUTOR_QUEUE_NAME='batches'\nEXECUTOR_FRONTEND_URL='http://c:3080'"),
					"use_firecracker": cty.BoolVal(fc),
					"power_off":       cty.BoolVal(off),
				})
				check("executor.sh", s)
				if fc != strings.Contains(s, "executor install vm") || fc == strings.Contains(s, "executor install docker") {
					t.Errorf("use_firecracker=%v: wrong install command\n%s", fc, s)
				}
				if off != strings.Contains(s, "systemctl poweroff") {
					t.Errorf("power_off=%v: wrong power-off\n%s", off, s)
				}
			}
		}
	}
	s := renderTemplate(t, "modules/startup/docker-mirror.sh.tftpl", map[string]cty.Value{
		"port":             cty.NumberIntVal(5000),
		"metrics_port":     cty.NumberIntVal(9999),
		"data_dir":         cty.StringVal("/mnt/registry"),
		"registry_version": cty.StringVal("2.8.3"),
	})
	check("docker-mirror.sh", s)
	if !strings.Contains(s, "remoteurl: https://registry-1.docker.io") || !strings.Contains(s, "addr: :5000") {
		t.Errorf("the mirror is not a pull-through cache of Docker Hub on :5000:\n%s", s)
	}
}
