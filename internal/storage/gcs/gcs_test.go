package gcs_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/gcs"
	"github.com/berth-registry/berth/internal/storage/gcs/gcstest"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testtool"
)

var emulator *gcstest.Emulator

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-gcs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	e, ok, err := gcstest.StartMain(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ok {
		emulator = e
		os.Setenv(gcstest.EmulatorHostVar, e.Host)
	}
	code := m.Run()
	if e != nil {
		e.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// counter counts the GCS requests a driver sends, by operation, and keeps
// them.
type counter struct {
	mu       sync.Mutex
	calls    []string
	requests []*http.Request
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	kept := req.Clone(context.Background())
	if operation(req) == "compose" && req.Body != nil {
		// A compose says what it deletes in its body.
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		kept.Body = io.NopCloser(bytes.NewReader(body))
	}
	c.mu.Lock()
	c.calls = append(c.calls, operation(req))
	c.requests = append(c.requests, kept)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *counter) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls, c.requests = nil, nil
	return calls
}

func (c *counter) taken() []*http.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.requests)
}

// operation names a GCS request as the JSON API reference does (reads go
// through the XML API: "read").
func operation(req *http.Request) string {
	p := req.URL.Path
	switch {
	case strings.HasPrefix(p, "/upload/"):
		return "insert"
	case strings.HasSuffix(p, "/compose"):
		return "compose"
	case !strings.HasPrefix(p, "/storage/v1/"):
		return "read"
	case strings.HasSuffix(p, "/o") && req.Method == http.MethodGet:
		return "list"
	case strings.Contains(p, "/o/") && req.Method == http.MethodGet:
		return "get"
	case strings.Contains(p, "/o/") && req.Method == http.MethodDelete:
		return "delete"
	}
	return "bucket." + strings.ToLower(req.Method)
}

type fixture struct {
	driver *gcs.Driver
	calls  *counter
	bucket string
	key    *rsa.PrivateKey
}

func settingsJSON(t *testing.T, bucket string, extra map[string]any) []byte {
	t.Helper()
	set := gcstest.Settings(bucket)
	for k, v := range extra {
		set[k] = v
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newDriver(t *testing.T, extra map[string]any) fixture {
	t.Helper()
	if emulator == nil {
		testtool.Missing(t, "fake-gcs-server")
	}
	bucket := gcstest.Bucket()
	keyFile, key := gcstest.KeyFile(t)
	calls := &counter{}
	d, err := gcs.New(context.Background(), storage.Options{
		DataDir: t.TempDir(), Settings: settingsJSON(t, bucket, extra),
		Credentials: map[string]string{gcs.KeyFileKey: string(keyFile)},
		HTTPClient:  &http.Client{Transport: calls},
	})
	if err != nil {
		t.Fatal(err)
	}
	calls.reset()
	return fixture{driver: d.(*gcs.Driver), calls: calls, bucket: bucket, key: key}
}

func TestDriverSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return newDriver(t, nil).driver })
}

// TestRequestCounts: an append is one request, a commit three (is the
// blob there, compose, delete the part), a pull one; nothing lists.
func TestRequestCounts(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 100_000)
	dgst := digest.FromBytes(content)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "counts1"}, content, len(content))
	if got := f.calls.reset(); !slices.Equal(got, []string{"insert"}) {
		t.Errorf("append sent %v, want one insert", got)
	}
	if err := f.driver.Commit(ctx, u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	reqs := f.calls.taken()
	if got := f.calls.reset(); !slices.Equal(got, []string{"get", "compose", "delete"}) {
		t.Errorf("commit sent %v, want get, compose, delete", got)
	}
	// The compose publishes only where nothing is (a blob another commit
	// published meanwhile stays), and hard-deletes its sources (no
	// soft-deleted copies of temporary bytes).
	for _, req := range reqs {
		if operation(req) != "compose" {
			continue
		}
		var body struct {
			DeleteSourceObjects bool `json:"deleteSourceObjects"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil || !body.DeleteSourceObjects {
			t.Errorf("the compose does not delete its sources (%v)", err)
		}
		if req.URL.Query().Get("ifGenerationMatch") != "0" {
			t.Errorf("the compose into the blob is not conditional on its absence: %s", req.URL)
		}
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
	if got := f.calls.reset(); !slices.Equal(got, []string{"read"}) {
		t.Errorf("a pull sent %v, want one read", got)
	}
	if names, err := f.driver.Names(ctx, "upload-"); err != nil || len(names) != 0 {
		t.Errorf("after the commit the bucket holds upload objects %v (%v)", names, err)
	}
}

// TestManyAppendsStayComposable: a session of many small appends is
// merged as it goes, so that it never holds more objects than one compose
// joins, and commits whole.
func TestManyAppendsStayComposable(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	chunks := make([]int, 3*gcs.MaxSources+5)
	total := 0
	for i := range chunks {
		chunks[i] = 1000 + i*37
		total += chunks[i]
	}
	content := storagetest.RandomBytes(t, total)
	u := storage.Upload{ID: "many1"}
	var off int64
	most := 0
	for _, c := range chunks {
		n, st, err := f.driver.Append(ctx, u, off, bytes.NewReader(content[off:off+int64(c)]))
		if err != nil || n != int64(c) {
			t.Fatalf("Append at %d: %d, %v", off, n, err)
		}
		u.State, off = st, off+n
		names, err := f.driver.Names(ctx, "upload-many1.")
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, len(names))
	}
	if most > gcs.MaxSources+1 {
		t.Errorf("the session held %d objects at once; at most %d are composed at a time", most, gcs.MaxSources)
	}
	f.calls.reset()
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(ctx, u, dgst, int64(total)); err != nil {
		t.Fatal(err)
	}
	composes := 0
	for _, op := range f.calls.reset() {
		if op == "list" {
			t.Error("the commit listed the bucket")
		}
		if op == "compose" {
			composes++
		}
	}
	if composes != 1 {
		t.Errorf("the commit sent %d composes, want 1 (the merges keep a session composable at once)", composes)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
}

// TestMergeCrash: an append that merged the session's objects into a head,
// removed them and wrote its part, and then was never recorded (a crash),
// leaves the recorded state usable: an append and a commit from it find
// the head.
func TestMergeCrash(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	chunks := make([]int, gcs.MaxSources)
	for i := range chunks {
		chunks[i] = 500
	}
	content := storagetest.RandomBytes(t, 500*gcs.MaxSources+700)
	recorded := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "mergecrash1"}, content[:500*gcs.MaxSources], chunks...)
	off := int64(500 * gcs.MaxSources)
	// The append that merges, then "crashes": its state is thrown away.
	if _, _, err := f.driver.Append(ctx, recorded, off, bytes.NewReader(storagetest.RandomBytes(t, 300))); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.driver.Exists(ctx, "upload-mergecrash1.part-1"); err != nil || ok {
		t.Fatalf("the merge left part 1 (%v, %v)", ok, err)
	}
	t.Run("ReadUpload", func(t *testing.T) {
		rc, err := f.driver.ReadUpload(ctx, recorded)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, content[:off]) {
			t.Fatalf("ReadUpload after the crash: %d bytes, %v", len(got), err)
		}
	})
	n, st, err := f.driver.Append(ctx, recorded, off, bytes.NewReader(content[off:]))
	if err != nil || n != 700 {
		t.Fatalf("the append replayed from the recorded state: %d, %v", n, err)
	}
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(ctx, storage.Upload{ID: recorded.ID, State: st}, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}

	// A commit straight from a state whose merge crashed.
	content2 := storagetest.RandomBytes(t, 500*gcs.MaxSources)
	recorded2 := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "mergecrash2"}, content2, chunks...)
	if _, _, err := f.driver.Append(ctx, recorded2, int64(len(content2)), bytes.NewReader([]byte("lost"))); err != nil {
		t.Fatal(err)
	}
	dgst2 := digest.FromBytes(content2)
	if err := f.driver.Commit(ctx, recorded2, dgst2, int64(len(content2))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst2); !bytes.Equal(got, content2) {
		t.Fatal("the second blob reads back other bytes")
	}
}

// TestStateIsSmall: the state every PATCH rewrites stays a few bytes
// however many appends a session has had.
func TestStateIsSmall(t *testing.T) {
	f := newDriver(t, nil)
	chunks := make([]int, 2*gcs.MaxSources)
	for i := range chunks {
		chunks[i] = 10
	}
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "small1"}, storagetest.RandomBytes(t, 20*gcs.MaxSources), chunks...)
	if len(u.State) > 40 {
		t.Errorf("state after %d appends is %d bytes: %s", len(chunks), len(u.State), u.State)
	}
	// A state names at most the objects one compose joins: one from the
	// store that names millions is refused, not listed.
	for _, bad := range []string{`{"n":0,"z":0}`, `{"n":3,"h":3,"z":1}`, `{"n":2,"z":-1}`, `[]`, `{"n":100,"h":1,"z":5}`, `{"n":1073741824,"z":0}`} {
		if _, _, err := f.driver.Append(context.Background(), storage.Upload{ID: "small2", State: []byte(bad)}, 0, strings.NewReader("x")); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("state %s: %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestProvisioning: a bucket that is absent is created, with a token and
// conditions that say what the bucket reads back with; one that is there
// is used as it is; creating one needs a project.
func TestProvisioning(t *testing.T) {
	f := newDriver(t, map[string]any{"keyID": "projects/p/locations/global/keyRings/r/cryptoKeys/k"})
	conds := map[string]storage.Condition{}
	for _, c := range f.driver.Conditions() {
		conds[c.Type] = c
	}
	if c := conds["StorageExists"]; c.Status != "True" || c.Reason != "Creation Successful" || c.Message != "GCS bucket was successfully created" {
		t.Errorf("StorageExists = %+v", c)
	}
	// The emulator ignores these settings; the conditions say so rather
	// than claim them.
	for _, typ := range []string{"StoragePublicAccessBlocked", "StorageIncompleteUploadCleanupEnabled", "StorageEncrypted"} {
		if c, ok := conds[typ]; !ok || c.Status != "False" || !strings.Contains(c.Message, "does not read back") {
			t.Errorf("%s = %+v, want False: the emulator does not keep it", typ, c)
		}
	}
	if f.driver.ProvisionToken() == "" {
		t.Error("no provision token for a bucket the driver created")
	}
	// The bucket is there now: a second driver finds it.
	keyFile, _ := gcstest.KeyFile(t)
	d, err := gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, f.bucket, nil),
		Credentials: map[string]string{gcs.KeyFileKey: string(keyFile)}})
	if err != nil {
		t.Fatal(err)
	}
	if c := d.(storage.Reporter).Conditions(); len(c) != 1 || c[0].Reason != "GCS Bucket Exists" || c[0].Message != "User supplied GCS bucket exists and is accessible" {
		t.Errorf("conditions of a found bucket: %+v", c)
	}
	if d.(storage.Provisioner).ProvisionToken() != "" {
		t.Error("a found bucket has a provision token")
	}
	// An older storage is opened, never made: a missing bucket stays
	// missing (asked twice: the first did not create it).
	missing := gcstest.Bucket()
	for range 2 {
		_, err := gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, missing, nil),
			Credentials: map[string]string{gcs.KeyFileKey: string(keyFile)}, Existing: true})
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("a missing bucket that must exist: %v", err)
		}
	}
	// No project, no key file naming one: refused, clearly.
	_, err = gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, gcstest.Bucket(), map[string]any{"projectID": ""})})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "projectID") {
		t.Errorf("creating a bucket with no project: %v", err)
	}
}

// TestKMSKeyOnWrites: with keyID set, every write names the key (the
// emulator keeps none, so the requests are checked).
func TestKMSKeyOnWrites(t *testing.T) {
	const key = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
	f := newDriver(t, map[string]any{"keyID": key})
	content := storagetest.RandomBytes(t, 1000)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "kms1"}, content, 400, 600)
	if err := f.driver.Commit(context.Background(), u, digest.FromBytes(content), 1000); err != nil {
		t.Fatal(err)
	}
	writes := 0
	for _, req := range f.calls.taken() {
		op := operation(req)
		if op != "insert" && op != "compose" {
			continue
		}
		writes++
		if req.URL.Query().Get("kmsKeyName") != key {
			t.Errorf("%s %s does not name the KMS key", op, req.URL)
		}
	}
	if writes != 3 {
		t.Errorf("%d writes, want 3 (two parts, one compose)", writes)
	}
}

// TestSignedRedirect: a redirect is a V4-signed GET valid for 20 minutes,
// signed by the key file's account with its key (checked here with the
// public key, since the emulator checks no signature), and it serves the
// blob.
func TestSignedRedirect(t *testing.T) {
	f := newDriver(t, nil)
	content := storagetest.RandomBytes(t, 5000)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "redirect1"}, content, len(content))
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(context.Background(), u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	raw, err := f.driver.RedirectURL(context.Background(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if expires := q.Get("X-Goog-Expires"); q.Get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256" || (expires != "1200" && expires != "1199") ||
		!strings.HasPrefix(q.Get("X-Goog-Credential"), "registry@berth-test.iam.gserviceaccount.com/") {
		t.Fatalf("redirect %s", raw)
	}
	if want := "/" + f.bucket + "/blobs/sha256/" + dgst.Encoded()[:2] + "/" + dgst.Encoded(); loc.Path != want {
		t.Errorf("redirect path %s, want %s", loc.Path, want)
	}
	// The V4 signature: RSA-SHA256 over the string to sign, built from
	// the canonical request of the GET (whose host the library names
	// without its port).
	sig, err := hex.DecodeString(q.Get("X-Goog-Signature"))
	if err != nil {
		t.Fatal(err)
	}
	q.Del("X-Goog-Signature")
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var query []string
	for _, k := range keys {
		query = append(query, url.QueryEscape(k)+"="+strings.ReplaceAll(url.QueryEscape(q.Get(k)), "+", "%20"))
	}
	canonical := strings.Join([]string{"GET", loc.EscapedPath(), strings.Join(query, "&"), "host:" + loc.Hostname(), "", "host", "UNSIGNED-PAYLOAD"}, "\n")
	scope := strings.SplitN(q.Get("X-Goog-Credential"), "/", 2)[1]
	sum := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{"GOOG4-RSA-SHA256", q.Get("X-Goog-Date"), scope, hex.EncodeToString(sum[:])}, "\n")
	digest256 := sha256.Sum256([]byte(toSign))
	if err := rsa.VerifyPKCS1v15(&f.key.PublicKey, crypto.SHA256, digest256[:], sig); err != nil {
		t.Errorf("the redirect's signature does not verify with the key file's public key: %v", err)
	}
	resp, err := http.Get(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(got, content) {
		t.Errorf("GET of the redirect: %d, %d bytes", resp.StatusCode, len(got))
	}
	if d := f.driver.DescribeRedirects(); !strings.Contains(d, "V4-signed") || !strings.Contains(d, "20m0s") {
		t.Errorf("DescribeRedirects = %q", d)
	}
}

// TestNoKeyNoRedirect: with no key file there is nothing to sign with:
// blobs are streamed, and status says no redirects.
func TestNoKeyNoRedirect(t *testing.T) {
	if emulator == nil {
		testtool.Missing(t, "fake-gcs-server")
	}
	d, err := gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, gcstest.Bucket(), nil)})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := d.(storage.Redirector).RedirectURL(context.Background(), digest.FromString("x"))
	if err != nil || loc != "" {
		t.Errorf("RedirectURL = %q, %v; want none", loc, err)
	}
	if got := d.(storage.RedirectDescriber).DescribeRedirects(); got != "" {
		t.Errorf("DescribeRedirects = %q, want none", got)
	}
}

// TestRefusedSettings: a key file that is not a service account's, or
// not JSON, and an unknown field are refused, clearly.
func TestRefusedSettings(t *testing.T) {
	for name, opts := range map[string]storage.Options{
		"user key":      {Settings: settingsJSON(t, "b", nil), Credentials: map[string]string{gcs.KeyFileKey: `{"type":"authorized_user"}`}},
		"not JSON":      {Settings: settingsJSON(t, "b", nil), Credentials: map[string]string{gcs.KeyFileKey: `{nope`}},
		"missing file":  {Settings: settingsJSON(t, "b", nil), Credentials: map[string]string{gcs.KeyFileKey: "/nonexistent/keyfile"}},
		"unknown field": {Settings: settingsJSON(t, "b", map[string]any{"chunkSizeMiB": 5})},
		"no bucket":     {Settings: []byte(`{}`)},
	} {
		if _, err := gcs.New(context.Background(), opts); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name != "missing file" && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

// TestKeyFileNeverInErrors: a key file value that is neither JSON nor a
// path (a BOM, base64, quotes) is refused without repeating it: errors
// reach the Config's status.
func TestKeyFileNeverInErrors(t *testing.T) {
	keyFile, _ := gcstest.KeyFile(t)
	for name, value := range map[string]string{
		"base64":    base64.StdEncoding.EncodeToString(keyFile),
		"quoted":    `"` + string(keyFile) + `"`,
		"two lines": "/etc/x\n" + string(keyFile),
		"broken":    string(keyFile[:len(keyFile)-3]),
	} {
		_, err := gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, "b", nil), Credentials: map[string]string{gcs.KeyFileKey: value}})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), value[:20]) {
			t.Errorf("%s: the error repeats the key file: %v", name, err)
		}
	}
}

// TestCutAtAPartBoundary: a caller that recorded fewer bytes than the
// state holds, at the start of the last part, has that part left out.
func TestCutAtAPartBoundary(t *testing.T) {
	f := newDriver(t, nil)
	ctx := context.Background()
	parts, rest := storagetest.RandomBytes(t, 20), storagetest.RandomBytes(t, 15)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "cut1"}, parts, 10, 10)
	n, st, err := f.driver.Append(ctx, u, 10, bytes.NewReader(rest))
	if err != nil || n != 15 {
		t.Fatalf("Append at the part boundary: %d, %v", n, err)
	}
	u.State = st
	want := append(parts[:10:10], rest...)
	if got, _ := io.ReadAll(mustRead(t, f.driver, u)); !bytes.Equal(got, want) {
		t.Errorf("ReadUpload after the cut: %d bytes, want %d", len(got), len(want))
	}
	dgst := digest.FromBytes(want)
	if err := f.driver.Commit(ctx, u, dgst, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, want) {
		t.Fatal("the blob reads back other bytes")
	}
}

func mustRead(t *testing.T, d storage.Driver, u storage.Upload) io.Reader {
	t.Helper()
	rc, err := d.ReadUpload(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// TestKeyFileByPath: as on the reference, the server's environment may
// name the key file's path.
func TestKeyFileByPath(t *testing.T) {
	if emulator == nil {
		testtool.Missing(t, "fake-gcs-server")
	}
	keyFile, _ := gcstest.KeyFile(t)
	path := t.TempDir() + "/keyfile"
	if err := os.WriteFile(path, keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, gcstest.Bucket(), nil),
		Credentials: map[string]string{gcs.KeyFileKey: path}})
	if err != nil {
		t.Fatal(err)
	}
	if d.(storage.RedirectDescriber).DescribeRedirects() == "" {
		t.Error("the key file read from its path signs no redirects")
	}
}

func TestObjectStore(t *testing.T) {
	storagetest.RunObjectStore(t, func(t *testing.T) storagetest.Bucket { return newDriver(t, nil).driver })
}

func TestBackendGoesAway(t *testing.T) {
	e := gcstest.Start(t)
	t.Setenv(gcstest.EmulatorHostVar, e.Host)
	d, err := gcs.New(context.Background(), storage.Options{Settings: settingsJSON(t, gcstest.Bucket(), nil)})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.RunBackendGoesAway(t, d, e.Stop, e.Restart)
}
