package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/opencontainers/go-digest"
)

type running struct {
	url  string
	logs *lockedBuffer
	stop context.CancelFunc
	done chan error
}

type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // closed at the next Write
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wrote != nil {
		close(l.wrote)
		l.wrote = nil
	}
	return l.b.Write(p)
}

// waitFor returns the logs once they hold s, or fails the test after
// timeout.
func (l *lockedBuffer) waitFor(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		wrote := l.changed() // before reading: no write is missed
		if logs := l.String(); strings.Contains(logs, s) {
			return logs
		}
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("no %q in the log after %v:\n%s", s, timeout, l.String())
		}
	}
}

// changed returns a channel closed at the next Write.
func (l *lockedBuffer) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wrote == nil {
		l.wrote = make(chan struct{})
	}
	return l.wrote
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const testAdminPassword = "server-test-admin"

// admin is an HTTP client that authenticates as the bootstrap admin.
var admin = &http.Client{Transport: basicAuth{"admin", testAdminPassword}}

type basicAuth struct{ user, password string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.user, b.password)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	cfg.InsecureHTTP = true
	return launch(t, cfg)
}

// launch runs the server as cfg says: over TLS unless cfg.InsecureHTTP.
func launch(t *testing.T, cfg Config) *running {
	t.Helper()
	if cfg.AdminPassword == "" {
		cfg.AdminPassword = testAdminPassword
	}
	return serve(t, cfg)
}

// serve runs cfg on a loopback port until the test ends (TLS unless
// cfg.InsecureHTTP; the administrator's password generated unless given).
func serve(t *testing.T, cfg Config) *running {
	t.Helper()
	ready := make(chan net.Addr, 1)
	logs := &lockedBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Listen, cfg.Ready = "127.0.0.1:0", ready
	if cfg.Storage == "" {
		cfg.Storage = "filesystem"
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg) }()
	select {
	case addr := <-ready:
		r.url = "http://" + addr.String()
		if !cfg.InsecureHTTP {
			r.url = "https://" + addr.String()
		}
	case err := <-r.done:
		t.Fatalf("server ended before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

func (r *running) shutdown(t *testing.T) {
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
		r.done <- nil // idempotent for Cleanup
	case <-time.After(40 * time.Second):
		t.Fatal("server did not stop")
	}
}

func pushBlob(t *testing.T, url, repo string, content []byte) *http.Response {
	t.Helper()
	dgst := digest.FromBytes(content)
	resp, err := admin.Post(url+"/v2/"+repo+"/blobs/uploads/?digest="+dgst.String(), "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func status(t *testing.T, method, url string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAccessLogOneLinePerRequest(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	if s := status(t, "GET", r.url+"/v2/p/app/tags/list"); s != 404 {
		t.Fatalf("tags of unknown repo = %d", s)
	}
	var entry map[string]any
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"request"`) {
			if entry != nil {
				t.Fatalf("more than one access line for one request:\n%s", r.logs.String())
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatal(err)
			}
		}
	}
	if entry == nil {
		t.Fatalf("no access line in:\n%s", r.logs.String())
	}
	for k, want := range map[string]any{"method": "GET", "path": "/v2/p/app/tags/list", "status": float64(404), "client": "127.0.0.1"} {
		if entry[k] != want {
			t.Errorf("access line %s = %v, want %v", k, entry[k], want)
		}
	}
	if _, ok := entry["duration"]; !ok {
		t.Error("access line has no duration")
	}
	if b, ok := entry["bytes"].(float64); !ok || b <= 0 {
		t.Errorf("access line bytes = %v", entry["bytes"])
	}
}

func TestMemoryStorageForgetsOnRestart(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir, Storage: "memory"})
	content := []byte("ephemeral")
	if resp := pushBlob(t, r.url, "p/app", content); resp.StatusCode != 201 {
		t.Fatalf("push = %d", resp.StatusCode)
	}
	blobURL := "/v2/p/app/blobs/" + digest.FromBytes(content).String()
	if s := status(t, "HEAD", r.url+blobURL); s != 200 {
		t.Fatalf("HEAD after push = %d", s)
	}
	r.shutdown(t)
	r = start(t, Config{DataDir: dir, Storage: "memory"})
	if s := status(t, "HEAD", r.url+blobURL); s != 404 {
		t.Fatalf("memory storage kept a blob across restart: HEAD = %d", s)
	}
}

func TestFilesystemKeepsAndCleansOnRestart(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	content := []byte("durable")
	pushBlob(t, r.url, "p/app", content)
	resp, err := admin.Post(r.url+"/v2/p/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	session := resp.Header.Get("Location")
	req, _ := http.NewRequest("PATCH", r.url+session, strings.NewReader("partial"))
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 202 {
		t.Fatalf("PATCH = %v, %v", resp, err)
	}
	r.shutdown(t)
	stray := filepath.Join(dir, "storage", "uploads", "deadbeef")
	if err := os.WriteFile(stray, []byte("left by a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = start(t, Config{DataDir: dir})
	if s := status(t, "GET", r.url+"/v2/p/app/blobs/"+digest.FromBytes(content).String()); s != 200 {
		t.Fatalf("blob lost across restart: %d", s)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Fatalf("stray upload file survived the start: %v", err)
	}
	// The open session survives and resumes where it was.
	req, _ = http.NewRequest("GET", r.url+session, nil)
	st, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	st.Body.Close()
	if st.StatusCode != 204 || st.Header.Get("Range") != "0-6" {
		t.Fatalf("session after restart = %d Range %q", st.StatusCode, st.Header.Get("Range"))
	}
}

func TestSecondProcessOnSameDataIsRefused(t *testing.T) {
	dir := t.TempDir()
	start(t, Config{DataDir: dir})
	err := Run(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", InsecureHTTP: true, Storage: "filesystem",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "in use by another berth") {
		t.Fatalf("second server on the same data directory: %v", err)
	}
}

// TestGracefulShutdown: a request in flight when SIGTERM arrives finishes
// within the grace period; one that cannot is cut and leaves nothing visible.
// Each upload sends half its body while the server is serving and the rest
// only once the server is shutting down.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir, ShutdownTimeout: 2 * time.Second})
	content := bytes.Repeat([]byte("x"), 1<<20)
	finished := startHalfSentUpload(t, "POST", r.url+"/v2/p/app/blobs/uploads/?digest="+digest.FromBytes(content).String(), content)
	// A chunk of an upload session in flight too: its session bookkeeping
	// must not be cancelled by the stop signal.
	resp, err := admin.Post(r.url+"/v2/p/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	patched := startHalfSentUpload(t, "PATCH", r.url+resp.Header.Get("Location"), content)
	other := append([]byte("other"), content...)
	cut := startHalfSentUpload(t, "POST", r.url+"/v2/p/app/blobs/uploads/?digest="+digest.FromBytes(other).String(), other)
	defer cut.body.Close()

	began := time.Now()
	r.stop()
	waitListenerClosed(t, r.url)
	finished.sendRest(t)
	patched.sendRest(t)
	if code := finished.wait(t); code != 201 {
		t.Fatalf("in-flight upload during shutdown = %d, want 201 (0: no answer)", code)
	}
	if code := patched.wait(t); code != 202 {
		t.Fatalf("in-flight PATCH during shutdown = %d, want 202 (0: no answer)", code)
	}
	if err := <-r.done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	r.done <- nil
	// The server is gone; let the client give up on the body it never sent.
	cut.body.CloseWithError(io.ErrUnexpectedEOF)
	if code := cut.wait(t); code == 201 {
		t.Fatal("an upload that never finished was acknowledged")
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("shutdown took %v, beyond its bound", d)
	}
	r = start(t, Config{DataDir: dir})
	for _, tc := range []struct {
		content []byte
		want    int
	}{{content, 200}, {other, 404}} {
		if s := status(t, "HEAD", fmt.Sprintf("%s/v2/p/app/blobs/%s", r.url, digest.FromBytes(tc.content))); s != tc.want {
			t.Errorf("after restart HEAD = %d, want %d", s, tc.want)
		}
	}
}

// halfSentUpload is a request whose body the test sends in two halves.
type halfSentUpload struct {
	body   *io.PipeWriter
	rest   []byte
	status chan int // the answer's status; 0 when there was none
}

// startHalfSentUpload sends a request as the administrator and the first
// half of its body, once the server's handler is reading the body: the
// request says Expect: 100-continue and the client holds the body back
// until the server's 100 Continue, which it sends at the handler's first
// read.
func startHalfSentUpload(t *testing.T, method, url string, content []byte) *halfSentUpload {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	t.Cleanup(tr.CloseIdleConnections)
	pr, pw := io.Pipe()
	reading := make(chan struct{})
	trace := &httptrace.ClientTrace{Got100Continue: func() { close(reading) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(content))
	req.Header.Set("Expect", "100-continue")
	req.SetBasicAuth("admin", testAdminPassword)
	u := &halfSentUpload{body: pw, rest: content[len(content)/2:], status: make(chan int, 1)}
	go func() {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			u.status <- 0
			return
		}
		resp.Body.Close()
		u.status <- resp.StatusCode
	}()
	select {
	case <-reading:
	case code := <-u.status:
		t.Fatalf("%s %s answered %d before reading the body", method, url, code)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s %s: no 100 Continue within 30s: the handler did not read the body", method, url)
	}
	if _, err := pw.Write(content[:len(content)/2]); err != nil {
		t.Fatalf("%s %s: send the first half: %v", method, url, err)
	}
	return u
}

// sendRest sends the second half of the body and ends it.
func (u *halfSentUpload) sendRest(t *testing.T) {
	t.Helper()
	if _, err := u.body.Write(u.rest); err != nil {
		t.Fatalf("the request ended before its second half was sent: %v", err)
	}
	u.body.Close()
}

// wait returns the answer's status (0: none).
func (u *halfSentUpload) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-u.status:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30s")
		return 0
	}
}

// waitListenerClosed waits until the server at url refuses connections: a
// shutdown has begun (it closes the listener first).
func waitListenerClosed(t *testing.T, url string) {
	t.Helper()
	addr := strings.TrimPrefix(url, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections 10s after the stop signal", addr)
		}
		time.Sleep(5 * time.Millisecond) // paces the polling
	}
}

// An open watch does not hold a graceful shutdown for its grace period:
// watches are told to end when the server stops.
func TestShutdownEndsWatches(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), ShutdownTimeout: 20 * time.Second})
	req, _ := http.NewRequest("POST", r.url+"/apis/project.openshift.io/v1/projectrequests",
		strings.NewReader(`{"metadata":{"name":"team"}}`))
	resp, err := admin.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create project: %v %v", resp, err)
	}
	resp.Body.Close()
	watch, err := admin.Get(r.url + "/api/v1/namespaces/team/configmaps?watch=true")
	if err != nil || watch.StatusCode != http.StatusOK {
		t.Fatalf("watch: %v %v", watch, err)
	}
	defer watch.Body.Close()
	r.shutdown(t)
	if strings.Contains(r.logs.String(), "were cut") {
		t.Fatalf("the shutdown waited out its grace period for an open watch:\n%s", r.logs.String())
	}
	if _, err := io.Copy(io.Discard, watch.Body); err != nil {
		t.Fatalf("the watch did not end cleanly: %v", err)
	}
}

// Deleting a project ends its upload sessions and discards their bytes at
// once, not at the next start.
func TestDeletingAProjectDiscardsItsUploads(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	resp, err := admin.Post(r.url+"/v2/gone/app/blobs/uploads/", "", nil) // creates project gone
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	session := resp.Header.Get("Location")
	req, _ := http.NewRequest("PATCH", r.url+session, strings.NewReader("partial"))
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 202 {
		t.Fatalf("PATCH = %v, %v", resp, err)
	}
	file := filepath.Join(dir, "storage", "uploads", registrytest.SessionID(session))
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the session's bytes are not where expected: %v", err)
	}
	if s := status(t, "DELETE", r.url+"/apis/project.openshift.io/v1/projects/gone"); s != 200 {
		t.Fatalf("delete project = %d", s)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the deleted project's upload bytes are still there: %v", err)
	}
}
