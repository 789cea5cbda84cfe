package imagestream_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/imagestream"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/upstream"
)

// recordedBlobs is a BlobSink that keeps what imports fetch (config
// blobs) in memory.
type recordedBlobs struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func (b *recordedBlobs) PutBlob(_ context.Context, repo string, dgst digest.Digest, _ int64, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.blobs == nil {
		b.blobs = map[string][]byte{}
	}
	b.blobs[repo+"@"+string(dgst)] = data
	return nil
}

// schedEnv is a store with project "team", a service that imports from
// an in-memory upstream registry over plain HTTP, and that upstream.
type schedEnv struct {
	t    *testing.T
	meta *store.Store
	svc  *imagestream.Service
	up   *httptest.Server
	host string // 127.0.0.1:port of the upstream
}

func newSchedEnv(t *testing.T) *schedEnv {
	t.Helper()
	ctx := context.Background()
	meta, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	if err := meta.CreateProject(ctx, store.Project{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(up.Close)
	svc := imagestream.New(meta)
	svc.SetImporter(&imagestream.Importer{
		Upstreams: &upstream.Access{Client: http.DefaultClient, Limiter: rate.NewLimiter(rate.Inf, 0)},
		Blobs:     &recordedBlobs{},
	})
	return &schedEnv{t: t, meta: meta, svc: svc, up: up, host: strings.TrimPrefix(up.URL, "http://")}
}

// push writes a new random image to repo:tag upstream and returns its
// digest.
func (e *schedEnv) push(repoTag string) string {
	e.t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		e.t.Fatal(err)
	}
	ref, err := name.ParseReference(e.host+"/"+repoTag, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		e.t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		e.t.Fatal(err)
	}
	return d.String()
}

// importTags imports each tag of stream from its upstream repo:tag, as
// `berth import-image --insecure [--scheduled]` does.
func (e *schedEnv) importTags(stream string, scheduled bool, tagFrom map[string]string) {
	e.t.Helper()
	isi := &imagev1.ImageStreamImport{Spec: imagev1.ImageStreamImportSpec{Import: true}}
	isi.Name = stream
	for tag, from := range tagFrom {
		isi.Spec.Images = append(isi.Spec.Images, imagev1.ImageImportSpec{
			From:         imagev1.ObjectReference{Kind: imagev1.KindDockerImage, Name: e.host + "/" + from},
			To:           &imagev1.LocalObjectReference{Name: tag},
			ImportPolicy: imagev1.TagImportPolicy{Insecure: true, Scheduled: scheduled},
		})
	}
	out, err := e.svc.Import(context.Background(), "team", isi, false)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range out.Images {
		if r.Err != nil {
			e.t.Fatalf("import %s:%s: %v", stream, r.Tag, r.Err)
		}
	}
}

// history is the images of stream:tag, newest first.
func (e *schedEnv) history(stream, tag string) []string {
	e.t.Helper()
	evs, err := e.meta.TagHistory(context.Background(), "team/"+stream, tag)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, string(ev.Digest))
	}
	return out
}

func (e *schedEnv) scheduler(perMinute int, now func() time.Time) *imagestream.Scheduler {
	return &imagestream.Scheduler{Service: e.svc, Specs: e.meta, PerMinute: perMinute, Now: now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// A scheduled tag is imported on its bucket's pass, and only then: a new
// upstream image is one new history entry, an unchanged one writes
// nothing; a tag of the same stream that is not scheduled stays as it
// was; an upstream that is gone leaves the image and sets the tag's
// ImportSuccess condition to False.
func TestSchedulerPass(t *testing.T) {
	ctx := context.Background()
	e := newSchedEnv(t)
	first := e.push("lib/app:v1")
	fixed := e.push("lib/other:v1")
	e.importTags("app", true, map[string]string{"latest": "lib/app:v1"})
	e.importTags("app", false, map[string]string{"fixed": "lib/other:v1"})
	if h := e.history("app", "latest"); len(h) != 1 || h[0] != first {
		t.Fatalf("after the first import, app:latest = %v, want [%s]", h, first)
	}
	second := e.push("lib/app:v1")
	e.push("lib/other:v1")
	s := e.scheduler(0, nil)
	bucket := imagestream.Bucket("team", "app")

	for b := range imagestream.Buckets {
		if b == bucket {
			continue
		}
		if n, err := s.Pass(ctx, b); err != nil || n != 0 {
			t.Fatalf("pass of bucket %d (app is in %d) = %d, %v; want nothing imported", b, bucket, n, err)
		}
	}
	if h := e.history("app", "latest"); len(h) != 1 {
		t.Fatalf("another bucket's pass moved app:latest: %v", h)
	}

	if n, err := s.Pass(ctx, bucket); err != nil || n != 1 {
		t.Fatalf("pass of app's bucket = %d, %v; want 1 import", n, err)
	}
	if h := e.history("app", "latest"); len(h) != 2 || h[0] != second || h[1] != first {
		t.Fatalf("after the re-push, app:latest = %v, want [%s %s]", h, second, first)
	}
	if h := e.history("app", "fixed"); len(h) != 1 || h[0] != fixed {
		t.Fatalf("the unscheduled app:fixed = %v, want only [%s]", h, fixed)
	}

	// Unchanged upstream: imported (checked) again, nothing written.
	before, err := e.meta.LatestResourceVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Pass(ctx, bucket); err != nil || n != 1 {
		t.Fatalf("pass with an unchanged upstream = %d, %v; want 1 import", n, err)
	}
	if h := e.history("app", "latest"); len(h) != 2 {
		t.Fatalf("an unchanged upstream added history: %v", h)
	}
	if after, err := e.meta.LatestResourceVersion(ctx); err != nil || after != before {
		t.Fatalf("an unchanged upstream wrote events: resourceVersion %d → %d (%v)", before, after, err)
	}

	// The upstream is gone: the tag keeps its image, the failure is its
	// condition.
	e.up.Close()
	if n, err := s.Pass(ctx, bucket); err != nil || n != 0 {
		t.Fatalf("pass with the upstream gone = %d, %v; want 0 imports and no error", n, err)
	}
	if h := e.history("app", "latest"); len(h) != 2 || h[0] != second {
		t.Fatalf("a failed import moved app:latest: %v", h)
	}
	conds, err := e.meta.TagConditions(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	c := conds["latest"]
	if len(c) != 1 || c[0].Type != store.ConditionImportSuccess || c[0].Status != "False" || c[0].Reason == "" || !strings.Contains(c[0].Message, e.host) {
		t.Fatalf("conditions of app:latest after a failed import: %+v", c)
	}
	if len(conds["fixed"]) != 0 {
		t.Fatalf("the unscheduled tag got a condition: %+v", conds["fixed"])
	}
	is, err := e.svc.Named(ctx, "h", "team", "app")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range is.Status.Tags {
		if st.Tag == "latest" && (len(st.Conditions) != 1 || st.Conditions[0].Status != "False" || st.Items[0].Image != second) {
			t.Fatalf("the stream's status of latest: %+v", st)
		}
	}
}

// PerMinute caps the imports: a token bucket of PerMinute a minute,
// burst twice that. A pass that runs out stops, and the bucket's next
// pass starts with the tag it stopped at.
func TestSchedulerRateLimit(t *testing.T) {
	ctx := context.Background()
	e := newSchedEnv(t)
	e.push("lib/app:v1")
	tags := []string{"a", "b", "c"}
	e.importTags("many", true, map[string]string{"a": "lib/app:v1", "b": "lib/app:v1", "c": "lib/app:v1"})
	e.push("lib/app:v1")
	moved := func() (out []string) {
		for _, tag := range tags {
			if len(e.history("many", tag)) == 2 {
				out = append(out, tag)
			}
		}
		return out
	}
	var mu sync.Mutex
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s := e.scheduler(1, now)
	bucket := imagestream.Bucket("team", "many")

	if n, err := s.Pass(ctx, bucket); err != nil || n != 2 {
		t.Fatalf("first pass with PerMinute 1 (burst 2) = %d, %v; want 2", n, err)
	}
	if m := moved(); strings.Join(m, ",") != "a,b" {
		t.Fatalf("after the first pass, the tags imported anew are %v, want [a b]", m)
	}
	if n, err := s.Pass(ctx, bucket); err != nil || n != 0 {
		t.Fatalf("a pass with no tokens left = %d, %v; want 0", n, err)
	}
	mu.Lock()
	clock = clock.Add(time.Minute)
	mu.Unlock()
	if n, err := s.Pass(ctx, bucket); err != nil || n != 1 {
		t.Fatalf("a pass a minute later = %d, %v; want 1", n, err)
	}
	if m := moved(); len(m) != 3 {
		t.Fatalf("the pass after the limit did not start where the last stopped: imported anew %v, want all of %v", m, tags)
	}
}

// Run visits the buckets in turn, each stream about once per Interval,
// and returns when its context ends.
func TestSchedulerRun(t *testing.T) {
	e := newSchedEnv(t)
	e.push("lib/app:v1")
	e.importTags("app", true, map[string]string{"latest": "lib/app:v1"})
	second := e.push("lib/app:v1")
	var logs bytes.Buffer
	var logMu sync.Mutex
	s := e.scheduler(0, nil)
	s.Interval = 80 * time.Millisecond
	s.Log = slog.New(slog.NewTextHandler(&lockedWriter{mu: &logMu, w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if h := e.history("app", "latest"); len(h) == 2 && h[0] == second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if h := e.history("app", "latest"); len(h) != 2 || h[0] != second {
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("Run did not import the re-pushed tag within 10s: %v\n%s", h, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
