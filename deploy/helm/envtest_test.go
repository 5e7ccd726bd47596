package helm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

// kubeAPIServerVersion is the k8s.io/kubernetes version that
// tools/kube-apiserver builds (.ci/run reads it the same way): a binary of
// another version would test the chart against another API.
func kubeAPIServerVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("tools", "kube-apiserver", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "k8s.io/kubernetes" && strings.HasPrefix(f[1], "v") {
			return f[1]
		}
	}
	t.Fatalf("tools/kube-apiserver/go.mod requires no k8s.io/kubernetes")
	return ""
}

var scaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

// controlPlane starts etcd and kube-apiserver through envtest, with KEDA's
// CRDs installed and established, and returns a client whose writes use
// strict field validation: an unknown or duplicated field is an error,
// not a warning (the default, which would let a typo in the chart pass).
func controlPlane(t *testing.T) client.Client {
	t.Helper()
	apiserver, err := exec.LookPath("kube-apiserver")
	if err != nil {
		missing(t, "kube-apiserver", err.Error())
	}
	version := kubeAPIServerVersion(t)
	out, err := exec.Command(apiserver, "--version").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "Kubernetes "+version {
		missing(t, "kube-apiserver", fmt.Sprintf("%s --version: %q %v, want Kubernetes %s", apiserver, got, err, version))
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		missing(t, "etcd", err.Error())
	}
	// envtest logs through controller-runtime's global logger, which warns
	// with a stack trace when nothing was set.
	logf.SetLogger(logr.Discard())

	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(moduleDir(t, kedaModule), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		// 2 cores shared with other tests: the default 20 s is tight.
		ControlPlaneStartTimeout: 90 * time.Second,
	}
	env.ControlPlane.GetAPIServer().Path = apiserver
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting etcd (%s) and kube-apiserver (%s) with KEDA's CRDs: %v", etcd, apiserver, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	t.Logf("etcd and kube-apiserver %s up, KEDA CRDs established, in %v", version, time.Since(start).Round(time.Millisecond))
	c, err := client.New(cfg, client.Options{FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// decode parses multi-document YAML (helm template's output, or a test's
// object) into objects, as kubectl would: numbers become int64.
func decode(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("reading YAML: %v\n%s", err, manifest)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("YAML to JSON: %v\n%s", err, doc)
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "{}" {
			continue // a comment-only document
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("decoding %s: %v", j, err)
		}
		objs = append(objs, u)
	}
}

// renderObjects runs helm template for namespace ns and returns the objects.
func renderObjects(t *testing.T, helm, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := run(t, helm, append([]string{"template", "rel", chart, "--namespace", ns}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	return decode(t, out)
}

func createNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// deref shows what a pointer field holds, or nil, in a message.
func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func kindName(u *unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }

// subset reports where want (what was sent) is not contained in got (what
// the server stored): a field the server dropped or changed. The server
// may add fields (defaults, status, metadata).
func subset(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: sent an object, read back %#v", path, got)}
		}
		var diffs []string
		for k, v := range w {
			diffs = append(diffs, subset(path+"."+k, v, g[k])...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: sent %d items, read back %#v", path, len(w), got)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return diffs
	}
	if got == nil && want != nil && reflect.ValueOf(want).IsZero() {
		// A built-in type's omitempty field: "" (DOCKER_TLS_CERTDIR's
		// value), 0 or false comes back absent, which means the same.
		return nil
	}
	if !reflect.DeepEqual(want, got) {
		return []string{fmt.Sprintf("%s: sent %#v, read back %#v", path, want, got)}
	}
	return nil
}

// What each values file must produce, as read back from the server.
type serverWant struct {
	coordinatorReplicas int32
	claim               bool  // SQLite's volume claim template
	grace               int64 // the executors' terminationGracePeriodSeconds
	executorReplicas    int32 // the Deployment's, after the server's defaulting
	containers          []string
	// KEDA: zero values when the ScaledObject must be absent.
	scaled                   bool
	minReplicas, maxReplicas int64
	query, threshold         string
	pdb                      bool
}

// TestAPIServer creates every rendered object of every values file in a
// real kube-apiserver (with etcd and KEDA's CRDs), reads the key fields
// back from it, and checks what the server must refuse.
func TestAPIServer(t *testing.T) {
	helm := helmBin(t)
	c := controlPlane(t)

	wants := map[string]serverWant{
		"default-values.yaml": {
			coordinatorReplicas: 1, claim: true, grace: 1800 + 60,
			// KEDA owns the replicas: the chart sets none, the server defaults 1.
			executorReplicas: 1, containers: []string{"executor"},
			scaled: true, minReplicas: 0, maxReplicas: 10, threshold: "1",
			query: `sum(max by (queue) (src_executors_queue_size{queue=~"batches"}))`,
			pdb:   true,
		},
		"docker-values.yaml": {
			coordinatorReplicas: 1, claim: true, grace: 3600 + 30,
			executorReplicas: 1, containers: []string{"executor", "dind"},
		},
		"postgres-values.yaml": {
			coordinatorReplicas: 2, grace: 1800 + 60,
			executorReplicas: 1, containers: []string{"executor"},
			scaled: true, minReplicas: 1, maxReplicas: 25, threshold: "4",
			query: `sum(max by (queue) (src_executors_queue_size{queue=~"batches|codeintel"}))`,
			pdb:   true,
		},
	}
	for _, f := range valuesFiles(t) {
		base := filepath.Base(f)
		want, ok := wants[base]
		if !ok {
			t.Errorf("%s: no expectations in TestAPIServer", f)
			continue
		}
		t.Run(strings.TrimSuffix(base, ".yaml"), func(t *testing.T) {
			ns := "ci-" + strings.TrimSuffix(base, "-values.yaml")
			createNamespace(t, c, ns)
			objs := renderObjects(t, helm, ns, "-f", f)
			for _, o := range objs {
				o.SetNamespace(ns)
				sent := o.DeepCopy()
				if err := c.Create(t.Context(), o); err != nil {
					t.Fatalf("creating %s: %v", kindName(sent), err)
				}
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(sent.GroupVersionKind())
				if err := c.Get(t.Context(), client.ObjectKeyFromObject(sent), got); err != nil {
					t.Fatalf("reading back %s: %v", kindName(sent), err)
				}
				for _, d := range subset(kindName(sent), sent.Object, got.Object) {
					t.Errorf("the server did not keep what the chart rendered: %s", d)
				}
			}
			checkServerObjects(t, c, ns, want)
		})
	}

	t.Run("rejected objects", func(t *testing.T) { rejectedObjects(t, c) })
	t.Run("chart mistakes", func(t *testing.T) { chartMistakes(t, c, helm) })
}

// checkServerObjects reads the chart's objects in ns back with typed
// clients and checks the fields the chart exists for.
func checkServerObjects(t *testing.T, c client.Client, ns string, want serverWant) {
	t.Helper()
	ctx := t.Context()
	key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

	var sts appsv1.StatefulSet
	if err := c.Get(ctx, key("rel-execd-coordinator"), &sts); err != nil {
		t.Fatalf("coordinator StatefulSet: %v", err)
	}
	if r := sts.Spec.Replicas; r == nil || *r != want.coordinatorReplicas {
		t.Errorf("coordinator replicas = %v, want %d", deref(r), want.coordinatorReplicas)
	}
	if got := len(sts.Spec.VolumeClaimTemplates) == 1; got != want.claim {
		t.Errorf("coordinator claims = %v, want one: %v", sts.Spec.VolumeClaimTemplates, want.claim)
	}
	var svc corev1.Service
	if err := c.Get(ctx, key(sts.Spec.ServiceName), &svc); err != nil {
		t.Errorf("the StatefulSet's service %q: %v", sts.Spec.ServiceName, err)
	} else if svc.Spec.ClusterIP == "" || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
		// The server allocates the cluster IP: proof that it ran its
		// registry logic, not only stored the object.
		t.Errorf("service %s: clusterIP %q, selector %v, coordinator pods %v", svc.Name, svc.Spec.ClusterIP, svc.Spec.Selector, sts.Spec.Template.Labels)
	}

	var dep appsv1.Deployment
	if err := c.Get(ctx, key("rel-execd-executor"), &dep); err != nil {
		t.Fatalf("executor Deployment: %v", err)
	}
	if g := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != want.grace {
		t.Errorf("terminationGracePeriodSeconds = %v, want %d", deref(g), want.grace)
	}
	if r := dep.Spec.Replicas; r == nil || *r != want.executorReplicas {
		t.Errorf("executor replicas = %v, want %d", deref(r), want.executorReplicas)
	}
	var names []string
	for _, ct := range dep.Spec.Template.Spec.Containers {
		names = append(names, ct.Name)
	}
	if !reflect.DeepEqual(names, want.containers) {
		t.Errorf("executor containers = %v, want %v", names, want.containers)
	}
	if s := dep.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || *s.MaxUnavailable != intstr.FromInt32(0) {
		t.Errorf("rolling update = %+v, want maxUnavailable 0 (executors drain before they go)", s)
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)

	so := &unstructured.Unstructured{}
	so.SetGroupVersionKind(scaledObjectGVK)
	err := c.Get(ctx, key("rel-execd-executor"), so)
	switch {
	case !want.scaled:
		if !apierrors.IsNotFound(err) {
			t.Errorf("ScaledObject: %v, want not found", err)
		}
	case err != nil:
		t.Errorf("ScaledObject: %v", err)
	default:
		target, _, _ := unstructured.NestedString(so.Object, "spec", "scaleTargetRef", "name")
		if target != dep.Name {
			t.Errorf("ScaledObject targets %q, the Deployment is %q", target, dep.Name)
		}
		minR, _, _ := unstructured.NestedInt64(so.Object, "spec", "minReplicaCount")
		maxR, _, _ := unstructured.NestedInt64(so.Object, "spec", "maxReplicaCount")
		if minR != want.minReplicas || maxR != want.maxReplicas {
			t.Errorf("ScaledObject replicas %d..%d, want %d..%d", minR, maxR, want.minReplicas, want.maxReplicas)
		}
		triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
		if len(triggers) != 1 {
			t.Fatalf("ScaledObject triggers = %v, want one", triggers)
		}
		tr, _ := triggers[0].(map[string]any)
		typ, _, _ := unstructured.NestedString(tr, "type")
		metricType, _, _ := unstructured.NestedString(tr, "metricType")
		query, _, _ := unstructured.NestedString(tr, "metadata", "query")
		threshold, _, _ := unstructured.NestedString(tr, "metadata", "threshold")
		if typ != "prometheus" || metricType != "AverageValue" || query != want.query || threshold != want.threshold {
			t.Errorf("ScaledObject trigger = %v, want prometheus, AverageValue, %q, threshold %q", tr, want.query, want.threshold)
		}
	}

	var pdb policyv1.PodDisruptionBudget
	err = c.Get(ctx, key("rel-execd-executor"), &pdb)
	switch {
	case !want.pdb:
		if !apierrors.IsNotFound(err) {
			t.Errorf("PodDisruptionBudget: %v, want not found", err)
		}
	case err != nil:
		t.Errorf("PodDisruptionBudget: %v", err)
	default:
		if m := pdb.Spec.MaxUnavailable; m == nil || *m != intstr.FromInt32(1) {
			t.Errorf("PDB maxUnavailable = %v, want 1", deref(m))
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("PDB selector %v (%v) does not select the executor pods %v", pdb.Spec.Selector, err, podLabels)
		}
	}
}

// scaledObject is a valid ScaledObject; the cases below break it one way each.
const scaledObject = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so}
spec:
  scaleTargetRef: {name: x}
  minReplicaCount: 0
  triggers: [{type: prometheus, metadata: {serverAddress: "http://p", query: q, threshold: "1"}}]
`

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 1
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i, imagePullPolicy: IfNotPresent}]}}
`

const pdbYAML = `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: p}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {a: b}}
`

// rejectedObjects checks that the server refuses objects the chart must
// never render, and accepts the valid ones they are made from (so that a
// refusal is for the reason the case names).
func rejectedObjects(t *testing.T, c client.Client) {
	ns := "rejected"
	createNamespace(t, c, ns)
	for _, tc := range []struct {
		name, manifest string
		// check tells the expected refusal; nil: the object is accepted.
		check func(error) bool
		want  string // in the server's message
	}{
		{"valid ScaledObject", scaledObject, nil, ""},
		{"ScaledObject unknown field", strings.Replace(scaledObject, "spec:\n", "spec:\n  bogusField: 1\n", 1),
			apierrors.IsBadRequest, `unknown field "spec.bogusField"`},
		{"ScaledObject string replicas", strings.Replace(scaledObject, "minReplicaCount: 0", `minReplicaCount: "one"`, 1),
			apierrors.IsInvalid, "spec.minReplicaCount"},
		{"ScaledObject trigger without type", strings.Replace(scaledObject, "type: prometheus, ", "", 1),
			apierrors.IsInvalid, "spec.triggers[0].type"},
		{"valid Deployment", deployment, nil, ""},
		{"Deployment string replicas", strings.Replace(deployment, "replicas: 1", `replicas: "one"`, 1),
			apierrors.IsBadRequest, "replicas"},
		{"Deployment unknown container field", strings.Replace(deployment, "imagePullPolicy", "imagePulPolicy", 1),
			apierrors.IsBadRequest, `unknown field "spec.template.spec.containers[0].imagePulPolicy"`},
		{"Deployment selector not matching its pods", strings.Replace(deployment, "labels: {a: b}", "labels: {a: c}", 1),
			apierrors.IsInvalid, "`selector` does not match template `labels`"},
		{"valid PodDisruptionBudget", pdbYAML, nil, ""},
		{"PodDisruptionBudget with both bounds", strings.Replace(pdbYAML, "maxUnavailable: 1", "maxUnavailable: 1\n  minAvailable: 1", 1),
			apierrors.IsInvalid, "minAvailable and maxUnavailable cannot be both set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := decode(t, tc.manifest)
			if len(objs) != 1 {
				t.Fatalf("%d objects in the case", len(objs))
			}
			o := objs[0]
			o.SetNamespace(ns)
			// Each valid object once: the invalid ones share its name and
			// must fail on validation, not on AlreadyExists.
			if tc.check != nil {
				o.SetName(o.GetName() + "-" + strings.ToLower(strings.ReplaceAll(tc.name, " ", "-")))
			}
			err := c.Create(t.Context(), o)
			switch {
			case tc.check == nil && err != nil:
				t.Fatalf("the server refused a valid object: %v", err)
			case tc.check == nil:
			case err == nil:
				t.Fatalf("the server accepted it:\n%s", tc.manifest)
			case !tc.check(err) || !strings.Contains(err.Error(), tc.want):
				t.Errorf("refused as %s, %q; want %q in it", apierrors.ReasonForError(err), err, tc.want)
			default:
				t.Logf("refused: %v", err)
			}
		})
	}
}

// chartMistakes checks values that pass helm lint --strict and the chart's
// values.schema.json but that the API server refuses: the last line of
// defence, and a list of what the schema could still learn.
func chartMistakes(t *testing.T, c client.Client, helm string) {
	for i, tc := range []struct {
		name string
		set  []string // helm flags
		kind string   // the object the server refuses
		want string   // in the server's message
	}{
		{"PDB maxUnavailable not a number or percentage",
			[]string{"--set", "executors.podDisruptionBudget.maxUnavailable=half"},
			"PodDisruptionBudget/rel-execd-executor", "maxUnavailable"},
		{"SQLite volume size not a quantity",
			[]string{"--set", "coordinator.database.sqlite.size=ten gigabytes"},
			"StatefulSet/rel-execd-coordinator", "quantities must match the regular expression"},
		{"toleration with an unknown operator",
			[]string{"--set-json", `executors.tolerations=[{"key":"k","operator":"Maybe","effect":"NoSchedule"}]`},
			"Deployment/rel-execd-executor", "spec.template.spec.tolerations[0].operator"},
		{"extra env without a value source",
			[]string{"--set-json", `coordinator.extraEnv=[{"name":"X","valueFrom":{}}]`},
			"StatefulSet/rel-execd-coordinator", "valueFrom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := run(t, helm, append([]string{"lint", "--strict", chart}, tc.set...)...); err != nil {
				t.Fatalf("helm lint refuses %v now (move the case to TestRefused): %v\n%s", tc.set, err, out)
			}
			ns := fmt.Sprintf("mistake-%d", i)
			createNamespace(t, c, ns)
			found := false
			for _, o := range renderObjects(t, helm, ns, tc.set...) {
				o.SetNamespace(ns)
				k := kindName(o)
				err := c.Create(t.Context(), o)
				switch {
				case k != tc.kind && err != nil:
					t.Errorf("%s refused too: %v", k, err)
				case k != tc.kind:
				case err == nil:
					found = true
					t.Errorf("the server accepted %s with %v", k, tc.set)
				case !strings.Contains(err.Error(), tc.want):
					found = true
					t.Errorf("%s refused with %q, want %q in it", k, err, tc.want)
				default:
					found = true
					t.Logf("refused: %v", err)
				}
			}
			if !found {
				t.Errorf("%s not rendered with %v", tc.kind, tc.set)
			}
		})
	}
}
