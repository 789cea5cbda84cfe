package server

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsClient trusts the CA of the server's data directory and sends the
// administrator's credentials.
func tlsClient(t *testing.T, dataDir string) (*http.Client, *tls.Config) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in ca.crt")
	}
	config := &tls.Config{RootCAs: pool}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: config}, Timeout: 30 * time.Second}, config
}

// plainRequest sends head over plain TCP and reads the answer until the
// server closes the connection (bounded).
func plainRequest(t *testing.T, addr, head string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var sent *http.Request // nil: a GET, as ReadResponse reads it
	if strings.HasPrefix(head, "HEAD ") {
		sent = &http.Request{Method: "HEAD"}
	}
	resp, err := http.ReadResponse(br, sent)
	if err != nil {
		t.Fatalf("answer to %q: %v", head, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body of the answer to %q: %v", head, err)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the answer to %q the connection stays open (read %d, %v)", head, n, err)
	}
	return resp, string(body)
}

// A plain HTTP request on the TLS port (oras talks plain HTTP to localhost
// unless told otherwise) is answered with what to do instead; TLS clients
// are served as before.
func TestPlainHTTPOnTheTLSPortIsToldToUseHTTPS(t *testing.T) {
	dir := t.TempDir()
	r := launch(t, Config{DataDir: dir})
	addr := strings.TrimPrefix(r.url, "https://")
	_, port, _ := net.SplitHostPort(addr)
	for _, c := range []struct{ head, contentType, url string }{
		{"GET /v2/ HTTP/1.1\r\nHost: localhost:" + port + "\r\nUser-Agent: oras\r\n\r\n", "application/json", "https://localhost:" + port + "/v2/"},
		{"GET /v2/p/app/manifests/v1 HTTP/1.1\r\nHost: localhost:" + port + "\r\n\r\n", "application/json", "https://localhost:" + port + "/v2/p/app/manifests/v1"},
		{"POST /v2/p/app/blobs/uploads/ HTTP/1.1\r\nHost: localhost:" + port + "\r\nContent-Length: 5\r\n\r\nhello", "application/json", "https://localhost:" + port + "/v2/p/app/blobs/uploads/"},
		{"GET /apis HTTP/1.1\r\nHost: " + addr + "\r\n\r\n", "text/plain; charset=utf-8", "https://" + addr + "/apis"},
		{"GET /healthz HTTP/1.0\r\n\r\n", "text/plain; charset=utf-8", "https://" + addr + "/healthz"},
	} {
		resp, body := plainRequest(t, addr, c.head)
		if resp.StatusCode != http.StatusBadRequest || resp.Proto != "HTTP/1.1" || resp.Header.Get("Content-Type") != c.contentType {
			t.Errorf("%q: %s %s %q, want HTTP/1.1 400 %s", c.head, resp.Proto, resp.Status, resp.Header.Get("Content-Type"), c.contentType)
		}
		for _, want := range []string{"this port speaks HTTPS", c.url, "--plain-http", "--cacert"} {
			if !strings.Contains(body, want) {
				t.Errorf("%q: the answer does not say %q:\n%s", c.head, want, body)
			}
		}
	}
	if resp, body := plainRequest(t, addr, "HEAD /v2/ HTTP/1.1\r\nHost: localhost:"+port+"\r\n\r\n"); resp.StatusCode != 400 || body != "" {
		t.Errorf("HEAD: %s with body %q, want 400 without one", resp.Status, body)
	}
	// Not HTTP at all: the hint still names the port's address.
	if resp, body := plainRequest(t, addr, "\x00\x01 garbage\r\n\r\n"); resp.StatusCode != 400 || !strings.Contains(body, "https://"+addr+"/") {
		t.Errorf("garbage: %s %q", resp.Status, body)
	}

	client, _ := tlsClient(t, dir)
	req, _ := http.NewRequest("GET", r.url+"/v2/", nil)
	req.SetBasicAuth("admin", testAdminPassword)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("GET /v2/ over TLS = %d (TLS %v)", resp.StatusCode, resp.TLS != nil)
	}
	// The clients' mistake is logged at debug level, not as a warning.
	r.logs.waitFor(t, "plain HTTP on the TLS port", 10*time.Second)
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, "plain HTTP on the TLS port") && !strings.Contains(line, `"level":"DEBUG"`) {
			t.Errorf("a plain-HTTP attempt logged above debug: %s", line)
		}
	}
}

// Request bodies are paced over TLS too: the read deadline the pacing sets
// through http.ResponseController reaches the connection under TLS.
func TestStalledBodyIsCutOffOverTLS(t *testing.T) {
	dir := t.TempDir()
	r := launch(t, Config{DataDir: dir, BodyTimeout: time.Second, BodyMinRate: 1024})
	client, config := tlsClient(t, dir)
	// A token: no password check delays reading the body.
	req, _ := http.NewRequest("GET", r.url+"/openshift/token", nil)
	req.SetBasicAuth("admin", testAdminPassword)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || answer.Token == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(r.url, "https://"), config)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "PATCH /api/v1/namespaces/p/configmaps/c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + answer.Token +
		"\r\nContent-Type: application/merge-patch+json\r\nContent-Length: 4000\r\n\r\n{"
	began := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("a stalled body over TLS kept the connection open for %v with a 1s window", time.Since(began))
	}
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled body over TLS = %s, want 408", resp.Status)
		}
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a stalled body over TLS was cut after %v with a 1s window", took)
	}
}
