package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/drivers"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/store"
	"github.com/opencontainers/go-digest"
)

// emptyDirStorages is the blob storage of a test that serves a handler
// without the operator: an emptyDir in effect.
func emptyDirStorages(t testing.TB, dir string, sessions storageRecords) *blobStorages {
	t.Helper()
	s := newBlobStorages(dir, drivers.Builtin(), true, sessions, slog.New(slog.DiscardHandler))
	if _, err := s.ApplyStorage(context.Background(), operator.DesiredStorage{Config: imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// openTestStore opens a SQLite store in dir for the test.
func openTestStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	meta, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	return meta
}

// storageStatus is the part of the Config's status this file checks.
func storageStatus(t *testing.T, url string) (claim string, emptyDir bool) {
	t.Helper()
	resp, err := admin.Get(url + configURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		Status struct {
			Storage imageregistryv1.StorageConfig `json:"storage"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Status.Storage.PVC != nil {
		claim = c.Status.Storage.PVC.Claim
	}
	return claim, c.Status.Storage.EmptyDir != nil
}

func expectStorageExists(t *testing.T, url, reason string) {
	t.Helper()
	c, _ := getConfig(t, url)
	if st, r, msg := c.condition("StorageExists"); st != "True" || r != reason {
		t.Errorf("StorageExists: %s %s %q, want True %s", st, r, msg, reason)
	}
	if st, r, msg := c.condition("Degraded"); st != "False" {
		t.Errorf("Degraded: %s %s %q", st, r, msg)
	}
}

// expectMigrationPending waits for StorageMigrationPending to be True
// with a message holding each of want (the operator's pass follows a
// push), and Degraded False.
func expectMigrationPending(t *testing.T, url string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, _ := getConfig(t, url)
		st, _, msg := c.condition("StorageMigrationPending")
		ok := st == "True"
		for _, w := range want {
			ok = ok && strings.Contains(msg, w)
		}
		if ok {
			if st, r, msg := c.condition("Degraded"); st != "False" {
				t.Errorf("Degraded: %s %s %q", st, r, msg)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("StorageMigrationPending: %s %q, want True with %q", st, msg, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// migrateStorage runs a storage migration through the management API and
// returns the events it streamed.
func migrateStorage(t *testing.T, url string, dryRun bool) []apiserver.MigrationEvent {
	t.Helper()
	path := url + "/apis/imageregistry.operator.openshift.io/v1/configs/cluster/storagemigration"
	if dryRun {
		path += "?dryRun=All"
	}
	resp, err := admin.Post(path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("storage migration: %d %s", resp.StatusCode, b)
	}
	var events []apiserver.MigrationEvent
	dec := json.NewDecoder(resp.Body)
	for {
		var ev apiserver.MigrationEvent
		if err := dec.Decode(&ev); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		t.Fatal("the storage migration streamed nothing")
	}
	return events
}

// pull GETs a blob and returns its status and bytes.
func pull(t *testing.T, url, repo string, dgst digest.Digest) (int, []byte) {
	t.Helper()
	resp, err := admin.Get(url + "/v2/" + repo + "/blobs/" + dgst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func blobFile(root string, dgst digest.Digest) string {
	return filepath.Join(root, "blobs", "sha256", dgst.Encoded()[:2], dgst.Encoded())
}

// pushManifest PUTs an image manifest naming config and layer.
func pushManifest(t *testing.T, url, repo, tag string, config, layer []byte) int {
	t.Helper()
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		digest.FromBytes(config), len(config), digest.FromBytes(layer), len(layer))
	req, _ := http.NewRequest("PUT", url+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// spec.storage switches live: a push after a switch lands in the new
// storage, blobs of the old one answer BLOB_UNKNOWN while manifests and
// tags stay (they are metadata), an upload begun before the switch must
// start again, and switching back finds the old blobs with their bytes;
// an emptyDir switched away from and back keeps its blobs. No restart.
func TestStorageSwitchLive(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), []byte("first layer")
	for _, b := range [][]byte{config, layer} {
		if resp := pushBlob(t, r.url, "sw/app", b); resp.StatusCode != 201 {
			t.Fatalf("push to the default volume: %d", resp.StatusCode)
		}
	}
	if code := pushManifest(t, r.url, "sw/app", "v1", config, layer); code != 201 {
		t.Fatalf("manifest: %d", code)
	}
	first := digest.FromBytes(layer)
	defaultRoot := filepath.Join(dir, "storage")
	if _, err := os.Stat(blobFile(defaultRoot, first)); err != nil {
		t.Fatalf("the first layer is not in the data directory's blob store: %v", err)
	}
	// An upload under way when the storage switches.
	resp, err := admin.Post(r.url+"/v2/sw/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	session := resp.Header.Get("Location")
	req, _ := http.NewRequest("PATCH", r.url+session, strings.NewReader("half of it"))
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 202 {
		t.Fatalf("PATCH = %v, %v", resp, err)
	}
	sessionFile := filepath.Join(defaultRoot, "uploads", registrytest.SessionID(session))
	if _, err := os.Stat(sessionFile); err != nil {
		t.Fatalf("the session's bytes are not in the default volume: %v", err)
	}

	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"second"}}}}`)
	expectStorageExists(t, r.url, "PVC Created")
	if claim, _ := storageStatus(t, r.url); claim != "second" {
		t.Errorf("status.storage claim = %q", claim)
	}
	// Blobs left in the default volume are read from there.
	if code, body := pull(t, r.url, "sw/app", first); code != 200 || string(body) != string(layer) {
		t.Errorf("the first layer under the second volume: %d %q, want it from the default volume", code, body)
	}
	if code := status(t, "HEAD", r.url+"/v2/sw/app/blobs/"+first.String()); code != 200 {
		t.Errorf("HEAD of the first layer under the second volume: %d", code)
	}
	if code := status(t, "GET", r.url+"/v2/sw/app/manifests/v1"); code != 200 {
		t.Errorf("the manifest after the switch: %d (manifests are metadata)", code)
	}
	if code := status(t, "GET", r.url+"/v2/sw/app/tags/list"); code != 200 {
		t.Errorf("tags after the switch: %d", code)
	}
	if code := pushManifest(t, r.url, "sw/app", "v2", config, layer); code != 201 {
		t.Errorf("a manifest naming layers left in the old volume: %d, want 201", code)
	}
	expectMigrationPending(t, r.url, "2 blobs", "pvc volume image-registry-storage: 2 blobs")
	req, _ = http.NewRequest("PATCH", r.url+session, strings.NewReader(" and the rest"))
	resp, err = admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := registryError(t, resp); resp.StatusCode != 404 || code != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("an upload begun before the switch: %d %s", resp.StatusCode, code)
	}
	resp.Body.Close()
	if _, err := os.Stat(sessionFile); !os.IsNotExist(err) {
		t.Errorf("the ended session's bytes are still in the old volume: %v", err)
	}
	second := []byte("second layer")
	if resp := pushBlob(t, r.url, "sw/app", second); resp.StatusCode != 201 {
		t.Fatalf("push to the second volume: %d", resp.StatusCode)
	}
	secondRoot := filepath.Join(dir, "volumes", "second")
	if _, err := os.Stat(blobFile(secondRoot, digest.FromBytes(second))); err != nil {
		t.Errorf("the push did not land in DATA/volumes/second: %v", err)
	}
	if _, err := os.Stat(blobFile(defaultRoot, digest.FromBytes(second))); !os.IsNotExist(err) {
		t.Errorf("the push landed in the default volume too: %v", err)
	}
	for _, d := range []string{filepath.Join(dir, "volumes"), secondRoot} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a directory private to its user", d, st.Mode(), err)
		}
	}

	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":null,"emptyDir":{}}}}`)
	expectStorageExists(t, r.url, "Creation Successful")
	if _, emptyDir := storageStatus(t, r.url); !emptyDir {
		t.Error("status.storage is not the emptyDir")
	}
	ephemeral := []byte("in memory")
	if resp := pushBlob(t, r.url, "sw/app", ephemeral); resp.StatusCode != 201 {
		t.Fatalf("push to the emptyDir: %d", resp.StatusCode)
	}
	for _, b := range [][]byte{layer, second} {
		if code, body := pull(t, r.url, "sw/app", digest.FromBytes(b)); code != 200 || string(body) != string(b) {
			t.Errorf("%q under the emptyDir: %d %q, want it from its volume", b, code, body)
		}
	}

	patchConfig(t, r.url, `{"spec":{"storage":{"emptyDir":null,"pvc":{"claim":"image-registry-storage"}}}}`)
	expectStorageExists(t, r.url, "PVC Exists")
	for _, b := range [][]byte{layer, second, ephemeral} {
		if code, body := pull(t, r.url, "sw/app", digest.FromBytes(b)); code != 200 || string(body) != string(b) {
			t.Errorf("%q back on the default volume: %d %q", b, code, body)
		}
	}
	// The default volume holds the first push; the second volume and this
	// process's emptyDir hold one blob each.
	expectMigrationPending(t, r.url, "2 blobs", "pvc volume second: 1 blobs", "emptyDir: 1 blobs")

	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":null,"emptyDir":{}}}}`)
	if code, body := pull(t, r.url, "sw/app", digest.FromBytes(ephemeral)); code != 200 || string(body) != string(ephemeral) {
		t.Errorf("the emptyDir's blob after switching back to it: %d %q", code, body)
	}

	// Then a last volume, and everything migrates into it.
	patchConfig(t, r.url, `{"spec":{"storage":{"emptyDir":null,"pvc":{"claim":"third"}}}}`)
	expectMigrationPending(t, r.url, "4 blobs")
	events := migrateStorage(t, r.url, true)
	dry := events[len(events)-1]
	if dry.Type != "Done" || !dry.Report.DryRun || len(dry.Report.Storages) != 3 {
		t.Fatalf("dry run: %+v", dry)
	}
	if _, err := os.Stat(blobFile(defaultRoot, first)); err != nil {
		t.Errorf("a dry run moved the first layer: %v", err)
	}
	events = migrateStorage(t, r.url, false)
	done := events[len(events)-1]
	if done.Type != "Done" || done.Report.DryRun || len(done.Report.Failures) != 0 {
		t.Fatalf("migration: %+v", done)
	}
	copied := int64(0)
	for _, s := range done.Report.Storages {
		copied += s.Copied
		if !s.Emptied {
			t.Errorf("%s not emptied: %+v", s.Name, s)
		}
	}
	if p := events[len(events)-2]; copied != 4 || p.Type != "Progress" || p.Progress.Blobs != 4 || p.Progress.TotalBlobs != 4 {
		t.Errorf("copied %d blobs, last progress %+v; want 4 of 4", copied, p.Progress)
	}
	thirdRoot := filepath.Join(dir, "volumes", "third")
	for _, b := range [][]byte{config, layer, second, ephemeral} {
		d := digest.FromBytes(b)
		if _, err := os.Stat(blobFile(thirdRoot, d)); err != nil {
			t.Errorf("%q is not in the third volume: %v", b, err)
		}
		for _, old := range []string{defaultRoot, secondRoot} {
			if _, err := os.Stat(blobFile(old, d)); !os.IsNotExist(err) {
				t.Errorf("%q is still in %s: %v", b, old, err)
			}
		}
		if code, body := pull(t, r.url, "sw/app", d); code != 200 || string(body) != string(b) {
			t.Errorf("%q after the migration: %d %q", b, code, body)
		}
	}
	c, _ := getConfig(t, r.url)
	if st, reason, msg := c.condition("StorageMigrationPending"); st != "False" {
		t.Errorf("StorageMigrationPending after the migration: %s %s %q", st, reason, msg)
	}
	// Nothing is left to move: a second run says so.
	again := migrateStorage(t, r.url, false)
	if last := again[len(again)-1]; last.Type != "Done" || len(last.Report.Storages) != 0 {
		t.Errorf("a second migration: %+v", last)
	}
	// Five switches (second, emptyDir, the default, emptyDir, third), counted as
	// the reference's operator counts them; the type in effect is shown.
	deadline := time.Now().Add(10 * time.Second)
	for metricLine(t, r.url, "image_registry_operator_storage_reconfigured_total") != "image_registry_operator_storage_reconfigured_total 5" {
		if time.Now().After(deadline) {
			t.Fatalf("reconfigurations: %q", metricLine(t, r.url, "image_registry_operator_storage_reconfigured_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := metricLine(t, r.url, `image_registry_storage_type{storage="PVC"}`); got != `image_registry_storage_type{storage="PVC"} 1` {
		t.Errorf("storage type: %q", got)
	}
}

// The Config's storage is what a restarted process serves; an emptyDir's
// blobs die with the process that held them, even though their records
// outlive it.
func TestStorageAfterRestart(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"second"}}}}`)
	kept := []byte("kept on the second volume")
	if resp := pushBlob(t, r.url, "rs/app", kept); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	r.shutdown(t)
	r = start(t, Config{DataDir: dir})
	if code, body := pull(t, r.url, "rs/app", digest.FromBytes(kept)); code != 200 || string(body) != string(kept) {
		t.Fatalf("after a restart the second volume's blob: %d %q", code, body)
	}
	expectStorageExists(t, r.url, "PVC Exists")

	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":null,"emptyDir":{}}}}`)
	gone := []byte("in this process's memory")
	if resp := pushBlob(t, r.url, "rs/app", gone); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	r.shutdown(t)
	r = start(t, Config{DataDir: dir})
	if code := status(t, "HEAD", r.url+"/v2/rs/app/blobs/"+digest.FromBytes(gone).String()); code != 404 {
		t.Fatalf("an earlier process's emptyDir blob after a restart: %d, want 404", code)
	}
	if resp := pushBlob(t, r.url, "rs/app", gone); resp.StatusCode != 201 {
		t.Fatalf("push it again: %d", resp.StatusCode)
	}
	if code := status(t, "HEAD", r.url+"/v2/rs/app/blobs/"+digest.FromBytes(gone).String()); code != 200 {
		t.Fatalf("pushed again to this process's emptyDir: %d", code)
	}
	// The second volume, switched away from before the restart, is opened
	// again from its record: its blob is served, and only it is pending
	// (the earlier emptyDir's records were forgotten with its bytes).
	if code, body := pull(t, r.url, "rs/app", digest.FromBytes(kept)); code != 200 || string(body) != string(kept) {
		t.Fatalf("after a restart, the older volume's blob: %d %q", code, body)
	}
	expectMigrationPending(t, r.url, "1 blobs", "pvc volume second: 1 blobs")

	// An older storage that cannot be opened leaves its blobs
	// unavailable, not absent, and Degraded says which.
	if err := os.RemoveAll(filepath.Join(dir, "volumes", "second")); err != nil {
		t.Fatal(err)
	}
	patchConfig(t, r.url, `{"spec":{"logLevel":"Debug"}}`) // a pass now, not at the resync
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, _ := getConfig(t, r.url)
		if st, _, msg := c.condition("Degraded"); st == "True" && strings.Contains(msg, "pvc volume second holds 1 blobs and cannot be opened") {
			break
		}
		if time.Now().After(deadline) {
			st, reason, msg := c.condition("Degraded")
			t.Fatalf("Degraded: %s %s %q, want the volume named", st, reason, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, method := range []string{"HEAD", "GET"} {
		if code := status(t, method, r.url+"/v2/rs/app/blobs/"+digest.FromBytes(kept).String()); code != 503 {
			t.Errorf("%s of a blob in an older storage that cannot be opened: %d, want 503", method, code)
		}
	}
	// Nothing migrates into an emptyDir: memory would be the only copy.
	resp, err := admin.Post(r.url+"/apis/imageregistry.operator.openshift.io/v1/configs/cluster/storagemigration", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(string(b), "the storage in effect is an emptyDir") {
		t.Errorf("a migration into an emptyDir: %d %s", resp.StatusCode, b)
	}
}

// A process whose metadata lives in memory serves its emptyDir only: a
// volume is refused, said in status, and the emptyDir stays in effect.
func TestMemoryProcessRefusesVolumes(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), Storage: "memory"})
	content := []byte("stays in memory")
	if resp := pushBlob(t, r.url, "mem/app", content); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	patchConfig(t, r.url, `{"spec":{"storage":{"emptyDir":null,"pvc":{"claim":"disk"}}}}`)
	c, _ := getConfig(t, r.url)
	if st, reason, msg := c.condition("Degraded"); st != "True" || !strings.Contains(msg, "--storage memory") {
		t.Errorf("Degraded: %s %s %q", st, reason, msg)
	}
	if st, reason, _ := c.condition("StorageExists"); st != "False" || reason != "StorageNotApplied" {
		t.Errorf("StorageExists: %s %s", st, reason)
	}
	if _, emptyDir := storageStatus(t, r.url); !emptyDir {
		t.Error("status.storage is not the emptyDir in effect")
	}
	if code := status(t, "HEAD", r.url+"/v2/mem/app/blobs/"+digest.FromBytes(content).String()); code != 200 {
		t.Errorf("the emptyDir's blob: %d", code)
	}
}

// Removing a storage waits for the commits in flight into it, and then
// admits none: a commit either lands before the removal (which then
// counts and removes it) or is refused.
func TestRemoveStorageWaitsForCommits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	s := newBlobStorages(dir, drivers.Builtin(), false, meta, slog.New(slog.DiscardHandler))
	spec := imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: "scratch"}, ManagementState: "Managed"}
	applied, err := s.ApplyStorage(ctx, operator.DesiredStorage{Config: spec})
	if err != nil || !applied.Created {
		t.Fatalf("apply: %+v %v", applied, err)
	}
	leave, ok := applied.Blobs.Writes.Enter()
	if !ok {
		t.Fatal("a fresh storage refused a commit")
	}
	removed := make(chan error, 1)
	go func() {
		_, err := s.RemoveStorage(ctx, spec)
		removed <- err
	}()
	select {
	case err := <-removed:
		t.Fatalf("the removal did not wait for the commit in flight: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := os.Stat(filepath.Join(dir, "volumes", "scratch")); err != nil {
		t.Fatalf("the volume went while a commit was in flight: %v", err)
	}
	leave()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if _, ok := applied.Blobs.Writes.Enter(); ok {
		t.Error("the removed storage admits commits")
	}
	if _, err := os.Stat(filepath.Join(dir, "volumes", "scratch")); !os.IsNotExist(err) {
		t.Errorf("the volume Berth made is still there: %v", err)
	}
}

// fakeS3 is a driver registered as "s3" in a test's driver table: memory
// underneath, with the typed settings and credentials it was built with.
type fakeS3 struct {
	*memory.Driver
	settings fakeS3Settings
	creds    map[string]string
	ca       []byte
	client   *http.Client
}

type fakeS3Settings struct {
	Bucket         string `json:"bucket"`
	Region         string `json:"region"`
	RegionEndpoint string `json:"regionEndpoint"`
	ChunkSizeMiB   int    `json:"chunkSizeMiB"`
	TrustedCA      struct {
		Name string `json:"name"`
	} `json:"trustedCA"`
}

// An object-storage driver in the driver table is built from its typed
// settings, the credentials and the trusted CA in effect, with the
// outbound client; settings that do not move the bytes (credentials, a
// chunk size) rebuild the driver under the same storage, whose blobs stay
// present; another bucket is another storage; a type with no driver in
// the table is refused, naming it.
func TestObjectStorageDriversFromTheTable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	var built []*fakeS3
	table := storage.Registry{
		"memory": memory.New,
		"s3": func(_ context.Context, opts storage.Options) (storage.Driver, error) {
			set, err := storage.DecodeSettings[fakeS3Settings](opts)
			if err != nil {
				return nil, err
			}
			d := &fakeS3{Driver: memory.NewDriver(), settings: set, creds: opts.Credentials, ca: opts.TrustedCA, client: opts.HTTPClient}
			built = append(built, d)
			return d, nil
		},
	}
	s := newBlobStorages(dir, table, false, meta, slog.New(slog.DiscardHandler))
	s.client = &http.Client{}
	want := operator.DesiredStorage{
		Config:      imageregistryv1.StorageConfig{S3: &imageregistryv1.S3Storage{Bucket: "blobs", Region: "us-east-1", RegionEndpoint: "http://127.0.0.1:9000", ChunkSizeMiB: 16}},
		Credentials: map[string]string{"REGISTRY_STORAGE_S3_ACCESSKEY": "k1", "REGISTRY_STORAGE_S3_SECRETKEY": "s1"},
		TrustedCA:   []byte("-----BEGIN CERTIFICATE-----"),
	}
	first, err := s.ApplyStorage(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || built[0].settings != (fakeS3Settings{Bucket: "blobs", Region: "us-east-1", RegionEndpoint: "http://127.0.0.1:9000", ChunkSizeMiB: 16}) ||
		built[0].creds["REGISTRY_STORAGE_S3_SECRETKEY"] != "s1" || string(built[0].ca) != "-----BEGIN CERTIFICATE-----" || built[0].client != s.client {
		t.Fatalf("the driver was built with %+v", built)
	}
	if first.Blobs.ID != "s3:http:%2F%2F127.0.0.1:9000/blobs" {
		t.Errorf("storage ID %q", first.Blobs.ID)
	}
	if again, _ := s.ApplyStorage(ctx, want); len(built) != 1 || again.Blobs.Driver != first.Blobs.Driver {
		t.Errorf("the same settings built the driver again (%d builds)", len(built))
	}

	// New credentials, a new chunk size: the same storage, rebuilt.
	want.Credentials = map[string]string{"REGISTRY_STORAGE_S3_ACCESSKEY": "k2", "REGISTRY_STORAGE_S3_SECRETKEY": "s2"}
	rotated, err := s.ApplyStorage(ctx, want)
	if err != nil || len(built) != 2 || rotated.Blobs.ID != first.Blobs.ID || built[1].creds["REGISTRY_STORAGE_S3_SECRETKEY"] != "s2" {
		t.Fatalf("after new credentials: %v, %d builds, ID %q", err, len(built), rotated.Blobs.ID)
	}
	if d, ok := s.Built(first.Blobs.ID); !ok || d != rotated.Blobs.Driver {
		t.Error("Built does not give the rebuilt driver")
	}
	s3 := *want.Config.S3
	s3.ChunkSizeMiB = 32
	want.Config.S3 = &s3
	if chunked, err := s.ApplyStorage(ctx, want); err != nil || len(built) != 3 || chunked.Blobs.ID != first.Blobs.ID {
		t.Errorf("after a new chunk size: %v, %d builds, ID %q", err, len(built), chunked.Blobs.ID)
	}

	// Another bucket is another storage.
	s3.Bucket = "other"
	if moved, err := s.ApplyStorage(ctx, want); err != nil || moved.Blobs.ID != "s3:http:%2F%2F127.0.0.1:9000/other" {
		t.Errorf("another bucket: %v, ID %q", err, moved.Blobs.ID)
	}

	// A type the table has no driver for.
	_, err = s.ApplyStorage(ctx, operator.DesiredStorage{Config: imageregistryv1.StorageConfig{GCS: &imageregistryv1.GCSStorage{Bucket: "b"}}})
	if err == nil || !strings.Contains(err.Error(), "the GCS storage driver is not built yet; the registry keeps serving from s3 bucket other") {
		t.Errorf("gcs without a driver: %v", err)
	}
}

// Two object stores never share a storage ID (blobs recorded in one would
// count as present in the other), and one store written two ways has one.
func TestObjectStorageIDs(t *testing.T) {
	id := func(spec imageregistryv1.StorageConfig) string {
		id, _, _ := objectStorage(spec)
		return id
	}
	s3 := func(region, endpoint, bucket string) imageregistryv1.StorageConfig {
		return imageregistryv1.StorageConfig{S3: &imageregistryv1.S3Storage{Region: region, RegionEndpoint: endpoint, Bucket: bucket}}
	}
	swift := func(tenant, region, container string) imageregistryv1.StorageConfig {
		return imageregistryv1.StorageConfig{Swift: &imageregistryv1.SwiftStorage{AuthURL: "https://keystone.example:5000/v3", Tenant: tenant, RegionName: region, Container: container}}
	}
	for _, pair := range [][2]imageregistryv1.StorageConfig{
		{s3("us-east-1", "", "registry"), s3("cn-north-1", "", "registry")},
		{s3("us-east-1", "", "registry"), s3("us-gov-west-1", "", "registry")},
		{s3("", "https://a.example", "b/c"), s3("", "https://a.example/b", "c")},
		{swift("team-a", "RegionOne", "registry"), swift("team-b", "RegionOne", "registry")},
		{swift("team-a", "RegionOne", "registry"), swift("team-a", "RegionTwo", "registry")},
	} {
		if a, b := id(pair[0]), id(pair[1]); a == b {
			t.Errorf("two stores share the ID %q", a)
		}
	}
	for _, pair := range [][2]imageregistryv1.StorageConfig{
		{s3("us-east-1", "", "registry"), s3("eu-west-1", "", "registry")},
		{s3("", "https://S3.Example.com:443/", "b"), s3("", "https://s3.example.com", "b")},
	} {
		if a, b := id(pair[0]), id(pair[1]); a != b {
			t.Errorf("one store, two IDs: %q and %q", a, b)
		}
	}
}

// An older storage whose backend does not answer holds the operator's
// pass (and a start) for the open timeout at most, and is not tried again
// with the same settings for a while: the pass after is quick.
func TestOlderStorageThatHangs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	builds := 0
	table := drivers.Builtin()
	table["s3"] = func(ctx context.Context, opts storage.Options) (storage.Driver, error) {
		builds++
		if builds == 1 {
			return memory.NewDriver(), nil
		}
		<-ctx.Done() // a backend that accepts and never answers
		return nil, ctx.Err()
	}
	resolve := func(_ context.Context, c imageregistryv1.StorageConfig) (operator.DesiredStorage, error) {
		return operator.DesiredStorage{Config: c}, nil
	}
	bucket := imageregistryv1.StorageConfig{S3: &imageregistryv1.S3Storage{Bucket: "b", Region: "us-east-1", RegionEndpoint: "http://127.0.0.1:9"}}
	s := newBlobStorages(dir, table, false, meta, slog.New(slog.DiscardHandler))
	applied, err := s.ApplyStorage(ctx, operator.DesiredStorage{Config: bucket, Resolve: resolve})
	if err != nil {
		t.Fatal(err)
	}
	if err := meta.LinkBlob(ctx, applied.Blobs.ID, "p/app", digest.FromString("x"), 1); err != nil {
		t.Fatal(err)
	}

	// Started again, on a volume, with the bucket's endpoint hung.
	s = newBlobStorages(dir, table, false, meta, slog.New(slog.DiscardHandler))
	s.openTimeout = 200 * time.Millisecond
	volume := operator.DesiredStorage{Config: imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: imageregistryv1.DefaultClaim}}, Resolve: resolve}
	began := time.Now()
	applied, err = s.ApplyStorage(ctx, volume)
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied.Pending) != 1 || applied.Pending[0].Err == nil || applied.Older[0].Driver != nil {
		t.Fatalf("pending %+v: want the bucket, not opened", applied.Pending)
	}
	if took > 5*time.Second {
		t.Errorf("the pass waited %v for a backend that does not answer", took)
	}
	began = time.Now()
	if applied, _ = s.ApplyStorage(ctx, volume); applied.Pending[0].Err == nil || builds != 2 || time.Since(began) > time.Second {
		t.Errorf("the next pass: %d builds, %v, err %v; want the failure remembered, not tried again", builds, time.Since(began), applied.Pending[0].Err)
	}
}

// A storage this process used is read from even when it was counted
// empty: a request begun before the switch may commit into it (its blob
// must not be absent until the next count).
func TestOlderStorageCountedEmptyIsStillRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	s := newBlobStorages(dir, drivers.Builtin(), false, meta, slog.New(slog.DiscardHandler))
	resolve := func(_ context.Context, c imageregistryv1.StorageConfig) (operator.DesiredStorage, error) {
		return operator.DesiredStorage{Config: c}, nil
	}
	volume := func(claim string) operator.DesiredStorage {
		return operator.DesiredStorage{Config: imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: claim}}, Resolve: resolve}
	}
	first, err := s.ApplyStorage(ctx, volume("first"))
	if err != nil {
		t.Fatal(err)
	}
	applied, err := s.ApplyStorage(ctx, volume("second"))
	if err != nil {
		t.Fatal(err)
	}
	if len(applied.Older) != 1 || applied.Older[0].ID != "pvc:first" || applied.Older[0].Driver == nil || len(applied.Pending) != 0 {
		t.Fatalf("older %+v, pending %+v: want the first volume read from, and nothing pending", applied.Older, applied.Pending)
	}
	if applied.Older[0].Writes != first.Blobs.Writes {
		t.Error("the older storage's gate is not the one its commits enter")
	}
}

// A migration's report names each storage with its own name, whatever
// order readable and unreadable storages are listed in.
func TestMigrationReportNamesEachStorage(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	for i, claim := range []string{"aaa", "zzz"} {
		patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"`+claim+`"}}}}`)
		if resp := pushBlob(t, r.url, "names/app", []byte("a layer in "+claim+strings.Repeat("!", i))); resp.StatusCode != 201 {
			t.Fatalf("push: %d", resp.StatusCode)
		}
	}
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"final"}}}}`)
	if err := os.RemoveAll(filepath.Join(dir, "volumes", "aaa")); err != nil {
		t.Fatal(err)
	}
	patchConfig(t, r.url, `{"spec":{"logLevel":"Debug"}}`) // a pass that finds aaa gone
	events := migrateStorage(t, r.url, false)
	done := events[len(events)-1]
	if done.Type != "Done" || len(done.Report.Storages) != 2 {
		t.Fatalf("migration: %+v", done)
	}
	for _, s := range done.Report.Storages {
		if s.Name != "pvc volume "+strings.TrimPrefix(s.ID, "pvc:") {
			t.Errorf("storage %s reported as %q", s.ID, s.Name)
		}
		switch s.ID {
		case "pvc:aaa":
			if s.Unreadable == "" || s.Emptied {
				t.Errorf("the gone volume: %+v", s)
			}
		case "pvc:zzz":
			if s.Unreadable != "" || !s.Emptied || s.Copied != 1 {
				t.Errorf("the readable volume: %+v", s)
			}
		}
	}
}
