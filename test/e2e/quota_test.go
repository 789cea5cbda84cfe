package e2e

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"
)

// A project's ResourceQuota and LimitRange bound what skopeo may push: an
// image over the limit range's max storage, blobs past the storage quota
// and a stream past the stream quota are each refused with DENIED and a
// message naming the object and the figures; what was pushed before still
// pulls whole, and berth describe quota shows used against hard.
func TestQuotasRefusePushes(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	s := startServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	admin.run("", "new-project", "q")
	ce := newContainersEnv(t)
	push := func(repo string, img *testImage) (string, error) {
		_, stderr, err := tryIn("", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--retry-times", "0", "--dest-cert-dir", s.CertDir(),
			"--dest-creds", "admin:"+adminPassword, img.OCIRef(), "docker://"+s.Addr+"/"+repo)
		return stderr, err
	}
	noise := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b) // incompressible: the layer is as large as the file
		return b
	}

	admin.run(`apiVersion: v1
kind: LimitRange
metadata:
  name: images
spec:
  limits:
  - type: openshift.io/Image
    max:
      storage: 40Ki
`, "apply", "-n", "q", "-f", "-")
	small := newTestImage(t, "v1", "small.txt", []byte("fits\n"))
	if out, err := push("q/app:v1", small); err != nil {
		t.Fatalf("a small image: %v\n%s", err, out)
	}
	large := newTestImage(t, "v2", "large.bin", noise(64<<10))
	out, err := push("q/app:v2", large)
	if err == nil || !strings.Contains(out, "denied") ||
		!regexp.MustCompile(`image sha256:[0-9a-f]{64} of size \d+ exceeds the maximum of limit range images \(openshift.io/Image max\): storage=40Ki`).MatchString(out) {
		t.Fatalf("an image of 64 KiB with a limit of 40Ki: %v\n%s", err, out)
	}

	// The storage quota counts what q/app links (the refused image's
	// blobs too, until the collector frees them).
	admin.run("", "create", "quota", "registry", "-n", "q", "--hard=openshift.io/imagestreams=1,berth.io/storage=100Ki")
	out, err = push("q/app:v3", newTestImage(t, "v3", "more.bin", noise(50<<10)))
	if err == nil || !strings.Contains(out, "denied") ||
		!regexp.MustCompile(`exceeded quota: registry, requested: berth.io/storage=\d+, used: berth.io/storage=\d+, limited: berth.io/storage=100Ki`).MatchString(out) {
		t.Fatalf("50 KiB more in a project holding 64 KiB with a quota of 100Ki: %v\n%s", err, out)
	}
	out, err = push("q/other:v1", newTestImage(t, "v1", "other.txt", []byte("a second stream\n")))
	if err == nil || !strings.Contains(out, "denied") ||
		!strings.Contains(out, "exceeded quota: registry, requested: openshift.io/imagestreams=1, used: openshift.io/imagestreams=1, limited: openshift.io/imagestreams=1") {
		t.Fatalf("a second stream with a quota of 1: %v\n%s", err, out)
	}

	verifyRegistryImage(t, s, "q/app", "v1", "small.txt", []byte("fits\n"))
	described := admin.run("", "describe", "quota", "registry", "-n", "q")
	if !tableRow(described, "openshift.io/imagestreams", "1", "1") || !tableRow(described, "berth.io/storage") || !strings.Contains(described, "100Ki") {
		t.Fatalf("berth describe quota:\n%s", described)
	}
	if got := admin.run("", "get", "quota", "-n", "q"); !strings.Contains(got, "openshift.io/imagestreams: 1/1") {
		t.Fatalf("berth get quota:\n%s", got)
	}
	// Raised, the push that was refused goes through.
	admin.run("", "patch", "quota", "registry", "-n", "q", "--type=merge", "-p", `{"spec":{"hard":{"berth.io/storage":"1Mi"}}}`)
	if out, err := push("q/app:v3", newTestImage(t, "v3", "more.bin", noise(30<<10))); err != nil {
		t.Fatalf("after the quota was raised: %v\n%s", err, out)
	}
}
