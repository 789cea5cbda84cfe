package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berth-registry/berth/internal/logging"
	"github.com/berth-registry/berth/internal/storage/filesystem"
	"github.com/berth-registry/berth/internal/store"
)

// withLogging sets cfg up as `berth serve` does: logfmt to logs and to a
// ring, at a level that can change.
func withLogging(t *testing.T, cfg *Config, logs io.Writer) {
	t.Helper()
	level, err := logging.ParseLevel("info")
	if err != nil {
		t.Fatal(err)
	}
	ring := logging.NewRing(logging.DefaultRingBytes, logging.DefaultRingLines)
	h, err := logging.NewHandler(io.MultiWriter(ring, logs), "logfmt", level)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger, cfg.LogLevel, cfg.LogRing = slog.New(h), level, ring
}

var logfmtLine = regexp.MustCompile(`^time=(\S+) level=([a-z]+) msg=("[^"]*"|\S+)(?: .*)? instance\.id=(\S+)$`)

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := admin.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The log is the reference's logfmt with instance.id on every line; its
// level follows the LevelVar while the server runs; the pod's log serves
// what was written.
func TestLogfmtLevelAndPodLog(t *testing.T) {
	logs := &lockedBuffer{}
	cfg := Config{DataDir: t.TempDir()}
	withLogging(t, &cfg, logs)
	r := start(t, cfg)

	var id string
	lines := strings.Split(strings.TrimSpace(logs.waitFor(t, "berth serving", 10*time.Second)), "\n")
	for _, line := range lines {
		m := logfmtLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %q is not logfmt ending in instance.id", line)
		}
		if ts, err := time.Parse(time.RFC3339, m[1]); err != nil || !strings.HasSuffix(m[1], "Z") || time.Since(ts) > time.Minute {
			t.Errorf("time %q: %v", m[1], err)
		}
		if m[2] != "info" && m[2] != "warn" {
			t.Errorf("level %q in %q", m[2], line)
		}
		if id == "" {
			id = m[4]
		} else if m[4] != id {
			t.Errorf("instance.id %q, then %q", id, m[4])
		}
	}
	if _, err := uuid.Parse(id); err != nil {
		t.Errorf("instance.id %q is not a UUID", id)
	}
	listening := regexp.MustCompile(`level=info msg="listening on 127\.0\.0\.1:\d+" instance\.id=` + id)
	if !listening.MatchString(logs.String()) {
		t.Errorf("no listening line:\n%s", logs.String())
	}

	// The level moves with the LevelVar, at once.
	cfg.LogLevel.Set(slog.LevelDebug)
	status(t, "GET", r.url+"/v2/debug1/app/tags/list")
	logs.waitFor(t, `msg="request detail" method=GET path=/v2/debug1/app/tags/list`, 10*time.Second)
	cfg.LogLevel.Set(slog.LevelInfo)
	status(t, "GET", r.url+"/v2/info1/app/tags/list")
	got := logs.waitFor(t, "path=/v2/info1/app/tags/list", 10*time.Second)
	if strings.Contains(got, `msg="request detail" method=GET path=/v2/info1`) {
		t.Errorf("a debug line after the level went back to info:\n%s", got)
	}

	// One pod, this instance; its log is what went to stderr.
	code, body := getBody(t, r.url+"/api/v1/namespaces/openshift-image-registry/pods")
	var pods struct {
		Items []struct {
			Metadata struct{ Name, UID string }
		}
	}
	if err := json.Unmarshal([]byte(body), &pods); err != nil || code != 200 || len(pods.Items) != 1 || pods.Items[0].Metadata.UID != id {
		t.Fatalf("pods = %d %s", code, body)
	}
	pod := "/api/v1/namespaces/openshift-image-registry/pods/" + pods.Items[0].Metadata.Name
	code, all := getBody(t, r.url+pod+"/log")
	if code != 200 || !strings.Contains(all, `msg="listening on `) || !strings.Contains(all, "path=/v2/info1/app/tags/list") {
		t.Fatalf("log = %d:\n%s", code, all)
	}
	if !strings.HasPrefix(logs.String(), all) {
		t.Errorf("the pod's log is not what stderr got:\n%s\nstderr:\n%s", all, logs.String())
	}
	code, tail := getBody(t, r.url+pod+"/log?tailLines=5")
	if got := strings.Split(strings.TrimSuffix(tail, "\n"), "\n"); code != 200 || len(got) != 5 || !strings.HasSuffix(got[4], "instance.id="+id) {
		t.Errorf("tailLines=5 = %d %q", code, got)
	}
}

// /readyz fails from the stop signal on, while requests are still served
// through the shutdown delay; the instance's row says Terminating, then
// goes.
func TestReadyzDuringShutdown(t *testing.T) {
	logs := &lockedBuffer{}
	dir := t.TempDir()
	cfg := Config{DataDir: dir, ShutdownDelay: 5 * time.Second}
	withLogging(t, &cfg, logs)
	r := start(t, cfg)
	if code, body := getBody(t, r.url+"/readyz"); code != 200 || body != "" {
		t.Fatalf("/readyz while serving = %d %q", code, body)
	}
	r.stop()
	logs.waitFor(t, `msg="shutting down"`, 10*time.Second)
	code, body := getBody(t, r.url+"/readyz")
	if code != 503 || !strings.Contains(body, `"code":"UNAVAILABLE"`) || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while shutting down = %d %s", code, body)
	}
	if code, _ := getBody(t, r.url+"/healthz"); code != 200 {
		t.Errorf("/healthz while shutting down = %d (alive until it stops)", code)
	}
	tableReq, _ := http.NewRequest("GET", r.url+"/api/v1/namespaces/openshift-image-registry/pods", nil)
	tableReq.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := admin.Do(tableReq)
	if err != nil {
		t.Fatal(err)
	}
	table, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(table), `"0/1","Terminating"`) {
		t.Errorf("the pod while shutting down: %s", table)
	}
	r.shutdown(t)
	meta := openTestStore(t, dir)
	if rows, err := meta.Instances(context.Background()); err != nil || len(rows) != 0 {
		t.Errorf("heartbeat rows after a graceful stop: %+v, %v", rows, err)
	}
}

func probe(h http.HandlerFunc, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h(w, httptest.NewRequest("GET", path, nil))
	return w
}

// /healthz answers 503 when the metadata store cannot answer or the blob
// root cannot take a file, with the registry's error shape.
func TestHealthz(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta, err := store.OpenSQLite(ctx, filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	blobs, err := filesystem.Open(filepath.Join(dir, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHealth(meta, blobs, slog.New(slog.DiscardHandler))
	h.ttl = 0 // no cache: each probe checks
	w := probe(h.healthz, "/healthz")
	if w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" || w.Body.Len() != 0 {
		t.Fatalf("healthy: %d %v %q", w.Code, w.Header(), w.Body)
	}
	unhealthy := func(what string) {
		t.Helper()
		w := probe(h.healthz, "/healthz")
		var body struct {
			Errors []struct{ Code, Message, Detail string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 503 || len(body.Errors) != 1 ||
			body.Errors[0].Code != "UNAVAILABLE" || !strings.Contains(body.Errors[0].Detail, what) {
			t.Errorf("with %s broken: %d %s", what, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), dir) {
			t.Errorf("the answer names a path: %s", w.Body)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "storage")); err != nil {
		t.Fatal(err)
	}
	unhealthy("blob storage")
	if err := os.MkdirAll(filepath.Join(dir, "storage", "blobs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if w := probe(h.healthz, "/healthz"); w.Code != 200 {
		t.Errorf("after the blob root came back: %d %s", w.Code, w.Body)
	}
	meta.Close()
	unhealthy("metadata store")
	// /readyz says the same, and more.
	h.serving.Store(true)
	if w := probe(h.readyz, "/readyz"); w.Code != 503 || !strings.Contains(w.Body.String(), "metadata store") {
		t.Errorf("/readyz with the store closed: %d %s", w.Code, w.Body)
	}
	// /livez asks only whether the process answers: a liveness probe must
	// not restart every instance for their store's outage.
	if w := probe(h.livez, "/livez"); w.Code != 200 {
		t.Errorf("/livez with the store closed: %d %s", w.Code, w.Body)
	}
}

// A flood of probes costs one check a second; a probe that hangs up does
// not cut the check short for the others.
func TestHealthChecksCached(t *testing.T) {
	var calls atomic.Int32
	h := &health{ttl: time.Hour, timeout: time.Second, log: slog.New(slog.DiscardHandler), checks: []healthCheck{{
		what: "the test check failed",
		check: func(ctx context.Context) error {
			calls.Add(1)
			return ctx.Err()
		},
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/healthz", nil)
	for range 50 {
		w := httptest.NewRecorder()
		h.healthz(w, req)
		if w.Code != 200 {
			t.Fatalf("probe = %d %s", w.Code, w.Body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("50 probes ran the check %d times", n)
	}
	h.checks[0].check = func(context.Context) error { return errors.New("down") }
	h.checked = time.Time{}
	if w := probe(h.healthz, "/healthz"); w.Code != 503 {
		t.Errorf("a failing check: %d", w.Code)
	}
	if w := probe(h.readyz, "/readyz"); w.Code != 503 || !strings.Contains(w.Body.String(), "not serving yet") {
		t.Errorf("/readyz before serving: %d %s", w.Code, w.Body)
	}
}

// A process killed before it removed its row leaves it behind; with the
// data directory's own store, the next start forgets it.
func TestRestartForgetsDeadInstances(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	meta, err := store.OpenSQLite(ctx, filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	dead := store.Instance{ID: uuid.NewString(), Name: "image-registry-bbbbbbbbbb-dead1", Host: "h", Version: "v", Listen: ":5000", Ready: true, Started: time.Now()}
	if err := meta.Heartbeat(ctx, dead); err != nil {
		t.Fatal(err)
	}
	meta.Close()
	r := start(t, Config{DataDir: dir})
	code, body := getBody(t, r.url+"/api/v1/namespaces/openshift-image-registry/pods")
	if code != 200 || strings.Contains(body, dead.Name) || strings.Count(body, `"kind":"Pod"`) != 1 {
		t.Errorf("pods after a restart: %d %s", code, body)
	}
}

// A running server's /healthz checks the storage in effect through every
// wrapper it has (the metrics' timing): a blob root gone is 503, back is
// 200.
func TestHealthzChecksTheStorageInEffect(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	health := func() int {
		code, _ := getBody(t, r.url+"/healthz")
		return code
	}
	if c := health(); c != 200 {
		t.Fatalf("/healthz: %d", c)
	}
	blobs := filepath.Join(dir, "storage", "blobs")
	if err := os.Rename(blobs, blobs+".away"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return health() == 503 })
	if err := os.Rename(blobs+".away", blobs); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return health() == 200 })
}
