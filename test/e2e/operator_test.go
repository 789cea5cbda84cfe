package e2e

import (
	"strings"
	"testing"
	"time"
)

// The Config acts live: `berth patch … readOnly` refuses a podman push
// and lifting it lets the same push through, with no restart; `berth get
// co image-registry` tells the registry's state as `oc get co` does.
func TestReadOnlyLive(t *testing.T) {
	podman := requireTool(t, "podman")
	s := startDevServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	const config = "configs.imageregistry.operator.openshift.io/cluster"

	ce := newContainersEnv(t)
	global := append(ce.storageFlags(), "--tmpdir", ce.TmpDir, "--cgroup-manager=cgroupfs", "--events-backend=file")
	pm := func(args ...string) string {
		t.Helper()
		return runIn(t, "", ce.Env, podman, append(global, args...)...)
	}
	img := newTestImage(t, "v1", "hello.txt", []byte("read-only test\n"))
	id, _ := loadIntoPodman(t, ce, pm, img)
	ref := s.Addr + "/e2e/readonly:v1"
	pm("tag", id, ref)
	pm("login", "--cert-dir", s.CertDir(), "-u", devUser, "-p", registryToken(t, s), s.Addr)

	waitApplied := func() {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := admin.run("", "get", config, "-o", "jsonpath={.status.observedGeneration} {.metadata.generation}")
			if f := strings.Fields(got); len(f) == 2 && f[0] == f[1] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the operator did not apply the Config: %q", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if out := admin.run("", "patch", config, "--type", "merge", "-p", `{"spec":{"readOnly":true}}`); out != "config.imageregistry.operator.openshift.io/cluster patched\n" {
		t.Fatalf("patch readOnly: %q", out)
	}
	waitApplied()
	o, e, err := tryIn("", ce.Env, podman, append(global, "push", "--signature-policy", ce.Policy, "--cert-dir", s.CertDir(), ref)...)
	if err == nil || !strings.Contains(o+e, "read-only") {
		t.Errorf("podman push while read-only: err %v; want a refusal naming read-only\n%s", err, tail(o+e, 1000))
	}

	co := admin.run("", "get", "co", "image-registry")
	lines := strings.Split(strings.TrimSpace(co), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME VERSION AVAILABLE PROGRESSING DEGRADED SINCE" {
		t.Fatalf("berth get co image-registry:\n%s", co)
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[0] != "image-registry" || f[2] != "True" || f[3] != "False" || f[4] != "False" {
		t.Errorf("image-registry row: %q", lines[1])
	}

	admin.run("", "patch", config, "--type", "merge", "-p", `{"spec":{"readOnly":false}}`)
	waitApplied()
	pm("push", "--signature-policy", ce.Policy, "--cert-dir", s.CertDir(), ref)
	if tags := tagList(t, s, "e2e/readonly"); len(tags) != 1 || tags[0] != "v1" {
		t.Errorf("tags after the push: %v", tags)
	}

	// With no storage the ClusterOperator says why the registry is down.
	admin.run("", "patch", config, "--type", "merge", "-p", `{"spec":{"storage":null}}`)
	waitApplied()
	co = admin.run("", "get", "co", "image-registry", "-o", "wide")
	if !strings.Contains(co, "storage backend not configured") || !strings.Contains(co, "False") {
		t.Errorf("get co -o wide without storage:\n%s", co)
	}
}
