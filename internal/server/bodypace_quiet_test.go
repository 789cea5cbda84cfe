package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A response whose handler goes quiet after its last write and returns
// later still has bytes to send: net/http writes the end of a chunked body
// ("0\r\n\r\n") and what the handler left in its buffers after it
// returns. They go out under a deadline of their own, not the one of the
// last write, long past by then; a watch that saw no change in its last
// window (kubectl get -w ending at timeoutSeconds) ends cleanly.
func TestIdleWatchEndsCleanly(t *testing.T) {
	// A window of 1 s: the deadline of a watch's last flush passes about
	// 1.1 s after it; the watch ends after 3 s.
	r := start(t, Config{DataDir: t.TempDir(), BodyTimeout: time.Second, BodyMinRate: 64 << 10})
	req, _ := http.NewRequest("POST", r.url+"/apis/project.openshift.io/v1/projectrequests",
		strings.NewReader(`{"metadata":{"name":"team"}}`))
	resp, err := admin.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create project: %v %v", resp, err)
	}
	resp.Body.Close()
	watch, err := admin.Get(r.url + "/api/v1/namespaces/team/configmaps?watch=true&timeoutSeconds=3")
	if err != nil || watch.StatusCode != http.StatusOK {
		t.Fatalf("watch: %v %v", watch, err)
	}
	defer watch.Body.Close()
	began := time.Now()
	if _, err := io.Copy(io.Discard, watch.Body); err != nil {
		t.Fatalf("a watch that timed out after %v idle did not end cleanly: %v "+
			"(the write deadline of its last flush had passed when net/http wrote the end of the chunked body)",
			time.Since(began).Round(time.Millisecond), err)
	}
}

// The same, reduced to the wrapper: a handler that writes a little (held
// in net/http's buffer), works for longer than a window and returns keeps
// its answer.
func TestQuietHandlerKeepsItsAnswer(t *testing.T) {
	window := 300 * time.Millisecond
	h := paceBodies(newBodyPace(window, 64<<10), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello") // buffered: nothing reaches the connection yet
		time.Sleep(3 * window)            // a slow store call, a lock, a watch waiting for a change
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("a handler quiet for %v after its last write: its answer was lost: %v", 3*window, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "hello" {
		t.Fatalf("body %q, %v", b, err)
	}
}
