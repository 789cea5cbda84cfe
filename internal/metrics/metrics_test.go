package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/memory"
)

// series finds the series of family name whose labels include want
// (name=value pairs); nil when there is none.
func series(t *testing.T, g prometheus.Gatherer, name string, want ...string) *dto.Metric {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(want); i += 2 {
				if labels[want[i]] != want[i+1] {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// value is the value of a counter or gauge series, 0 when absent.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	m := series(t, g, name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", name)
	return 0
}

func sampleCount(t *testing.T, g prometheus.Gatherer, name string, labels ...string) uint64 {
	t.Helper()
	m := series(t, g, name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Summary != nil:
		return m.Summary.GetSampleCount()
	case m.Histogram != nil:
		return m.Histogram.GetSampleCount()
	}
	t.Fatalf("%s is neither a summary nor a histogram", name)
	return 0
}

func TestInstrumentCountsRequestsAndBytes(t *testing.T) {
	m := New()
	h := m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v2/p/app/blobs/uploads/":
			w.WriteHeader(http.StatusAccepted)
		case "/v2/p/app/blobs/sha256:x":
			_, _ = io.Copy(w, strings.NewReader(strings.Repeat("b", 1000))) // ReadFrom, as a blob is served
		case "/v2/p/app/manifests/v1":
			_, _ = w.Write([]byte("manifest"))
		case "/apis/x":
			_, _ = w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	do := func(method, path, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body == "" {
			req.Body = http.NoBody
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	do("PATCH", "/v2/p/app/blobs/uploads/", strings.Repeat("u", 300))
	do("GET", "/v2/p/app/blobs/sha256:x", "")
	do("GET", "/v2/p/app/manifests/v1", "")
	do("POST", "/apis/x", "not an image") // not /v2: neither pushed nor pulled
	do("GET", "/nowhere", "")
	do("BREW", "/nowhere", "")
	g := m.Gatherer()
	for _, c := range []struct {
		code, method string
		want         float64
	}{{"202", "patch", 1}, {"200", "get", 2}, {"200", "post", 1}, {"404", "get", 1}, {"404", "unknown", 1}} {
		if got := value(t, g, "imageregistry_http_requests_total", "code", c.code, "method", c.method); got != c.want {
			t.Errorf("requests {code=%s, method=%s} = %v, want %v", c.code, c.method, got, c.want)
		}
	}
	if got := value(t, g, "berth_registry_bytes_pushed_total"); got != 300 {
		t.Errorf("bytes pushed = %v, want 300", got)
	}
	if got := value(t, g, "berth_registry_bytes_pulled_total"); got != 1008 {
		t.Errorf("bytes pulled = %v, want 1008", got)
	}
	if n := sampleCount(t, g, "imageregistry_http_request_duration_seconds", "method", "get"); n != 3 {
		t.Errorf("GET durations observed: %d, want 3", n)
	}
	if n := sampleCount(t, g, "imageregistry_http_request_size_bytes"); n != 6 {
		t.Errorf("request sizes observed: %d, want 6", n)
	}
	if s := series(t, g, "imageregistry_http_response_size_bytes"); s.Summary.GetSampleSum() < 1008+12 {
		t.Errorf("response bytes summed: %v", s.Summary.GetSampleSum())
	}
	if got := value(t, g, "imageregistry_http_in_flight_requests"); got != 0 {
		t.Errorf("in flight after every request ended: %v", got)
	}
}

// readerFromWriter is a ResponseWriter whose ReadFrom (sendfile, on a
// real connection) must be reached through the wrapper.
type readerFromWriter struct {
	*httptest.ResponseRecorder
	readFrom bool
}

func (w *readerFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.readFrom = true
	return io.Copy(w.ResponseRecorder, r)
}

func TestInstrumentKeepsSendfileAndFlush(t *testing.T) {
	m := New()
	flushed := false
	h := m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As http.ServeContent copies a file: through a LimitedReader,
		// which has no WriteTo, so the writer's ReadFrom is what io.Copy
		// finds.
		_, _ = io.Copy(w, io.LimitReader(bytes.NewReader([]byte("blob")), 4))
		f, ok := w.(http.Flusher)
		if ok {
			f.Flush()
			flushed = true
		}
	}))
	w := &readerFromWriter{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v2/p/a/blobs/x", nil))
	if !w.readFrom || !flushed || w.Body.String() != "blob" {
		t.Fatalf("ReadFrom reached: %v, flushed: %v, body %q", w.readFrom, flushed, w.Body)
	}
}

// A handler's panic (net/http recovers it) still ends the request in the
// metrics.
func TestInstrumentSurvivesPanics(t *testing.T) {
	m := New()
	h := m.Instrument(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))
	func() {
		defer func() { _ = recover() }()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v2/", nil))
	}()
	if got := value(t, m.Gatherer(), "imageregistry_http_in_flight_requests"); got != 0 {
		t.Fatalf("in flight after a panic: %v", got)
	}
}

// failingDriver fails each operation with err.
type failingDriver struct{ err error }

func (f failingDriver) Open(context.Context, digest.Digest, int64, int64) (io.ReadCloser, error) {
	return nil, f.err
}
func (f failingDriver) Append(_ context.Context, _ storage.Upload, _ int64, r io.Reader) (int64, []byte, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return 0, nil, err
	}
	return 0, nil, f.err
}
func (f failingDriver) ReadUpload(context.Context, storage.Upload) (io.ReadCloser, error) {
	return nil, f.err
}
func (f failingDriver) Commit(context.Context, storage.Upload, digest.Digest, int64) error {
	return f.err
}
func (f failingDriver) Abort(context.Context, storage.Upload) error { return f.err }
func (f failingDriver) Delete(context.Context, digest.Digest) error { return f.err }

type brokenReader struct{}

func (brokenReader) Read([]byte) (int, error) { return 0, errors.New("client hung up") }

func TestDriverTimesAndCountsErrors(t *testing.T) {
	ctx := context.Background()
	m := New()
	d := m.Driver(memory.NewDriver())
	content := "layer"
	dgst := digest.FromString(content)
	if _, _, err := d.Append(ctx, storage.Upload{ID: "u1"}, 0, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, storage.Upload{ID: "u1"}, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	rc, err := d.Open(ctx, dgst, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	_, _ = d.Open(ctx, digest.FromString("missing"), 0, -1)
	if _, ok := d.(storage.Seeker); !ok {
		t.Error("the wrapper of a Seeker is no Seeker")
	}
	if _, ok := m.Driver(rangesOnly{d}).(storage.Seeker); ok {
		t.Error("the wrapper of a driver that is no Seeker claims to be one")
	}
	g := m.Gatherer()
	for _, op := range []string{"Append", "Commit", "Open"} {
		if n := sampleCount(t, g, "imageregistry_storage_duration_seconds", "operation", "StorageDriver."+op); n == 0 {
			t.Errorf("%s not timed", op)
		}
	}
	if got := value(t, g, "imageregistry_storage_errors_total", "operation", "StorageDriver.Open", "code", "PATH_NOT_FOUND"); got != 1 {
		t.Errorf("missing blob errors = %v, want 1", got)
	}
	if got := value(t, g, "imageregistry_storage_errors_total", "operation", "StorageDriver.Commit"); got != 0 {
		t.Errorf("a commit that worked counted an error: %v", got)
	}

	for _, c := range []struct {
		err  error
		code string
	}{
		{fmt.Errorf("write: %w", syscall.ENOSPC), "DEVICE_OUT_OF_SPACE"},
		{fmt.Errorf("write: %w", syscall.EROFS), "READ_ONLY_FILESYSTEM"},
		{fmt.Errorf("offset: %w", errdefs.ErrInvalidArgument), "INVALID_OFFSET"},
		{errors.New("disk on fire"), "UNKNOWN"},
		{fmt.Errorf("size: %w", errdefs.ErrSizeMismatch), ""}, // the client's mistake
		{context.Canceled, ""},
	} {
		m := New()
		d := m.Driver(failingDriver{c.err})
		_ = d.Commit(ctx, storage.Upload{ID: "u"}, dgst, 1)
		total := 0.0
		for _, f := range must(m.Gatherer().Gather()) {
			if f.GetName() == "imageregistry_storage_errors_total" {
				for _, s := range f.Metric {
					total += s.Counter.GetValue()
				}
			}
		}
		want := 0.0
		if c.code != "" {
			want = 1
		}
		if got := value(t, m.Gatherer(), "imageregistry_storage_errors_total", "operation", "StorageDriver.Commit", "code", c.code); c.code != "" && got != 1 || total != want {
			t.Errorf("%v: counted %v in all, want 1 as %q", c.err, total, c.code)
		}
	}
	// A body that fails to arrive is no storage error.
	m = New()
	_, _, _ = m.Driver(failingDriver{errors.New("client hung up")}).Append(ctx, storage.Upload{ID: "u"}, 0, brokenReader{})
	if got := value(t, m.Gatherer(), "imageregistry_storage_errors_total", "operation", "StorageDriver.Append", "code", "UNKNOWN"); got != 0 {
		t.Errorf("a client's failure counted as a storage error")
	}
	if n := sampleCount(t, m.Gatherer(), "imageregistry_storage_duration_seconds", "operation", "StorageDriver.Append"); n != 1 {
		t.Errorf("the failed append was not timed")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The wrapper answers for the optional capabilities as a driver without
// them would, and passes them through when the driver has them.
func TestDriverOptionalCapabilities(t *testing.T) {
	ctx := context.Background()
	d := New().Driver(failingDriver{})
	if url, err := d.(storage.Redirector).RedirectURL(ctx, digest.FromString("x")); url != "" || err != nil {
		t.Errorf("RedirectURL of a driver that cannot = %q %v", url, err)
	}
	if e := d.(storage.Volatile).Epoch(); e != "" {
		t.Errorf("Epoch of a durable driver = %q", e)
	}
	if err := d.(storage.Recoverer).Recover(ctx, func(string) bool { return true }); err != nil {
		t.Errorf("Recover = %v", err)
	}
	inner := epochDriver{failingDriver{}}
	if e := New().Driver(inner).(storage.Volatile).Epoch(); e != "boot-1" {
		t.Errorf("Epoch passed through = %q", e)
	}
}

type epochDriver struct{ failingDriver }

func (epochDriver) Epoch() string { return "boot-1" }

func TestLimiterAndReadOnlySeriesExistFromTheStart(t *testing.T) {
	m := New()
	g := m.Gatherer()
	for _, name := range []string{"berth_limiter_queued_requests", "berth_limiter_running_requests", "berth_limiter_rejected_requests_total"} {
		for _, kind := range []string{"read", "write"} {
			if series(t, g, name, "kind", kind) == nil {
				t.Errorf("no %s{kind=%q}", name, kind)
			}
		}
	}
	l := m.LimiterObserver("write")
	l.Queued.Inc()
	l.Rejected.Inc()
	if value(t, g, "berth_limiter_queued_requests", "kind", "write") != 1 || value(t, g, "berth_limiter_rejected_requests_total", "kind", "write") != 1 ||
		value(t, g, "berth_limiter_queued_requests", "kind", "read") != 0 {
		t.Error("the limiter's series do not move as told")
	}
	if series(t, g, "berth_registry_read_only") == nil || value(t, g, "berth_registry_read_only") != 0 {
		t.Error("read-only is not 0 at start")
	}
	m.SetReadOnly(true)
	if value(t, g, "berth_registry_read_only") != 1 {
		t.Error("read-only not set")
	}
	if series(t, g, "imageregistry_build_info") == nil || series(t, g, "go_goroutines") == nil {
		t.Error("no build info or Go runtime metrics")
	}
}

func TestSemverParts(t *testing.T) {
	for _, c := range []struct{ in, major, minor string }{
		{"v1.2.3", "1", "2"}, {"v0.0.0-20260101000000-abcdef012345", "0", "0"}, {"v3.11+dirty", "3", "11"},
		{"unknown", "", ""}, {"vX.1", "", ""}, {"v1", "", ""},
	} {
		if major, minor := semverParts(c.in); major != c.major || minor != c.minor {
			t.Errorf("semverParts(%q) = %q %q, want %q %q", c.in, major, minor, c.major, c.minor)
		}
	}
}

// BenchmarkInstrument is what the middleware adds to a request: compare
// "instrumented" with "bare".
// Run: go test ./internal/metrics -run '^$' -bench Instrument
func BenchmarkInstrument(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	})
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare", handler}, {"instrumented", New().Instrument(handler)}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("PUT", "/v2/p/app/manifests/v1", nil)
			w := &discardWriter{h: http.Header{}}
			body := &resettableBody{}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset("manifest")
				req.Body = body
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

type resettableBody struct{ strings.Reader }

func (*resettableBody) Close() error { return nil }

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// rangesOnly is a driver without the Seeker capability.
type rangesOnly struct{ storage.Driver }
