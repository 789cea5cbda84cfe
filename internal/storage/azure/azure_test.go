package azure_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/azure"
	"github.com/berth-registry/berth/internal/storage/azure/azuretest"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/testtool"
)

var emulator *azuretest.Emulator

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-azure-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	e, ok, err := azuretest.StartMain(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ok {
		emulator = e
		os.Setenv(azuretest.ServiceURLVar, e.ServiceURL)
	}
	code := m.Run()
	if e != nil {
		e.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// counter counts the Azure requests a driver sends, by operation.
type counter struct {
	mu       sync.Mutex
	calls    []string
	requests []*http.Request
}

func (c *counter) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.calls = append(c.calls, operation(req))
	c.requests = append(c.requests, req.Clone(context.Background()))
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *counter) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *counter) taken() []*http.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	reqs := c.requests
	c.calls, c.requests = nil, nil
	return reqs
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) { return c.Do(req) }

func (c *counter) reset() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls, c.requests = nil, nil
	return calls
}

// operation names an Azure Blob request as the REST API reference does.
func operation(req *http.Request) string {
	q := req.URL.Query()
	switch comp := q.Get("comp"); {
	case comp == "block" && hasHeader(req, "x-ms-copy-source"):
		return "PutBlockFromURL"
	case comp == "block":
		return "PutBlock"
	case comp == "blocklist" && req.Method == http.MethodPut:
		return "PutBlockList"
	case comp == "blocklist":
		return "GetBlockList"
	case comp == "list":
		return "ListBlobs"
	case q.Get("restype") == "container":
		return strings.ToUpper(req.Method[:1]) + strings.ToLower(req.Method[1:]) + "Container"
	case req.Method == http.MethodHead:
		return "GetBlobProperties"
	case req.Method == http.MethodGet:
		return "GetBlob"
	case req.Method == http.MethodPut:
		return "PutBlob"
	case req.Method == http.MethodDelete:
		return "DeleteBlob"
	}
	return req.Method
}

// headerValue is req's header name, as the SDK sets it (in lower case,
// not canonicalized) or canonicalized.
func headerValue(req *http.Request, name string) string {
	for k, v := range req.Header {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// hasHeader tells whether req has header name, as the SDK sets it (in
// lower case, not canonicalized) or canonicalized.
func hasHeader(req *http.Request, name string) bool {
	for k := range req.Header {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

type fixture struct {
	driver    *azure.Driver
	calls     *counter
	container string
}

func settingsJSON(t *testing.T, container string, extra map[string]any) []byte {
	t.Helper()
	set := azuretest.Settings(container)
	for k, v := range extra {
		set[k] = v
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newDriver(t *testing.T) fixture {
	t.Helper()
	if emulator == nil {
		testtool.Missing(t, "azurite-blob")
	}
	name := azuretest.Container()
	calls := &counter{}
	d, err := azure.New(context.Background(), storage.Options{
		DataDir: t.TempDir(), Settings: settingsJSON(t, name, nil), Credentials: azuretest.Credentials(),
		HTTPClient: &http.Client{Transport: calls},
	})
	if err != nil {
		t.Fatal(err)
	}
	calls.reset()
	return fixture{driver: d.(*azure.Driver), calls: calls, container: name}
}

func TestDriverSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return newDriver(t).driver })
}

// TestRequestCounts: a small append is a block and its list, a commit a
// check, a block copied from the upload, its list and a delete, a pull
// one GET; nothing lists.
func TestRequestCounts(t *testing.T) {
	f := newDriver(t)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 100_000)
	dgst := digest.FromBytes(content)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "counts1"}, content, len(content))
	if got := f.calls.reset(); !slices.Equal(got, []string{"PutBlock", "PutBlockList"}) {
		t.Errorf("append sent %v", got)
	}
	if err := f.driver.Commit(ctx, u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := f.calls.names(); !slices.Equal(got, []string{"GetBlobProperties", "GetBlobProperties", "PutBlockFromURL", "PutBlockList", "GetBlobProperties", "DeleteBlob"}) {
		t.Errorf("commit sent %v", got)
	}
	// The block list that publishes the blob does so only where none is,
	// and every copied block is pinned to the upload's ETag.
	for _, req := range f.calls.taken() {
		switch operation(req) {
		case "PutBlockList":
			if strings.Contains(req.URL.Path, "/blobs") && headerValue(req, "If-None-Match") != "*" {
				t.Errorf("the blob's block list is not conditional on its absence: %v", req.Header)
			}
		case "PutBlockFromURL":
			if headerValue(req, "x-ms-source-if-match") == "" {
				t.Errorf("a copied block is not pinned to its source's ETag: %v", req.Header)
			}
		}
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
	if got := f.calls.reset(); !slices.Equal(got, []string{"GetBlob"}) {
		t.Errorf("a pull sent %v", got)
	}
	if names, err := f.driver.Names(ctx, "upload-"); err != nil || len(names) != 0 {
		t.Errorf("after the commit the container holds %v (%v)", names, err)
	}
}

// TestSmallAppendsStayFewBlocks: each append tops up a short last block,
// so a session of many small chunks has about size / 8 MiB blocks (Azure
// allows 50,000), and its bytes are right.
func TestSmallAppendsStayFewBlocks(t *testing.T) {
	f := newDriver(t)
	chunks := make([]int, 60)
	for i := range chunks {
		chunks[i] = 1000 + i
	}
	total := 0
	for _, c := range chunks {
		total += c
	}
	content := storagetest.RandomBytes(t, total)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "small1"}, content, chunks...)
	if !strings.Contains(string(u.State), `"n":2,`) {
		t.Errorf("state after %d small appends: %s, want one block", len(chunks), u.State)
	}
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(context.Background(), u, dgst, int64(total)); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
}

// TestCommitReplacesOnlyAWrongBlob: a blob of another size at the blob's
// name (someone else's object) is replaced; one of the right size is the
// blob.
func TestCommitReplacesOnlyAWrongBlob(t *testing.T) {
	f := newDriver(t)
	ctx := context.Background()
	content := storagetest.RandomBytes(t, 3000)
	dgst := digest.FromBytes(content)
	key := "blobs/sha256/" + dgst.Encoded()[:2] + "/" + dgst.Encoded()
	if err := f.driver.Put(ctx, key, []byte("not the blob")); err != nil {
		t.Fatal(err)
	}
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "wrong1"}, content, 3000)
	if err := f.driver.Commit(ctx, u, dgst, 3000); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the wrong blob was not replaced")
	}
	u = storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "wrong2"}, content, 3000)
	if err := f.driver.Commit(ctx, u, dgst, 3000); err != nil {
		t.Fatalf("a second commit of the same blob: %v", err)
	}
}

// TestLargeAppendAndCopy: an append of several blocks, committed as
// several copied ranges.
func TestLargeAppendAndCopy(t *testing.T) {
	f := newDriver(t)
	f.driver.SetCopyRangeSize(3 << 20)
	content := storagetest.RandomBytes(t, 20<<20+5)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "large1"}, content, 1, 17<<20, 3<<20+4)
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(context.Background(), u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
}

// TestBadState: a state from the store that does not add up is refused.
func TestBadState(t *testing.T) {
	f := newDriver(t)
	for _, bad := range []string{`{"n":0,"z":0}`, `{"n":2,"z":0}`, `{"n":1,"z":5}`, `{"n":50002,"z":5}`, `{"n":3,"z":5}`, `{"n":2,"z":8388609}`, `[]`} {
		if _, _, err := f.driver.Append(context.Background(), storage.Upload{ID: "bad1", State: []byte(bad)}, 0, strings.NewReader("x")); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("state %s: %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestProvisioning: a container that is absent is created private, with
// Berth's token; one that is there is used as it is.
func TestProvisioning(t *testing.T) {
	f := newDriver(t)
	conds := map[string]storage.Condition{}
	for _, c := range f.driver.Conditions() {
		conds[c.Type] = c
	}
	if c := conds["StorageExists"]; c.Status != "True" || c.Reason != "ContainerExists" {
		t.Errorf("StorageExists = %+v", c)
	}
	if c := conds["StoragePublicAccessBlocked"]; c.Status != "True" {
		t.Errorf("StoragePublicAccessBlocked = %+v", c)
	}
	if f.driver.ProvisionToken() == "" {
		t.Error("no provision token for a container the driver created")
	}
	d, err := azure.New(context.Background(), storage.Options{Settings: settingsJSON(t, f.container, nil), Credentials: azuretest.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	if c := d.(storage.Reporter).Conditions(); len(c) != 2 || c[0].Message != "Storage container exists" {
		t.Errorf("conditions of a found container: %+v", c)
	}
	if d.(storage.Provisioner).ProvisionToken() != "" {
		t.Error("a found container has a provision token")
	}
	// An older storage is opened, never made: a missing container stays
	// missing (asked twice: the first did not create it).
	missing := azuretest.Container()
	for range 2 {
		_, err := azure.New(context.Background(), storage.Options{Settings: settingsJSON(t, missing, nil), Credentials: azuretest.Credentials(), Existing: true})
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("a missing container that must exist: %v", err)
		}
	}
}

// TestRefusedSettings: what Berth cannot do is refused, clearly.
func TestRefusedSettings(t *testing.T) {
	for name, opts := range map[string]storage.Options{
		"no key":          {Settings: settingsJSON(t, "c", nil)},
		"bad key":         {Settings: settingsJSON(t, "c", nil), Credentials: map[string]string{azure.AccountKeyKey: "not base64!"}},
		"no account":      {Settings: []byte(`{"container":"c"}`), Credentials: azuretest.Credentials()},
		"internal":        {Settings: settingsJSON(t, "c", map[string]any{"networkAccess": map[string]any{"type": "Internal"}}), Credentials: azuretest.Credentials()},
		"hostile account": {Settings: settingsJSON(t, "c", map[string]any{"accountName": "attacker.example/x"}), Credentials: azuretest.Credentials()},
		"unknown field":   {Settings: settingsJSON(t, "c", map[string]any{"bucket": "b"}), Credentials: azuretest.Credentials()},
	} {
		if _, err := azure.New(context.Background(), opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	t.Setenv(azuretest.ServiceURLVar, "")
	if _, err := azure.New(context.Background(), storage.Options{Settings: settingsJSON(t, "c", map[string]any{"cloudName": "AzureMoonCloud"}), Credentials: azuretest.Credentials()}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown cloudName: %v", err)
	}
}

// TestSASRedirect: a redirect is a read-only SAS URL valid for 20
// minutes, which Azurite (checking SAS signatures) serves; one altered is
// refused.
func TestSASRedirect(t *testing.T) {
	f := newDriver(t)
	content := storagetest.RandomBytes(t, 5000)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "redirect1"}, content, len(content))
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(context.Background(), u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	loc, err := f.driver.RedirectURL(context.Background(), dgst)
	if err != nil {
		t.Fatal(err)
	}
	if path, _ := url.PathUnescape(loc); !strings.Contains(loc, "sp=r&") || !strings.Contains(loc, "sig=") || !strings.Contains(path, "/"+f.container+"/blobs/sha256/") {
		t.Fatalf("redirect %s", loc)
	}
	for _, c := range []struct {
		url  string
		want int
	}{{loc, 200}, {strings.Replace(loc, "sp=r&", "sp=rw&", 1), 403}} {
		resp, err := http.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || (c.want == 200 && !bytes.Equal(got, content)) {
			t.Errorf("GET %s: %d, want %d", c.url, resp.StatusCode, c.want)
		}
	}
}

func TestObjectStore(t *testing.T) {
	storagetest.RunObjectStore(t, func(t *testing.T) storagetest.Bucket { return newDriver(t).driver })
}

func TestBackendGoesAway(t *testing.T) {
	e := azuretest.Start(t)
	t.Setenv(azuretest.ServiceURLVar, e.ServiceURL)
	d, err := azure.New(context.Background(), storage.Options{Settings: settingsJSON(t, azuretest.Container(), nil), Credentials: azuretest.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.RunBackendGoesAway(t, d, e.Stop, e.Restart)
}
