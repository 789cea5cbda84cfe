package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const chartDir = "../../deploy/helm/berth"

// The systemd unit is one systemd accepts as written, with the binary
// where the unit says (here, the one under test).
func TestSystemdUnit(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	unit, err := os.ReadFile("../../deploy/systemd/berth@.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for _, want := range []string{"Type=notify", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "ExecStart=/usr/local/bin/berth serve"} {
		if !strings.Contains(text, want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "berth@.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/berth", berthBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", filepath.Join(dir, "berth@1.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", filepath.Join(dir, "berth@1.service")).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for berth@1.service: ([0-9.]+) (\w+)`).FindStringSubmatch(string(out))
	if err != nil || m == nil || m[2] != "OK" {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	t.Logf("systemd's exposure level of the unit: %s %s", m[1], m[2])
}

// The Helm chart lints, and renders objects Kubernetes' own types accept
// (strictly: no unknown field): one instance on SQLite by default, three
// on PostgreSQL with the scale-out values; more than one without a store
// is refused; a change of the settings changes the pods' checksum.
func TestHelmChart(t *testing.T) {
	helm := requireTool(t, "helm")
	for _, values := range [][]string{nil, {"-f", chartDir + "/ci/scale-out-values.yaml"}} {
		if out, err := exec.Command(helm, append([]string{"lint", "--strict", chartDir}, values...)...).CombinedOutput(); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", values, err, out)
		}
	}
	render := func(args ...string) map[string]runtime.Object {
		t.Helper()
		out, err := exec.Command(helm, append([]string{"template", "registry", chartDir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm template %v: %v\n%s", args, err, out)
		}
		decode := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
		objs := map[string]runtime.Object{}
		for _, doc := range strings.Split(string(out), "\n---") {
			if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---")) == "" {
				continue
			}
			obj, gvk, err := decode.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("a rendered object Kubernetes refuses: %v\n%s", err, doc)
			}
			objs[gvk.Kind] = obj
		}
		return objs
	}

	one := render()
	d := one["Deployment"].(*appsv1.Deployment)
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("default: %d replicas, strategy %q; want 1, Recreate (SQLite)", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	if _, ok := one["PodDisruptionBudget"]; ok {
		t.Error("a PodDisruptionBudget for one instance")
	}

	three := render("-f", chartDir+"/ci/scale-out-values.yaml")
	d = three["Deployment"].(*appsv1.Deployment)
	c := d.Spec.Template.Spec.Containers[0]
	if *d.Spec.Replicas != 3 || d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		t.Errorf("scale-out: %d replicas, strategy %q", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	fromSecret := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			fromSecret[e.Name] = e.ValueFrom.SecretKeyRef.Name
		}
	}
	if fromSecret["BERTH_STORE_DSN"] != "berth-store" || fromSecret["BERTH_SECRET_ENCRYPTION_KEY"] != "berth-keys" {
		t.Errorf("the store's URL and the Secrets key do not come from the Secrets berth-store and berth-keys: %+v", c.Env)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/livez" {
		t.Errorf("probes: readiness %+v, liveness %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/extensions/v2/metrics" || ann["checksum/config"] == "" {
		t.Errorf("pod annotations: %v", ann)
	}
	if pvc := three["PersistentVolumeClaim"].(*corev1.PersistentVolumeClaim); pvc.Spec.AccessModes[0] != corev1.ReadWriteMany {
		t.Errorf("the shared volume is %v", pvc.Spec.AccessModes)
	}
	if _, ok := three["PodDisruptionBudget"]; !ok {
		t.Error("no PodDisruptionBudget for three instances")
	}
	changed := render("-f", chartDir+"/ci/scale-out-values.yaml", "--set", "config.job-lease=1m")
	if changed["Deployment"].(*appsv1.Deployment).Spec.Template.Annotations["checksum/config"] == ann["checksum/config"] {
		t.Error("changing a setting left the pods' checksum as it was: pods would not roll")
	}

	out, err := exec.Command(helm, "template", "registry", chartDir, "--set", "replicaCount=3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs the PostgreSQL store") {
		t.Fatalf("three instances without a store: %v\n%s", err, out)
	}
	out, err = exec.Command(helm, "template", "registry", chartDir, "--set", "replicaCount=3", "--set", "store.existingSecret=s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ReadWriteMany") {
		t.Fatalf("three instances on a ReadWriteOnce volume: %v\n%s", err, out)
	}
}

// The compose file runs three instances on one store and one data
// volume, with PostgreSQL and an S3 server.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string
			Environment map[string]string
			Volumes     []string
			Command     []string
		}
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	berths := 0
	for name, s := range compose.Services {
		if !strings.HasPrefix(name, "berth-") {
			continue
		}
		berths++
		if !strings.HasPrefix(s.Environment["BERTH_STORE_DSN"], "postgres://") || len(s.Volumes) != 1 || !strings.HasPrefix(s.Volumes[0], "berth-data:") {
			t.Errorf("%s: store %q, volumes %v", name, s.Environment["BERTH_STORE_DSN"], s.Volumes)
		}
	}
	if berths != 3 || compose.Services["postgres"].Image == "" || compose.Services["s3"].Image == "" {
		t.Fatalf("services: %d berth, postgres %q, s3 %q", berths, compose.Services["postgres"].Image, compose.Services["s3"].Image)
	}
}
