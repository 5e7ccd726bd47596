package helm

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The schema sources, from the Go module proxy (no internet needed):
// Kubernetes' OpenAPI v2 document and KEDA's CRDs.
const (
	kubernetesModule = "k8s.io/kubernetes@v1.37.2"
	kedaModule       = "github.com/kedacore/keda/v2@v2.21.0"
)

// moduleDir downloads mod (a no-op when cached) and returns its directory.
func moduleDir(t *testing.T, mod string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	var info struct{ Dir, Error string }
	if err != nil || json.Unmarshal(out, &info) != nil || info.Dir == "" {
		missing(t, "helm", fmt.Sprintf("go mod download %s: %v %s %s", mod, err, info.Error, out))
	}
	return info.Dir
}

// strict makes a schema standalone-strict as kubeconform's published
// schemas are: every $ref inlined, objects with properties closed,
// int-or-string and quantities accepting both.
func strict(defs map[string]any, v any, depth int) any {
	if depth > 60 {
		panic("schema too deep (recursive definition)")
	}
	switch s := v.(type) {
	case map[string]any:
		if ref, ok := s["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			return strict(defs, defs[name], depth+1)
		}
		out := map[string]any{}
		for k, x := range s {
			if k == "properties" {
				props := map[string]any{}
				for pk, pv := range x.(map[string]any) {
					props[pk] = strict(defs, pv, depth+1)
				}
				out[k] = props
				continue
			}
			out[k] = strict(defs, x, depth+1)
		}
		switch out["format"] {
		case "int-or-string", "quantity":
			delete(out, "type")
			delete(out, "format")
			out["anyOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}
		}
		if _, has := out["properties"]; has {
			if _, set := out["additionalProperties"]; !set && out["x-kubernetes-preserve-unknown-fields"] != true {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		l := make([]any, len(s))
		for i, x := range s {
			l[i] = strict(defs, x, depth+1)
		}
		return l
	}
	return v
}

func kindFile(dir, kind, apiVersion string) string {
	group, version, found := strings.Cut(apiVersion, "/")
	suffix := "-" + strings.ToLower(group)
	if found {
		suffix = "-" + strings.ToLower(strings.Split(group, ".")[0]) + "-" + strings.ToLower(version)
	}
	return filepath.Join(dir, strings.ToLower(kind)+suffix+".json")
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// schemas writes strict schemas for the kinds the chart renders into dir.
func schemas(t *testing.T, dir string, kinds map[string]string) {
	t.Helper()
	var swagger struct {
		Definitions map[string]any `json:"definitions"`
	}
	b, err := os.ReadFile(filepath.Join(moduleDir(t, kubernetesModule), "api", "openapi-spec", "swagger.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &swagger); err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	for _, d := range swagger.Definitions {
		gvks, _ := d.(map[string]any)["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			g := g.(map[string]any)
			av := g["version"].(string)
			if g["group"] != "" {
				av = g["group"].(string) + "/" + av
			}
			key := g["kind"].(string) + " " + av
			if _, want := kinds[key]; want && !done[key] {
				writeJSON(t, kindFile(dir, g["kind"].(string), av), strict(swagger.Definitions, d, 0))
				done[key] = true
			}
		}
	}
	crds, _ := filepath.Glob(filepath.Join(moduleDir(t, kedaModule), "config", "crd", "bases", "keda.sh_*.yaml"))
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Group    string
				Names    struct{ Kind string }
				Versions []struct {
					Name   string
					Schema struct {
						OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			key := crd.Spec.Names.Kind + " " + crd.Spec.Group + "/" + v.Name
			if _, want := kinds[key]; want {
				writeJSON(t, kindFile(dir, crd.Spec.Names.Kind, crd.Spec.Group+"/"+v.Name), strict(nil, v.Schema.OpenAPIV3Schema, 0))
				done[key] = true
			}
		}
	}
	for k := range kinds {
		if !done[k] {
			t.Fatalf("no schema for %s", k)
		}
	}
}

// TestKubeconform validates every rendered object of every values file
// against the Kubernetes v1.37 and KEDA v2.21 schemas, generated offline,
// and checks that the schemas refuse a wrong type and an unknown field.
func TestKubeconform(t *testing.T) {
	helm := helmBin(t)
	kc, err := exec.LookPath("kubeconform")
	if err != nil {
		missing(t, "helm", "kubeconform: "+err.Error())
	}
	dir := t.TempDir()
	kinds := map[string]string{}
	var files []string
	for i, f := range valuesFiles(t) {
		out, err := run(t, helm, "template", "rel", chart, "-f", f)
		if err != nil {
			t.Fatalf("helm template -f %s: %v\n%s", f, err, out)
		}
		p := filepath.Join(dir, fmt.Sprintf("rendered-%d.yaml", i))
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
		for _, o := range render(t, helm, "-f", f) {
			kinds[str(o, "kind")+" "+str(o, "apiVersion")] = ""
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: "one"
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: x}
spec:
  scaleTargetRef: {name: x}
  bogusField: 1
  triggers: [{type: prometheus, metadata: {query: q}}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	schemaDir := filepath.Join(dir, "schemas")
	if err := os.Mkdir(schemaDir, 0o755); err != nil {
		t.Fatal(err)
	}
	schemas(t, schemaDir, kinds)
	loc := filepath.Join(schemaDir, "{{ .ResourceKind }}{{ .KindSuffix }}.json")
	args := append([]string{"-strict", "-summary", "-schema-location", loc}, files...)
	if out, err := exec.Command(kc, args...).CombinedOutput(); err != nil {
		t.Errorf("kubeconform: %v\n%s", err, out)
	} else {
		t.Logf("%s", out)
	}
	out, err := exec.Command(kc, "-strict", "-schema-location", loc, bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "replicas") || !strings.Contains(string(out), "bogusField") {
		t.Errorf("kubeconform accepted or misreported the bad objects: %v\n%s", err, out)
	}
}
