package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pull-through from Distribution: podman and skopeo pull an imported
// image through Berth, which fetches its layers from the upstream once
// and keeps them; with the upstream stopped, what was pulled before is
// still served, and a layer never pulled fails with a clear error.
func TestPullThrough(t *testing.T) {
	crane := requireTool(t, "crane")
	skopeo := requireTool(t, "skopeo")
	up := startDistribution(t)
	dir := t.TempDir()
	craneEnv := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "SSL_CERT_FILE=" + up.CAFile}
	runIn(t, dir, craneEnv, crane, "auth", "login", up.Addr, "-u", up.User, "-p", up.Password)
	for _, tag := range []string{"v1", "v2"} {
		layer, _ := tarGz(t, "f.txt", []byte("pulled through "+tag+"\n"))
		if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
			t.Fatal(err)
		}
		runIn(t, dir, craneEnv, crane, "append", "-f", "l.tgz", "-t", up.Addr+"/lib/app:"+tag)
	}

	s := startServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	admin.run("", "new-project", "pt")
	allowLoopbackImports(t, admin)
	trustDistribution(t, admin, up, "upstream-ca")
	for _, tag := range []string{"v1", "v2"} {
		admin.run("", "import-image", "app:"+tag, "--from="+up.Addr+"/lib/app:"+tag, "--confirm", "--reference-policy=local")
	}
	token := strings.TrimSpace(admin.run("", "whoami", "-t"))

	ce, pm, try := podmanFor(t, s, token)
	certs := s.CertDir()
	ref := s.Addr + "/pt/app:v1"
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)
	skopeoOut := filepath.Join(t.TempDir(), "oci")
	runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--src-cert-dir", certs, "--src-creds", "kubeadmin:"+token,
		"docker://"+ref, "oci:"+skopeoOut+":v1")

	// Upstream gone: what was pulled is served from Berth.
	up.Stop()
	pm("rmi", "--all", "--force")
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)
	// A layer never pulled cannot be served, and the error says why.
	out, err := try("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, s.Addr+"/pt/app:v2")
	blob := digestRE.FindString(out)
	if err == nil || !strings.Contains(out, "503") || blob == "" {
		t.Fatalf("pull of a never-pulled layer with the upstream down: %v\n%s", err, out)
	}
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/pt/app/blobs/"+blob, "")
	if st != http.StatusServiceUnavailable || !strings.Contains(string(body), "UNAVAILABLE") || !strings.Contains(string(body), "upstream") {
		t.Fatalf("GET of the never-pulled layer = %d %s", st, body)
	}
	// A HEAD of it needs no upstream: the manifest says its size.
	req, _ := http.NewRequest(http.MethodHead, s.URL+"/v2/pt/app/blobs/"+blob, nil)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		t.Errorf("HEAD of the never-pulled layer = %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

// A proxy-cache project serves an upstream's images on first pull,
// creating the stream and its history; it keeps serving them with the
// upstream down, and notices a moved tag after the recheck interval.
func TestProxyCache(t *testing.T) {
	crane := requireTool(t, "crane")
	up := startDistribution(t)
	dir := t.TempDir()
	upEnv := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "up"), "SSL_CERT_FILE=" + up.CAFile}
	runIn(t, dir, upEnv, crane, "auth", "login", up.Addr, "-u", up.User, "-p", up.Password)
	push := func(content string) string {
		t.Helper()
		layer, _ := tarGz(t, "f.txt", []byte(content))
		if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
			t.Fatal(err)
		}
		return digestRE.FindString(runIn(t, dir, upEnv, crane, "append", "-f", "l.tgz", "-t", up.Addr+"/lib/tool:v1"))
	}
	first := push("first\n")

	s := startServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	admin.run("", "new-project", "hub")
	allowLoopbackImports(t, admin)
	trustDistribution(t, admin, up, "upstream-ca")
	pc := filepath.Join(dir, "pc.yaml")
	if err := os.WriteFile(pc, []byte("apiVersion: berth.io/v1\nkind: ProxyCache\nmetadata:\n  name: hub\nspec:\n  upstream: "+up.Addr+
		"\n  prefix: lib\n  recheckInterval: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := admin.run("", "create", "-f", pc); !strings.Contains(out, "proxycache.berth.io/hub created") {
		t.Fatalf("create the proxy cache: %q", out)
	}

	env := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "berth"), "SSL_CERT_FILE=" + s.CAFile()}
	runIn(t, dir, env, crane, "auth", "login", s.Addr, "-u", "admin", "-p", adminPassword)
	ref := s.Addr + "/hub/tool:v1"
	if got := strings.TrimSpace(runIn(t, dir, env, crane, "digest", ref)); got != first {
		t.Fatalf("proxied digest = %s, want %s", got, first)
	}
	runIn(t, dir, env, crane, "export", ref, filepath.Join(dir, "fs1.tar")) // every layer, through
	if got := admin.run("", "get", "istag", "tool:v1", "-n", "hub", "-o", "jsonpath={.image.metadata.name}"); got != first {
		t.Fatalf("the proxied stream's tag = %q, want %s", got, first)
	}

	// The tag moves upstream: seen after the recheck interval.
	second := push("second\n")
	deadline := time.Now().Add(20 * time.Second)
	for strings.TrimSpace(runIn(t, dir, env, crane, "digest", ref)) != second {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy still serves %s after the upstream moved to %s", first, second)
		}
		time.Sleep(500 * time.Millisecond)
	}
	runIn(t, dir, env, crane, "export", ref, filepath.Join(dir, "fs2.tar"))
	if h := strings.Fields(admin.run("", "get", "is", "tool", "-n", "hub", "-o", `jsonpath={range .status.tags[0].items[*]}{.image} {end}`)); len(h) != 2 {
		t.Fatalf("history of the proxied tag: %v", h)
	}

	// Upstream down: the cache answers, stale but whole.
	up.Stop()
	time.Sleep(1500 * time.Millisecond) // past the recheck interval
	if got := strings.TrimSpace(runIn(t, dir, env, crane, "digest", ref)); got != second {
		t.Fatalf("with the upstream down the proxy serves %q, want %s", got, second)
	}
	runIn(t, dir, env, crane, "export", ref, filepath.Join(dir, "fs3.tar"))
	// Something never pulled is not there, and the error says why.
	if _, errOut, err := tryIn(dir, env, crane, "digest", s.Addr+"/hub/other:v1"); err == nil || !strings.Contains(errOut, "UNAVAILABLE") {
		t.Fatalf("a never-pulled image with the upstream down: %v %s", err, errOut)
	}
}
