package s3_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/s3"
	"github.com/berth-registry/berth/internal/storage/s3/s3test"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

var gateway *s3test.Gateway

func TestMain(m *testing.M) {
	// The gateway is plain HTTP on loopback; a CA bundle of the machine's
	// would only ask the driver to wrap the test's counting transport.
	os.Unsetenv("AWS_CA_BUNDLE")
	dir, err := os.MkdirTemp("", "berth-s3-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	g, ok, err := s3test.StartMain(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ok {
		gateway = g
	}
	code := m.Run()
	if g != nil {
		g.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// counter counts the S3 requests a driver sends, by operation, and keeps
// their headers.
type counter struct {
	mu       sync.Mutex
	calls    []string
	requests []*http.Request
	// failOp, while failures > 0, is answered 503 instead of being sent.
	failOp   string
	failures int
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	op := operation(req)
	c.mu.Lock()
	c.calls = append(c.calls, op)
	c.requests = append(c.requests, req.Clone(context.Background()))
	fail := op == c.failOp && c.failures > 0
	if fail {
		c.failures--
	}
	c.mu.Unlock()
	if fail {
		if req.Body != nil {
			req.Body.Close()
		}
		body := "<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
		return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: req}, nil
	}
	return http.DefaultTransport.RoundTrip(req)
}

// failNext makes the next n requests of op fail with 503.
func (c *counter) failNext(op string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failOp, c.failures = op, n
}

func (c *counter) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls, c.requests = nil, nil
	return calls
}

// operation names an S3 request by its method and query, as the S3 API
// reference does.
func operation(req *http.Request) string {
	q := req.URL.Query()
	path := strings.Trim(req.URL.Path, "/")
	object := strings.Contains(path, "/")
	switch {
	case q.Has("uploads") && req.Method == http.MethodPost:
		return "CreateMultipartUpload"
	case q.Has("uploads"):
		return "ListMultipartUploads"
	case q.Has("uploadId") && req.Method == http.MethodPut && req.Header.Get("X-Amz-Copy-Source") != "":
		return "UploadPartCopy"
	case q.Has("uploadId") && req.Method == http.MethodPut:
		return "UploadPart"
	case q.Has("uploadId") && req.Method == http.MethodPost:
		return "CompleteMultipartUpload"
	case q.Has("uploadId") && req.Method == http.MethodGet:
		return "ListParts"
	case q.Has("uploadId") && req.Method == http.MethodDelete:
		return "AbortMultipartUpload"
	case !object && req.Method == http.MethodGet:
		return "ListObjects"
	case req.Method == http.MethodPut && req.Header.Get("X-Amz-Copy-Source") != "":
		return "CopyObject"
	}
	kind := "Object"
	if !object {
		kind = "Bucket"
	}
	m := strings.ToUpper(req.Method[:1]) + strings.ToLower(req.Method[1:])
	return m + kind
}

type fixture struct {
	driver *s3.Driver
	calls  *counter
	bucket string
}

func newDriver(t *testing.T, extra map[string]any) fixture {
	t.Helper()
	if gateway == nil {
		testtoolMissing(t)
	}
	bucket := s3test.Bucket()
	set := gateway.Settings(bucket)
	set["chunkSizeMiB"] = 5
	for k, v := range extra {
		set[k] = v
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	calls := &counter{}
	d, err := s3.New(context.Background(), storage.Options{
		DataDir: t.TempDir(), Settings: raw, Credentials: s3test.Credentials(),
		HTTPClient: &http.Client{Transport: calls},
	})
	if err != nil {
		t.Fatal(err)
	}
	calls.reset()
	return fixture{driver: d.(*s3.Driver), calls: calls, bucket: bucket}
}

func TestDriverSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return newDriver(t, nil).driver })
}

// push appends content in chunks of the given sizes and commits it,
// keeping the state as the registry does.
func push(t *testing.T, d storage.Driver, id string, content []byte, chunks ...int) digest.Digest {
	t.Helper()
	ctx := context.Background()
	u := storage.Upload{ID: id}
	var off int64
	for i := 0; off < int64(len(content)); i++ {
		end := int64(len(content))
		if i < len(chunks) {
			end = min(off+int64(chunks[i]), end)
		}
		n, state, err := d.Append(ctx, u, off, bytes.NewReader(content[off:end]))
		if err != nil {
			t.Fatalf("append at %d: %v", off, err)
		}
		u.State, off = state, off+n
	}
	dgst := digest.FromBytes(content)
	if err := d.Commit(ctx, u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	return dgst
}

// TestMultipartUpload: a blob of several parts, sent in chunks that cross
// part boundaries, short chunks between them, reads back whole and by
// ranges.
func TestMultipartUpload(t *testing.T) {
	f := newDriver(t, nil)
	content := storagetest.RandomBytes(t, 12<<20+12345)
	dgst := push(t, f.driver, "multipart", content, 1<<20, 7, 6<<20, 100, 3<<20)
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob differs from what was pushed")
	}
	calls := f.calls.reset()
	if n := count(calls, "UploadPart"); n != 2 {
		t.Errorf("%d parts uploaded through Berth, want 2 (the short rest is copied by the server): %v", n, calls)
	}
	rc, err := f.driver.Open(context.Background(), dgst, 5<<20-3, 10)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, content[5<<20-3:5<<20+7]) {
		t.Error("a range across a part boundary differs")
	}
}

// TestCrashAcrossAPart: an append that wrote a part and a new tail was
// never recorded; the caller goes on from the recorded state (before the
// part), and the blob holds what was recorded and sent again.
func TestCrashAcrossAPart(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 11<<20)
	u := storage.Upload{ID: "crash"}
	n, state, err := f.driver.Append(ctx, u, 0, bytes.NewReader(content[:3<<20]))
	if err != nil || n != 3<<20 {
		t.Fatal(n, err)
	}
	recorded := state
	// Lost: 4 MiB of garbage that completes part 1 and leaves a tail.
	if _, _, err := f.driver.Append(ctx, storage.Upload{ID: "crash", State: recorded}, 3<<20, bytes.NewReader(storagetest.RandomBytes(t, 4<<20))); err != nil {
		t.Fatal(err)
	}
	u.State = recorded
	n, state, err = f.driver.Append(ctx, u, 3<<20, bytes.NewReader(content[3<<20:]))
	if err != nil || n != 8<<20 {
		t.Fatal(n, err)
	}
	u.State = state
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(ctx, u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob holds the lost append's bytes")
	}
}

// TestDropInsideAPartIsRefused: parts cannot be read back, so a caller
// whose record is behind a written part restarts the upload.
func TestDropInsideAPartIsRefused(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	_, state, err := f.driver.Append(ctx, storage.Upload{ID: "drop"}, 0, bytes.NewReader(storagetest.RandomBytes(t, 6<<20)))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.driver.Append(ctx, storage.Upload{ID: "drop", State: state}, 1<<20, strings.NewReader("x"))
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("append inside a written part: %v, want ErrInvalidArgument", err)
	}
}

// TestReadUploadThenCommit: reading back an upload of several parts (a
// sha512 digest is checked that way) completes it; the commit after finds
// it completed.
func TestReadUploadThenCommit(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 7<<20+5)
	u := storage.Upload{ID: "reread"}
	n, state, err := f.driver.Append(ctx, u, 0, bytes.NewReader(content))
	if err != nil || n != int64(len(content)) {
		t.Fatal(n, err)
	}
	u.State = state
	rc, err := f.driver.ReadUpload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	dgst, err := digest.SHA512.FromReader(rc)
	rc.Close()
	if err != nil || dgst != digest.SHA512.FromBytes(content) {
		t.Fatalf("read back: %v, %v", dgst, err)
	}
	if err := f.driver.Commit(ctx, u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob differs")
	}
}

// TestMultipartCopy: a blob larger than one copy request takes is copied
// into place in parts.
func TestMultipartCopy(t *testing.T) {
	f := newDriver(t, nil)
	f.driver.SetCopyPartSize(5 << 20)
	content := storagetest.RandomBytes(t, 11<<20+1)
	dgst := push(t, f.driver, "bigcopy", content)
	if n := count(f.calls.reset(), "UploadPartCopy"); n < 3 {
		t.Errorf("%d part copies, want 3 for the blob and 1 for the tail", n)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob differs")
	}
}

// TestNoListingOnRequestPaths counts the S3 requests of a push and a pull:
// none lists the bucket, and a small blob takes a handful.
func TestNoListingOnRequestPaths(t *testing.T) {
	f := newDriver(t, nil)
	small := storagetest.RandomBytes(t, 1000)
	dgst := push(t, f.driver, "small", small)
	pushCalls := f.calls.reset()
	storagetest.ReadBlob(t, f.driver, dgst)
	pullCalls := f.calls.reset()
	big := storagetest.RandomBytes(t, 11<<20)
	bigDgst := push(t, f.driver, "big", big, 3<<20)
	bigPush := f.calls.reset()
	storagetest.ReadBlob(t, f.driver, bigDgst)
	bigPull := f.calls.reset()
	for name, calls := range map[string][]string{"small push": pushCalls, "small pull": pullCalls, "big push": bigPush, "big pull": bigPull} {
		for _, c := range calls {
			if c == "ListObjects" || c == "ListMultipartUploads" {
				t.Errorf("%s lists the bucket: %v", name, calls)
			}
		}
		t.Logf("%s: %d requests: %v", name, len(calls), calls)
	}
	if want := []string{"PutObject", "HeadObject", "CopyObject", "DeleteObject"}; !slices.Equal(pushCalls, want) {
		t.Errorf("a small push sends %v, want %v", pushCalls, want)
	}
	if want := []string{"GetObject"}; !slices.Equal(pullCalls, want) {
		t.Errorf("a pull sends %v, want %v", pullCalls, want)
	}
}

func count(calls []string, op string) int {
	n := 0
	for _, c := range calls {
		if c == op {
			n++
		}
	}
	return n
}

// TestBucketProvisioning: a bucket that is absent is created with public
// access blocked and the cleanup rules, each reported as a condition; one
// that exists is used as it is.
func TestBucketProvisioning(t *testing.T) {
	f := newDriver(t, map[string]any{"encrypt": true})
	conds := map[string]storage.Condition{}
	for _, c := range f.driver.Conditions() {
		conds[c.Type] = c
	}
	t.Logf("conditions: %+v", conds)
	if c := conds["StorageExists"]; c.Status != "True" || c.Reason != "Creation Successful" {
		t.Errorf("StorageExists = %+v, want True / Creation Successful", c)
	}
	for _, typ := range []string{"StoragePublicAccessBlocked", "StorageIncompleteUploadCleanupEnabled", "StorageEncrypted"} {
		if c, ok := conds[typ]; !ok || c.Status == "" || c.Reason == "" {
			t.Errorf("no %s condition after creating the bucket: %+v", typ, c)
		}
	}
	// The same bucket, built again: it exists.
	raw, _ := json.Marshal(gateway.Settings(f.bucket))
	d, err := s3.New(context.Background(), storage.Options{Settings: raw, Credentials: s3test.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	got := d.(storage.Reporter).Conditions()
	if len(got) != 1 || got[0].Type != "StorageExists" || got[0].Reason != "S3 Bucket Exists" {
		t.Errorf("conditions of an existing bucket: %+v", got)
	}
	// An older storage is opened, never made: a missing bucket stays
	// missing (asked twice: the first did not create it).
	raw, _ = json.Marshal(gateway.Settings(s3test.Bucket()))
	for range 2 {
		if _, err := s3.New(context.Background(), storage.Options{Settings: raw, Credentials: s3test.Credentials(), Existing: true}); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("a missing bucket that must exist: %v", err)
		}
	}
}

// TestEncryptionOnEveryWrite: encrypt asks for SSE-S3 on every request
// that writes an object, keyID for SSE-KMS with that key. (versitygw
// ignores the headers, so the requests are what is checked.)
func TestEncryptionOnEveryWrite(t *testing.T) {
	for _, tc := range []struct {
		settings  map[string]any
		algorithm string
		key       string
	}{
		{map[string]any{"encrypt": true}, "AES256", ""},
		{map[string]any{"encrypt": true, "keyID": "arn:aws:kms:us-east-1:111122223333:key/test"}, "aws:kms", "arn:aws:kms:us-east-1:111122223333:key/test"},
		{nil, "", ""},
	} {
		f := newDriver(t, tc.settings)
		push(t, f.driver, "sse", storagetest.RandomBytes(t, 6<<20+1), 3<<20)
		push(t, f.driver, "ssesmall", storagetest.RandomBytes(t, 10))
		f.calls.mu.Lock()
		writes := 0
		for _, req := range f.calls.requests {
			op := operation(req)
			if op != "PutObject" && op != "CreateMultipartUpload" && op != "CopyObject" {
				continue
			}
			writes++
			if got := req.Header.Get("X-Amz-Server-Side-Encryption"); got != tc.algorithm {
				t.Errorf("%v: %s asks for encryption %q, want %q", tc.settings, op, got, tc.algorithm)
			}
			if got := req.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != tc.key {
				t.Errorf("%v: %s names KMS key %q, want %q", tc.settings, op, got, tc.key)
			}
		}
		f.calls.mu.Unlock()
		if writes < 4 {
			t.Errorf("%v: only %d writes seen", tc.settings, writes)
		}
	}
}

// TestSettingsRefused: settings that would be ignored or cannot work are
// refused when the driver is built.
func TestSettingsRefused(t *testing.T) {
	if gateway == nil {
		testtoolMissing(t)
	}
	for name, extra := range map[string]map[string]any{
		"keyID without encrypt": {"keyID": "k"},
		"chunk too small":       {"chunkSizeMiB": 4},
		"unknown field":         {"chunkSize": 5},
		"no bucket":             {"bucket": ""},
	} {
		set := gateway.Settings(s3test.Bucket())
		for k, v := range extra {
			set[k] = v
		}
		raw, _ := json.Marshal(set)
		_, err := s3.New(context.Background(), storage.Options{Settings: raw, Credentials: s3test.Credentials()})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	// Wrong credentials: the bucket cannot be reached, and the storage is
	// not built.
	raw, _ := json.Marshal(gateway.Settings(s3test.Bucket()))
	_, err := s3.New(context.Background(), storage.Options{Settings: raw, Credentials: map[string]string{
		s3.AccessKeyKey: s3test.AccessKey, s3.SecretKeyKey: "wrong"}})
	if err == nil {
		t.Error("a driver was built with a wrong secret key")
	}
}

// TestRedirectURL: the presigned URL serves the blob, and ranges of it.
func TestRedirectURL(t *testing.T) {
	f := newDriver(t, nil)
	content := storagetest.RandomBytes(t, 100_000)
	dgst := push(t, f.driver, "redirect", content)
	u, err := f.driver.RedirectURL(context.Background(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "X-Amz-Expires=1200") {
		t.Errorf("the redirect is not bounded to 20 minutes: %s", u)
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, content[10:20]) {
		t.Fatalf("ranged GET of the redirect: %d, %q", resp.StatusCode, got)
	}
	resp, err = http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, content) {
		t.Fatalf("GET of the redirect: %d, %d bytes", resp.StatusCode, len(got))
	}
}

// TestRecover: at start, the objects and multipart uploads of sessions
// that no longer exist go; those of live sessions stay.
func TestRecover(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	states := map[string][]byte{}
	for _, id := range []string{"live", "dead", "deadsmall"} {
		size := 6 << 20
		if id == "deadsmall" {
			size = 10
		}
		_, st, err := f.driver.Append(ctx, storage.Upload{ID: id}, 0, bytes.NewReader(storagetest.RandomBytes(t, size)))
		if err != nil {
			t.Fatal(err)
		}
		states[id] = st
	}
	// Keys that look like Berth's but are not of its shape are the user's.
	foreign := []string{"upload-2024-q3-report.csv", "upload-x.tail-1.bak", "uploads/dead/tail-1"}
	for _, k := range foreign {
		if err := f.driver.Put(ctx, k, []byte("not Berth's")); err != nil {
			t.Fatal(err)
		}
	}
	// Leftovers younger than the grace (another registry on this bucket
	// may be writing them) stay.
	if err := f.driver.Recover(ctx, func(id string) bool { return id == "live" }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"upload-dead.tail-2", "upload-deadsmall.tail-1"} {
		if _, err := os.Stat(gateway.Dir + "/" + f.bucket + "/" + k); err != nil {
			t.Errorf("a leftover younger than the grace was removed: %s", k)
		}
	}
	f.driver.SetRecoverGrace(0)
	if err := f.driver.Recover(ctx, func(id string) bool { return id == "live" }); err != nil {
		t.Fatal(err)
	}
	for _, k := range foreign {
		if _, err := os.Stat(gateway.Dir + "/" + f.bucket + "/" + k); err != nil {
			t.Errorf("Recover removed %s, which is not of Berth's shape: %v", k, err)
		}
	}
	for _, id := range []string{"dead", "deadsmall"} {
		err := f.driver.Commit(ctx, storage.Upload{ID: id, State: states[id]}, digest.FromString(id), sizeOf(t, states[id]))
		if !errors.Is(err, errdefs.ErrSizeMismatch) {
			t.Errorf("commit of recovered-away upload %s: %v, want ErrSizeMismatch", id, err)
		}
	}
	n, _, err := f.driver.Append(ctx, storage.Upload{ID: "live", State: states["live"]}, 6<<20, strings.NewReader("more"))
	if err != nil || n != 4 {
		t.Errorf("the live upload after recovery: %d, %v", n, err)
	}
	entries, err := os.ReadDir(gateway.Dir + "/" + f.bucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "upload-dead") {
			t.Errorf("%s is left after recovery", e.Name())
		}
	}
}

func sizeOf(t *testing.T, state []byte) int64 {
	var st struct {
		P int64
		N int64
		T int64
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	return (st.N-1)*st.P + st.T
}

// TestBackendDown: while the gateway is down the driver is unhealthy and
// its operations fail as unavailable; it recovers by itself, and an upload
// begun before goes on.
func TestBackendDown(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	first := storagetest.RandomBytes(t, 3<<20)
	_, state, err := f.driver.Append(ctx, storage.Upload{ID: "outage"}, 0, bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	gateway.Stop()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = gateway.Restart()
		}
	})
	if err := f.driver.Health(ctx); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Health with the backend down: %v, want ErrUnavailable", err)
	}
	n, _, err := f.driver.Append(ctx, storage.Upload{ID: "outage", State: state}, 3<<20, bytes.NewReader(storagetest.RandomBytes(t, 3<<20)))
	if !errors.Is(err, errdefs.ErrUnavailable) || n != 0 {
		t.Errorf("Append with the backend down: %d, %v, want 0 and ErrUnavailable", n, err)
	}
	if _, err := f.driver.Open(ctx, digest.FromString("x"), 0, -1); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Open with the backend down: %v, want ErrUnavailable", err)
	}
	if err := gateway.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := f.driver.Health(ctx); err != nil {
		t.Fatalf("Health after the backend returned: %v", err)
	}
	rest := storagetest.RandomBytes(t, 3<<20)
	n, state, err = f.driver.Append(ctx, storage.Upload{ID: "outage", State: state}, 3<<20, bytes.NewReader(rest))
	if err != nil || n != int64(len(rest)) {
		t.Fatal(n, err)
	}
	content := append(first, rest...)
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(ctx, storage.Upload{ID: "outage", State: state}, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob differs")
	}
}

// TestConcurrentSessions: many sessions start, commit and end at once, as
// under a benchmark. (Keys in a shared directory made versitygw, which
// removes a directory with its last object, refuse a PUT racing a DELETE.)
func TestConcurrentSessions(t *testing.T) {
	f := newDriver(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				ctx := context.Background()
				content := []byte(fmt.Sprintf("session %d.%d %s", w, i, strings.Repeat("x", 1000*(i%12))))
				u := storage.Upload{ID: fmt.Sprintf("w%di%d", w, i)}
				n, state, err := f.driver.Append(ctx, u, 0, bytes.NewReader(content))
				if err != nil || n != int64(len(content)) {
					errs <- fmt.Errorf("append %s: %d, %v", u.ID, n, err)
					return
				}
				u.State = state
				if i%3 == 2 {
					if err := f.driver.Abort(ctx, u); err != nil {
						errs <- fmt.Errorf("abort %s: %v", u.ID, err)
					}
					continue
				}
				if err := f.driver.Commit(ctx, u, digest.FromBytes(content), n); err != nil {
					errs <- fmt.Errorf("commit %s: %v", u.ID, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// stallingReader gives n bytes of b and then fails, as a client that
// stalls and is cut off.
type stallingReader struct {
	b    []byte
	n    int
	read int
}

var errStalled = errors.New("stalled")

func (s *stallingReader) Read(p []byte) (int, error) {
	if s.read >= s.n {
		return 0, errStalled
	}
	m := copy(p, s.b[s.read:s.n])
	s.read += m
	return m, nil
}

// TestClientStopsMidPart: every byte read from a client that stops in the
// middle of a part is kept (the registry hashed them all), and the upload
// goes on from there to the right blob.
func TestClientStopsMidPart(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 12<<20)
	src := &stallingReader{b: content, n: 7 << 20}
	n, state, err := f.driver.Append(ctx, storage.Upload{ID: "stall"}, 0, src)
	if !errors.Is(err, errStalled) || n != int64(src.read) {
		t.Fatalf("Append of a stalled body: %d bytes kept of %d read, %v", n, src.read, err)
	}
	u := storage.Upload{ID: "stall", State: state}
	m, state, err := f.driver.Append(ctx, u, n, bytes.NewReader(content[n:]))
	if err != nil {
		t.Fatal(err)
	}
	u.State = state
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(ctx, u, dgst, n+m); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob differs")
	}
}

// TestCommitTakesTheRecordedTail: an append that was never recorded left
// the tail object longer than recorded; the blob is the recorded bytes
// only, with parts and without.
func TestCommitTakesTheRecordedTail(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	for _, size := range []int{10, 6<<20 + 10} {
		id := fmt.Sprintf("tail%d", size)
		content := storagetest.RandomBytes(t, size)
		n, recorded, err := f.driver.Append(ctx, storage.Upload{ID: id}, 0, bytes.NewReader(content))
		if err != nil || n != int64(size) {
			t.Fatal(n, err)
		}
		// Unrecorded: 50 more bytes (a chunk the registry refused).
		if _, _, err := f.driver.Append(ctx, storage.Upload{ID: id, State: recorded}, n, strings.NewReader(strings.Repeat("EVIL", 50))); err != nil {
			t.Fatal(err)
		}
		dgst := digest.FromBytes(content)
		if err := f.driver.Commit(ctx, storage.Upload{ID: id, State: recorded}, dgst, n); err != nil {
			t.Fatal(err)
		}
		if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
			t.Errorf("%d bytes recorded: the blob has %d bytes", size, len(got))
		}
	}
}

// TestCommitReplacesAnObjectOfAnotherSize: an object under a blob's key
// whose size is not the blob's is not the blob; the commit replaces it.
func TestCommitReplacesAnObjectOfAnotherSize(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	content := []byte("the real content")
	dgst := digest.FromBytes(content)
	if err := f.driver.Put(ctx, "blobs/sha256/"+dgst.Encoded()[:2]+"/"+dgst.Encoded(), []byte("garbage of another size")); err != nil {
		t.Fatal(err)
	}
	push(t, f.driver, "replace", content)
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatalf("the blob holds %q", got)
	}
}

// TestSealedAtAnotherState: ReadUpload completed the upload at one state;
// a commit at another state of the same size (another last chunk) does
// not take the completed bytes for its own.
func TestSealedAtAnotherState(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	first := storagetest.RandomBytes(t, 6<<20)
	_, before, err := f.driver.Append(ctx, storage.Upload{ID: "sealed"}, 0, bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	_, one, err := f.driver.Append(ctx, storage.Upload{ID: "sealed", State: before}, 6<<20, strings.NewReader("chunk one"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := f.driver.ReadUpload(ctx, storage.Upload{ID: "sealed", State: one})
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	_, two, err := f.driver.Append(ctx, storage.Upload{ID: "sealed", State: before}, 6<<20, strings.NewReader("chunk two"))
	if err != nil {
		t.Fatal(err)
	}
	other := append(append([]byte{}, first...), "chunk two"...)
	err = f.driver.Commit(ctx, storage.Upload{ID: "sealed", State: two}, digest.FromBytes(other), int64(len(other)))
	if !errors.Is(err, errdefs.ErrSizeMismatch) {
		t.Fatalf("a commit at another state after a seal: %v, want ErrSizeMismatch (the upload is lost)", err)
	}
	if _, err := f.driver.Open(ctx, digest.FromBytes(other), 0, -1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the blob exists after the refused commit: %v", err)
	}
}

// TestClientHangsUpMidBody: net/http reports a client that hung up before
// its Content-Length as io.ErrUnexpectedEOF; that is the client's error,
// not the end of its bytes, and what it sent is kept.
func TestClientHangsUpMidBody(t *testing.T) {
	f := newDriver(t, nil)
	r := io.MultiReader(strings.NewReader("twelve bytes"), iotestErrReader{io.ErrUnexpectedEOF})
	n, _, err := f.driver.Append(context.Background(), storage.Upload{ID: "hangup"}, 0, r)
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != 12 {
		t.Fatalf("Append of a body cut short: %d, %v; want 12 and the client's error", n, err)
	}
}

type iotestErrReader struct{ err error }

func (e iotestErrReader) Read([]byte) (int, error) { return 0, e.err }

// TestCopyFailureIsRetried: the copy into place fails (503) after the
// multipart upload was completed; the commit says the storage is
// unavailable, and the same commit retried succeeds with the right bytes.
func TestCopyFailureIsRetried(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 6<<20+3)
	n, state, err := f.driver.Append(ctx, storage.Upload{ID: "copyfail"}, 0, bytes.NewReader(content))
	if err != nil {
		t.Fatal(n, err)
	}
	u := storage.Upload{ID: "copyfail", State: state}
	dgst := digest.FromBytes(content)
	f.calls.failNext("CopyObject", 100)
	if err := f.driver.Commit(ctx, u, dgst, n); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("commit with the copy failing: %v, want ErrUnavailable", err)
	}
	f.calls.failNext("", 0)
	if err := f.driver.Commit(ctx, u, dgst, n); err != nil {
		t.Fatalf("the retried commit: %v", err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob differs")
	}
}

// TestDestroyRetried: a bucket Berth created is destroyed with its token;
// a DeleteBucket that fails leaves it to a retry (which finds the token
// gone and the bucket empty), and a bucket already gone is destroyed.
func TestDestroyRetried(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	push(t, f.driver, "doomed", storagetest.RandomBytes(t, 100))
	token := f.driver.ProvisionToken()
	if token == "" {
		t.Fatal("no token for a bucket the driver created")
	}
	if _, err := f.driver.Destroy(ctx, "another token"); !errors.Is(err, storage.ErrNotProvisioned) {
		t.Fatalf("destroy with a wrong token: %v", err)
	}
	f.calls.failNext("DeleteBucket", 100)
	if _, err := f.driver.Destroy(ctx, token); err == nil {
		t.Fatal("the destroy with DeleteBucket failing succeeded")
	}
	f.calls.failNext("", 0)
	if what, err := f.driver.Destroy(ctx, token); err != nil || what != "bucket deleted" {
		t.Fatalf("the retried destroy: %q, %v", what, err)
	}
	if _, err := os.Stat(gateway.Dir + "/" + f.bucket); !os.IsNotExist(err) {
		t.Errorf("the bucket is still there: %v", err)
	}
	if what, err := f.driver.Destroy(ctx, token); err != nil || what != "the bucket was gone already" {
		t.Errorf("destroy of a bucket gone: %q, %v", what, err)
	}
}
