package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each field of the registry Config, patched with the real kubectl, takes
// effect at once, observed from outside: what /v2 answers, the log, the
// volume on disk, the certificate served; what Berth cannot do is refused
// with the field named.
func TestKubectlPatchesEachConfigField(t *testing.T) {
	const version = "1.33"
	requireTool(t, filepath.Join(kubectlDir, "kubectl."+version))
	s := startServer(t)
	k := newKubectl(t, s, version, oauthToken(t, s, "admin", adminPassword))
	const config = "configs.imageregistry.operator.openshift.io/cluster"
	c := s.Client()
	defer c.CloseIdleConnections()
	patch := func(t *testing.T, body string) {
		t.Helper()
		if out, errOut, err := k.run("patch", config, "--type", "merge", "-p", body); err != nil || !strings.Contains(out, "patched") {
			t.Fatalf("kubectl patch %s: %v %s %s", body, err, out, errOut)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, _, err := k.run("get", config, "-o", "jsonpath={.status.observedGeneration} {.metadata.generation}")
			if f := strings.Fields(out); err == nil && len(f) == 2 && f[0] == f[1] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the operator did not apply %s: %q %v", body, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	call := func(t *testing.T, method, path string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location") + " " + string(b)
	}
	expect := func(t *testing.T, method, path string, want int) {
		t.Helper()
		if got, body := call(t, method, path, nil); got != want {
			t.Errorf("%s %s: %d %s, want %d", method, path, got, body, want)
		}
	}

	t.Run("readOnly", func(t *testing.T) {
		patch(t, `{"spec":{"readOnly":true}}`)
		expect(t, "POST", "/v2/kf/app/blobs/uploads/", 405)
		expect(t, "GET", "/v2/", 200)
		patch(t, `{"spec":{"readOnly":false}}`)
		expect(t, "POST", "/v2/kf/app/blobs/uploads/", 202)
	})
	t.Run("managementState", func(t *testing.T) {
		patch(t, `{"spec":{"managementState":"Removed"}}`)
		expect(t, "GET", "/v2/", 503)
		patch(t, `{"spec":{"managementState":"Managed"}}`)
		expect(t, "GET", "/v2/", 200)
	})
	t.Run("replicas", func(t *testing.T) {
		patch(t, `{"spec":{"replicas":0}}`)
		expect(t, "GET", "/v2/", 503)
		patch(t, `{"spec":{"replicas":1}}`)
		expect(t, "GET", "/v2/", 200)
	})
	t.Run("logLevel and operatorLogLevel", func(t *testing.T) {
		patch(t, `{"spec":{"logLevel":"Debug","operatorLogLevel":"Debug"}}`)
		expect(t, "GET", "/v2/kf/debug/tags/list", 404)
		waitForLog(t, s, `msg="request detail" method=GET path=/v2/kf/debug/tags/list`)
		waitForLog(t, s, `msg="reconciled the registry Config"`)
		patch(t, `{"spec":{"logLevel":"Normal","operatorLogLevel":"Normal"}}`)
		expect(t, "GET", "/v2/kf/normal/tags/list", 404)
		waitForLog(t, s, `path=/v2/kf/normal/tags/list`)
		if strings.Contains(s.Logs(), `msg="request detail" method=GET path=/v2/kf/normal`) {
			t.Error("a debug line after logLevel went back to Normal")
		}
	})
	t.Run("httpSecret", func(t *testing.T) {
		code, loc := call(t, "POST", "/v2/kf/app/blobs/uploads/", nil)
		loc, _, _ = strings.Cut(loc, " ")
		if code != 202 {
			t.Fatalf("start: %d", code)
		}
		patch(t, `{"spec":{"httpSecret":"`+strings.Repeat("0f", 64)+`"}}`)
		expect(t, "PATCH", loc, 404)
	})
	t.Run("storage", func(t *testing.T) {
		before := []byte("in the default volume")
		d := uploadBlob(t, s, "kf/app", before)
		patch(t, `{"spec":{"storage":{"pvc":{"claim":"kubectl-volume"}}}}`)
		// Left in the default volume, and read from there.
		expect(t, "HEAD", "/v2/kf/app/blobs/"+d, 200)
		uploadBlob(t, s, "kf/app", []byte("in the new volume"))
		if _, err := os.Stat(filepath.Join(s.DataDir, "volumes", "kubectl-volume", "blobs")); err != nil {
			t.Errorf("the new volume: %v", err)
		}
		patch(t, `{"spec":{"storage":{"pvc":{"claim":"image-registry-storage"}}}}`)
		expect(t, "HEAD", "/v2/kf/app/blobs/"+d, 200)
	})
	t.Run("requests", func(t *testing.T) {
		patch(t, `{"spec":{"requests":{"write":{"maxRunning":1,"maxInQueue":0}}}}`)
		pr, pw := io.Pipe()
		held := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("POST", s.URL+"/v2/kf/app/blobs/uploads/?digest=sha256:"+strings.Repeat("0", 64), pr)
			req.ContentLength = 1 << 20
			resp, err := c.Do(req)
			if err != nil {
				held <- -1
				return
			}
			resp.Body.Close()
			held <- resp.StatusCode
		}()
		if _, err := pw.Write(make([]byte, 1024)); err != nil { // the handler reads: the slot is taken
			t.Fatal(err)
		}
		expect(t, "POST", "/v2/kf/app/blobs/uploads/", 429)
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-held
		patch(t, `{"spec":{"requests":{"write":{"maxRunning":0}}}}`)
		expect(t, "POST", "/v2/kf/app/blobs/uploads/", 202)
	})
	t.Run("routes", func(t *testing.T) {
		patch(t, `{"spec":{"routes":[{"name":"kf","hostname":"kf.localhost"}]}}`)
		if out, errOut, err := k.run("get", "routes", "-n", "openshift-image-registry", "kf", "-o", "jsonpath={.spec.host}"); err != nil || !strings.HasPrefix(out, "kf.localhost") {
			t.Errorf("the Route: %q %v %s", out, err, errOut)
		}
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(s.CAFile())
		if err != nil || !pool.AppendCertsFromPEM(ca) {
			t.Fatalf("CA: %v", err)
		}
		conn, err := tls.Dial("tcp", s.Addr, &tls.Config{ServerName: "kf.localhost", RootCAs: pool})
		if err != nil {
			t.Fatalf("a TLS handshake for kf.localhost: %v", err)
		}
		conn.Close()
		patch(t, `{"spec":{"routes":null}}`)
		if conn, err := tls.Dial("tcp", s.Addr, &tls.Config{ServerName: "kf.localhost", RootCAs: pool}); err == nil {
			conn.Close()
			t.Error("a removed route's host still verifies")
		}
	})
	t.Run("refused", func(t *testing.T) {
		for body, want := range map[string]string{
			`{"spec":{"proxy":{"http":"ftp://proxy.example:21"}}}`: "spec.proxy.http",
			`{"spec":{"nodeSelector":{"disk":"ssd"}}}`:             "spec.nodeSelector",
			`{"spec":{"requests":{"read":{"maxRunning":-1}}}}`:     "spec.requests.read.maxRunning",
			`{"spec":{"storage":{"emptyDir":{}}}}`:                 "exactly one storage type should be configured at the same time, got 2",
		} {
			if _, errOut, err := k.run("patch", config, "--type", "merge", "-p", body); err == nil || !strings.Contains(errOut, want) {
				t.Errorf("kubectl patch %s: %v %q, want refused naming %q", body, err, errOut, want)
			}
		}
	})
}

// waitForLog waits for the server's log to contain want.
func waitForLog(t *testing.T, s *server, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Logs(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
