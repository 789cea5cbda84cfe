package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// countingRegistry wraps ggcr's in-memory registry and counts requests by
// method and route, so tests can check what a workload sent.
type countingRegistry struct {
	next http.Handler
	mu   sync.Mutex
	hits map[string]int
	auth string // when set, every request must carry this Basic auth
}

func (c *countingRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.auth != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u+":"+p != c.auth {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	route := "other"
	switch p := r.URL.Path; {
	case strings.Contains(p, "/blobs/uploads/"):
		route = "upload"
	case strings.Contains(p, "/blobs/"):
		route = "blob"
	case strings.Contains(p, "/manifests/"):
		route = "manifest"
	case p == "/v2/_catalog":
		route = "catalog"
	}
	c.mu.Lock()
	c.hits[r.Method+" "+route]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *countingRegistry) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits[key]
}

func (c *countingRegistry) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hits = map[string]int{}
}

func newTestRegistry(t *testing.T) (*httptest.Server, *countingRegistry) {
	t.Helper()
	reg := &countingRegistry{
		next: registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		hits: map[string]int{},
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return srv, reg
}

// smallConfig runs workloads on layers of 1, 10 and 100 KiB with 10 KiB
// chunks, so the 100m workloads still send ten chunks.
func smallConfig(url string) Config {
	return Config{
		URL: url, Concurrency: 3, Requests: 8, Timeout: time.Minute,
		SmallSize: 1 << 10, MediumSize: 10 << 10, LargeSize: 100 << 10, ChunkSize: 10 << 10,
		CatalogRepos: 3, CatalogPage: 100,
		ServerPID: os.Getpid(), // the registry runs in this process
	}
}

func TestEveryWorkload(t *testing.T) {
	srv, _ := newTestRegistry(t)
	cfg := smallConfig(srv.URL)
	var seen []string
	cfg.OnResult = func(r Result) { seen = append(seen, r.Workload) }
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(allWorkloads) || len(seen) != len(allWorkloads) {
		t.Fatalf("got %d results (%d reported), want %d", len(rep.Results), len(seen), len(allWorkloads))
	}
	if rep.Failed() {
		t.Errorf("report says the run failed")
	}
	for _, r := range rep.Results {
		t.Run(r.Workload, func(t *testing.T) {
			if r.SetupError != "" || r.Errors != 0 || r.FirstError != "" {
				t.Fatalf("setup error %q, %d errors, first %q", r.SetupError, r.Errors, r.FirstError)
			}
			if r.Completed != cfg.Requests || r.Canceled != 0 || r.TimedOut {
				t.Errorf("completed %d, canceled %d, timed out %v; want %d completed", r.Completed, r.Canceled, r.TimedOut, cfg.Requests)
			}
			l := r.LatencyMillis
			if !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max && l.Min <= l.Mean && l.Mean <= l.Max) {
				t.Errorf("latencies out of order: %+v", l)
			}
			if r.ElapsedSeconds <= 0 || r.ReqPerSec <= 0 {
				t.Errorf("elapsed %v, req/s %v", r.ElapsedSeconds, r.ReqPerSec)
			}
			if r.BlobSize > 0 {
				// Every request moves at least its layer.
				if r.Bytes < int64(r.Completed)*r.BlobSize || r.MBPerSec <= 0 {
					t.Errorf("moved %d bytes (%v MB/s) in %d requests of %d-byte layers", r.Bytes, r.MBPerSec, r.Completed, r.BlobSize)
				}
			} else if r.Bytes <= 0 {
				t.Errorf("moved no bytes")
			}
			if runtime.GOOS == "linux" && (r.Server == nil || r.Server.PeakRSSBytes <= 0) {
				t.Errorf("no server stats: %+v", r.Server)
			}
			if r.Kind == KindMixed {
				if r.Ops["pull"] != 6 || r.Ops["push"] != 2 {
					t.Errorf("mixed ops %v, want 6 pulls and 2 pushes of 8", r.Ops)
				}
			}
		})
	}
}

// TestRequestShapes checks each workload sends the HTTP requests zb's do.
func TestRequestShapes(t *testing.T) {
	srv, reg := newTestRegistry(t)
	const n = 4
	cases := []struct {
		workload string
		want     map[string]int
	}{
		// layer: POST + PUT; config: POST + PUT; manifest PUT.
		{"push-mono-10m", map[string]int{"POST upload": 2 * n, "PUT upload": 2 * n, "PATCH upload": 0, "PUT manifest": n}},
		// a 100 KiB layer in 10 KiB chunks: 10 PATCHes; the config: 1.
		{"push-chunk-100m", map[string]int{"POST upload": 2 * n, "PATCH upload": 11 * n, "PUT upload": 2 * n, "PUT manifest": n}},
		// one setup push, then manifest + config + layer per pull.
		{"pull-1m", map[string]int{"GET manifest": n, "GET blob": 2 * n, "PUT manifest": 1}},
		{"manifest-get", map[string]int{"GET manifest": n, "GET blob": 0, "PUT manifest": 1}},
		{"catalog", map[string]int{"GET catalog": n, "PUT manifest": 3}},
	}
	for _, tc := range cases {
		t.Run(tc.workload, func(t *testing.T) {
			ws, err := SelectWorkloads([]string{tc.workload})
			if err != nil {
				t.Fatal(err)
			}
			reg.reset()
			cfg := smallConfig(srv.URL)
			cfg.Requests, cfg.Concurrency, cfg.Workloads = n, 2, ws
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r := rep.Results[0]; r.Errors != 0 || r.Completed != n {
				t.Fatalf("%d completed, %d errors: %s", r.Completed, r.Errors, r.FirstError)
			}
			for k, v := range tc.want {
				if got := reg.count(k); got != v {
					t.Errorf("%s: %d requests, want %d", k, got, v)
				}
			}
		})
	}
}

func TestPushedBlobsAreUniqueAndCorrect(t *testing.T) {
	f := newBlobFactory(64 << 10)
	seen := map[string]bool{}
	for _, size := range []int64{1, 15, 16, 17, 1000, 64 << 10} {
		for range 3 {
			p, err := f.layer(size)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if _, err := io.Copy(&b, p.section(0, p.size)); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b.Bytes())
			if want := "sha256:" + hex.EncodeToString(sum[:]); p.digest != want || int64(b.Len()) != size {
				t.Fatalf("size %d: digest %s, want %s; %d bytes", size, p.digest, want, b.Len())
			}
			if size >= tailLen && seen[p.digest] {
				t.Fatalf("size %d: digest %s repeated", size, p.digest)
			}
			seen[p.digest] = true
			// Sections put together make the whole blob.
			var parts bytes.Buffer
			for off := int64(0); off < size; off += 7 {
				_, _ = io.Copy(&parts, p.section(off, min(7, size-off)))
			}
			if !bytes.Equal(parts.Bytes(), b.Bytes()) {
				t.Fatalf("size %d: sections differ from the blob", size)
			}
		}
	}
	if _, err := f.layer(128 << 10); err == nil {
		t.Error("a layer larger than the generated content was made")
	}
}

func TestBasicAuth(t *testing.T) {
	srv, reg := newTestRegistry(t)
	reg.auth = "alice:secret"
	ws, _ := SelectWorkloads([]string{"push-mono-1m", "pull-1m"})
	cfg := smallConfig(srv.URL)
	cfg.Workloads = ws
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without credentials: %v, want a 401 error", err)
	}
	cfg.Username, cfg.Password = "alice", "secret"
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() {
		t.Fatalf("run with credentials failed: %+v", rep.Results)
	}
}

func TestErrorsAreCounted(t *testing.T) {
	// A registry whose manifest PUTs fail: every push is an error.
	srv, reg := newTestRegistry(t)
	inner := reg.next
	reg.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			http.Error(w, `{"errors":[{"code":"DENIED"}]}`, http.StatusForbidden)
			return
		}
		inner.ServeHTTP(w, r)
	})
	ws, _ := SelectWorkloads([]string{"push-mono-1m"})
	cfg := smallConfig(srv.URL)
	cfg.Workloads = ws
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if r.Errors != cfg.Requests || r.Completed != 0 || !strings.Contains(r.FirstError, "403") || !rep.Failed() {
		t.Fatalf("errors %d, completed %d, first %q", r.Errors, r.Completed, r.FirstError)
	}
	// Setup failures are reported per workload.
	ws, _ = SelectWorkloads([]string{"pull-1m"})
	cfg.Workloads = ws
	rep, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Results[0].SetupError == "" || !rep.Failed() {
		t.Fatalf("pull setup against a failing registry: %+v", rep.Results[0])
	}
}

func TestTimeoutStopsAWorkload(t *testing.T) {
	srv, reg := newTestRegistry(t)
	inner := reg.next
	reg.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/_catalog" {
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		inner.ServeHTTP(w, r)
	})
	ws, _ := SelectWorkloads([]string{"catalog"})
	cfg := smallConfig(srv.URL)
	cfg.Workloads, cfg.Requests, cfg.Concurrency, cfg.Timeout = ws, 1000, 2, 300*time.Millisecond
	start := time.Now()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if !r.TimedOut || r.Completed == 0 || r.Completed >= 1000 || r.Errors != 0 {
		t.Fatalf("timed out %v, completed %d, errors %d (%s)", r.TimedOut, r.Completed, r.Errors, r.FirstError)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("run took %v", time.Since(start))
	}
}

func TestSelectWorkloads(t *testing.T) {
	all, err := SelectWorkloads(nil)
	if err != nil || len(all) != len(allWorkloads) {
		t.Fatalf("nil: %d workloads, %v", len(all), err)
	}
	ws, err := SelectWorkloads([]string{"catalog", " PULL ", "push-mono-1m"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range ws {
		names = append(names, w.Name)
	}
	// Canonical order, kinds expanded.
	if got := strings.Join(names, ","); got != "push-mono-1m,pull-1m,pull-10m,pull-100m,catalog" {
		t.Errorf("got %s", got)
	}
	if _, err := SelectWorkloads([]string{"nope"}); err == nil {
		t.Error("an unknown workload was accepted")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 90: 90, 99: 99, 100: 100, 0: 1} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(d[:1], 99); got != 1 {
		t.Errorf("p99 of one = %v", got)
	}
}

func TestReports(t *testing.T) {
	srv, _ := newTestRegistry(t)
	ws, _ := SelectWorkloads([]string{"manifest-get", "pull-1m"})
	cfg := smallConfig(srv.URL)
	cfg.Workloads = ws
	var bar bytes.Buffer
	cfg.Progress, cfg.ProgressWidth = &bar, 60
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 2 || back.Results[1].LatencyMillis.P99 == 0 {
		t.Fatalf("JSON round trip: %v, %+v", err, back)
	}
	for _, key := range []string{`"req_per_s"`, `"mb_per_s"`, `"p50"`, `"p90"`, `"p99"`, `"errors"`, `"cpu_s"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	var txt bytes.Buffer
	WriteText(&txt, rep)
	for _, s := range []string{"WORKLOAD", "manifest-get", "pull-1m", "REQ/S"} {
		if !strings.Contains(txt.String(), s) {
			t.Errorf("text lacks %q:\n%s", s, txt.String())
		}
	}
	if !strings.Contains(bar.String(), "\r") || !strings.Contains(bar.String(), "manifest-get") {
		t.Errorf("no progress drawn: %q", bar.String())
	}
}

func TestMeasureLoopback(t *testing.T) {
	lb, err := MeasureLoopback(context.Background(), 2, 100*time.Millisecond, 1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	if lb.TCPMBPerSec <= 0 || lb.HTTPMBPerSec <= 0 || len(lb.TCPAll) != 2 || lb.TCPMBPerSec < lb.TCPAll[1] {
		t.Fatalf("%+v", lb)
	}
}

// SpreadConnections opens connections round robin to the addresses given,
// whatever host the requests name.
func TestSpreadConnections(t *testing.T) {
	var hits [3]atomic.Int64
	var addrs []string
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
		defer srv.Close()
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	c, err := NewHTTPClient(1, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := SpreadConnections(c, addrs); err != nil {
		t.Fatal(err)
	}
	c.Transport.(*http.Transport).DisableKeepAlives = true // a connection per request
	for range 6 {
		resp, err := c.Get("http://registry.example:5000/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i := range hits {
		if n := hits[i].Load(); n != 2 {
			t.Errorf("instance %d got %d of 6 connections, want 2", i, n)
		}
	}
}
