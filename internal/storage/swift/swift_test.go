package swift_test

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
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/storagetest"
	"github.com/berth-registry/berth/internal/storage/swift"
	"github.com/berth-registry/berth/internal/storage/swift/swifttest"
	"github.com/berth-registry/berth/internal/testtool"
)

var cluster *swifttest.Cluster

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-swift-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, ok, err := swifttest.StartMain(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ok {
		cluster = c
	}
	code := m.Run()
	if c != nil {
		c.Stop()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func settingsJSON(t *testing.T, c *swifttest.Cluster, container string, extra map[string]any) []byte {
	t.Helper()
	set := c.Settings(container)
	for k, v := range extra {
		set[k] = v
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type fixture struct {
	driver    *swift.Driver
	container string
}

func newDriver(t *testing.T) fixture {
	t.Helper()
	if cluster == nil {
		testtool.Missing(t, "swift-proxy-server")
	}
	name := swifttest.Container()
	d, err := swift.New(context.Background(), storage.Options{DataDir: t.TempDir(), Settings: settingsJSON(t, cluster, name, nil), Credentials: swifttest.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{driver: d.(*swift.Driver), container: name}
}

func TestDriverSuite(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Driver { return newDriver(t).driver })
}

// TestCommitShapes: one segment is copied; several are joined and copied
// flat; a blob above the flat limit stays a manifest over its own
// segments (nested above the manifest size), reads whole and by range,
// and is deleted with them; no upload object is left.
func TestCommitShapes(t *testing.T) {
	ctx := context.Background()
	f := newDriver(t)
	f.driver.SetManifestSegments(2)
	for _, c := range []struct {
		name      string
		flatLimit int64
		chunks    []int
	}{
		{"one segment", 1 << 40, []int{5000}},
		{"joined and flat", 1 << 40, []int{100, 9 << 20, 3, 7, 11}},
		{"a manifest of manifests", 10, []int{100, 9 << 20, 8 << 20}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.driver.SetFlatLimit(c.flatLimit)
			total := 0
			for _, n := range c.chunks {
				total += n
			}
			content := storagetest.RandomBytes(t, total)
			u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "shape" + fmt.Sprint(len(c.chunks))}, content, c.chunks...)
			dgst := digest.FromBytes(content)
			if err := f.driver.Commit(ctx, u, dgst, int64(total)); err != nil {
				t.Fatal(err)
			}
			if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
				t.Fatal("the blob reads back other bytes")
			}
			rc, err := f.driver.Open(ctx, dgst, int64(total)-150, 120)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, content[total-150:total-30]) {
				t.Errorf("a range: %d bytes", len(got))
			}
			if names, _ := f.driver.Names(ctx, "upload-"); len(names) != 0 {
				t.Errorf("upload objects left: %v", names)
			}
			if err := f.driver.Delete(ctx, dgst); err != nil {
				t.Fatal(err)
			}
			if names, _ := f.driver.Names(ctx, "segments/"); len(names) != 0 {
				t.Errorf("segments left after Delete: %v", names)
			}
		})
	}
}

// TestClusterLimits: a cluster whose manifests are smaller than Swift's
// default says so in /info, and a commit keeps under it (a manifest of
// more segments is refused by Swift): manifests of manifests, copied flat.
func TestClusterLimits(t *testing.T) {
	c := swifttest.StartWith(t, swifttest.Limits{MaxManifestSegments: 2})
	ctx := context.Background()
	d, err := swift.New(ctx, storage.Options{Settings: settingsJSON(t, c, swifttest.Container(), nil), Credentials: swifttest.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	content := storagetest.RandomBytes(t, 25<<20+3)
	u := storagetest.AppendChunks(t, d, storage.Upload{ID: "limits1"}, content, 25<<20+3)
	dgst := digest.FromBytes(content)
	if err := d.Commit(ctx, u, dgst, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, d, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
	if names, _ := d.(*swift.Driver).Names(ctx, "upload-"); len(names) != 0 {
		t.Errorf("upload objects left: %v", names)
	}
}

// TestSmallAppendsStayFewSegments: each append tops up a short last
// segment, so a session of many small chunks is one segment (Swift serves
// a large object of small segments slowly), and reads and commits whole;
// an append never recorded that topped it up leaves the recorded bytes.
func TestSmallAppendsStayFewSegments(t *testing.T) {
	f := newDriver(t)
	ctx := context.Background()
	chunks := make([]int, 40)
	total := 0
	for i := range chunks {
		chunks[i] = 1000 + i
		total += chunks[i]
	}
	content := storagetest.RandomBytes(t, total)
	u := storagetest.AppendChunks(t, f.driver, storage.Upload{ID: "small1"}, content, chunks...)
	if !strings.Contains(string(u.State), `"n":2,`) {
		t.Errorf("state after %d small appends: %s, want one segment", len(chunks), u.State)
	}
	// An append never recorded tops up the segment further.
	if _, _, err := f.driver.Append(ctx, u, int64(total), strings.NewReader("never recorded")); err != nil {
		t.Fatal(err)
	}
	rc, err := f.driver.ReadUpload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, content) {
		t.Errorf("ReadUpload: %d bytes, want the %d recorded", len(got), total)
	}
	dgst := digest.FromBytes(content)
	if err := f.driver.Commit(ctx, u, dgst, int64(total)); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.ReadBlob(t, f.driver, dgst); !bytes.Equal(got, content) {
		t.Fatal("the blob reads back other bytes")
	}
}

// TestBadState: a state from the store that does not add up is refused.
func TestBadState(t *testing.T) {
	f := newDriver(t)
	for _, bad := range []string{`{"n":0,"z":0}`, `{"n":2,"z":0}`, `{"n":1,"z":5}`, `{"n":2,"z":99999999999}`, `{"n":2000000,"z":5}`, `{"n":3,"z":5}`, `[]`} {
		if _, _, err := f.driver.Append(context.Background(), storage.Upload{ID: "bad1", State: []byte(bad)}, 0, strings.NewReader("x")); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("state %s: %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestProvisioning: an absent container is created with Berth's token; a
// found one is used as it is.
func TestProvisioning(t *testing.T) {
	f := newDriver(t)
	if c := f.driver.Conditions(); len(c) != 1 || c[0].Status != "True" || c[0].Reason != "Swift Container Created" {
		t.Errorf("conditions of a created container: %+v", c)
	}
	if f.driver.ProvisionToken() == "" {
		t.Error("no provision token for a container the driver created")
	}
	d, err := swift.New(context.Background(), storage.Options{Settings: settingsJSON(t, cluster, f.container, nil), Credentials: swifttest.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	if c := d.(storage.Reporter).Conditions(); len(c) != 1 || c[0].Reason != "Swift container Exists" || c[0].Message != "User supplied container already exists" {
		t.Errorf("conditions of a found container: %+v", c)
	}
	if d.(storage.Provisioner).ProvisionToken() != "" {
		t.Error("a found container has a provision token")
	}
	// An older storage is opened, never made: a missing container stays
	// missing (asked twice: the first did not create it).
	missing := swifttest.Container()
	for range 2 {
		_, err := swift.New(context.Background(), storage.Options{Settings: settingsJSON(t, cluster, missing, nil), Credentials: swifttest.Credentials(), Existing: true})
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("a missing container that must exist: %v", err)
		}
	}
}

// TestRefusedSettings: what cannot work is refused, clearly.
func TestRefusedSettings(t *testing.T) {
	if cluster == nil {
		testtool.Missing(t, "swift-proxy-server")
	}
	for name, opts := range map[string]storage.Options{
		"no credentials": {Settings: settingsJSON(t, cluster, "c", nil)},
		"no authURL":     {Settings: []byte(`{"container":"c"}`), Credentials: swifttest.Credentials()},
		"bad version":    {Settings: settingsJSON(t, cluster, "c", map[string]any{"authVersion": "4"}), Credentials: swifttest.Credentials()},
		"unknown field":  {Settings: settingsJSON(t, cluster, "c", map[string]any{"bucket": "b"}), Credentials: swifttest.Credentials()},
		"keystone, no password": {Settings: settingsJSON(t, cluster, "c", map[string]any{"authVersion": "3"}),
			Credentials: map[string]string{swift.UsernameKey: "u"}},
		"version unlike the URL's": {Settings: settingsJSON(t, cluster, "c", map[string]any{"authVersion": "3", "authURL": "http://127.0.0.1:1/v2.0"}),
			Credentials: swifttest.Credentials()},
	} {
		if _, err := swift.New(context.Background(), opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	_, err := swift.New(context.Background(), storage.Options{Settings: settingsJSON(t, cluster, "c", nil),
		Credentials: map[string]string{swift.UsernameKey: swifttest.User, swift.PasswordKey: "wrong"}})
	if err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("a wrong password: %v", err)
	}
}

// TestTempURLRedirect: a redirect is a temp URL valid for 20 minutes,
// which Swift (checking its signature) serves; one altered is refused.
func TestTempURLRedirect(t *testing.T) {
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
	if path, _ := url.PathUnescape(loc); !strings.Contains(loc, "temp_url_sig=") || !strings.Contains(path, "/"+f.container+"/blobs/sha256/") {
		t.Fatalf("redirect %s", loc)
	}
	for _, c := range []struct {
		url  string
		want int
	}{{loc, 200}, {strings.Replace(loc, "temp_url_sig=", "temp_url_sig=0", 1), 401}} {
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

// TestBackendGoesAway runs last: it stops the package's cluster.
func TestBackendGoesAway(t *testing.T) {
	storagetest.RunBackendGoesAway(t, newDriver(t).driver, cluster.Stop, cluster.Restart)
}
