// Package storetest is the metadata store's test suite, one for every
// dialect: the store's own tests run it against SQLite and PostgreSQL.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

func WithProjects(t testing.TB, s *store.Store, names ...string) *store.Store {
	t.Helper()
	for _, n := range names {
		if err := s.CreateProject(context.Background(), store.Project{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Opener opens a new, empty store for one test; the store is closed when
// the test ends.
type Opener func(t testing.TB) *store.Store

// Run runs the store's whole suite against the stores open makes: every
// dialect must pass the same tests.
func Run(t *testing.T, open Opener) {
	for _, c := range []struct {
		name string
		test func(*testing.T, Opener)
	}{
		{"Blobs", testBlobs},
		{"ManifestReferences", testManifestReferences},
		{"ReferenceSizes", testReferenceSizes},
		{"TagHistory", testTagHistory},
		{"TagImage", testTagImage},
		{"TagAliases", testTagAliases},
		{"TagHistoryLimit", testTagHistoryLimit},
		{"DeleteManifest", testDeleteManifest},
		{"Pagination", testPagination},
		{"Referrers", testReferrers},
		{"Uploads", testUploads},
		{"UploadLeases", testUploadLeases},
		{"UploadLimits", testUploadLimits},
		{"Events", testEvents},
		{"ConcurrentTagPushes", testConcurrentTagPushes},
		{"JobLeases", testJobLeases},
		{"LoginFailures", testLoginFailures},
		{"ConcurrentRepositoryCreation", testConcurrentRepositoryCreation},
		{"ConcurrentObjectCreation", testConcurrentObjectCreation},
		{"ConcurrentUnconditionalUpdates", testConcurrentUnconditionalUpdates},
		{"EventLogHasNoGapsUnderConcurrentWriters", testEventLogHasNoGapsUnderConcurrentWriters},
		{"ConcurrentPushesAndDeletes", testConcurrentPushesAndDeletes},
		{"ConcurrentUploadLimit", testConcurrentUploadLimit},
		{"Projects", testProjects},
		{"BindingsFeedTheAuthorizer", testBindingsFeedTheAuthorizer},
		{"Tokens", testTokens},
		{"AccessGenerationMovesOnAccessChangesOnly", testAccessGenerationMovesOnAccessChangesOnly},
		{"ClusterRoles", testClusterRoles},
		{"AccessChangedWakesAfterTheGenerationMoved", testAccessChangedWakesAfterTheGenerationMoved},
		{"CachedLookupsFollowChanges", testCachedLookupsFollowChanges},
		{"CachedTagNeverStaleAfterMove", testCachedTagNeverStaleAfterMove},
		{"StreamTagsAreTheTagHistory", testStreamTagsAreTheTagHistory},
		{"RecordImport", testRecordImport},
		{"ObjectLifecycle", testObjectLifecycle},
		{"ListObjectsPagesAndScopes", testListObjectsPagesAndScopes},
		{"ConcurrentUpdatesConflict", testConcurrentUpdatesConflict},
		{"WatchHistoryIsBounded", testWatchHistoryIsBounded},
		{"ChangedWakesWatchers", testChangedWakesWatchers},
		{"DeleteProjectForgetsItsObjects", testDeleteProjectForgetsItsObjects},
		{"ObjectsNeedTheirProject", testObjectsNeedTheirProject},
		{"DeleteProjectAndRepositories", testDeleteProjectAndRepositories},
		{"RoleBindings", testRoleBindings},
		{"Groups", testGroups},
		{"ServiceAccountObjects", testServiceAccountObjects},
		{"GroupObjectsAndTheirIndex", testGroupObjectsAndTheirIndex},
		{"DeleteProjectEndsItsUploads", testDeleteProjectEndsItsUploads},
		{"DeleteProjectForgetsGrantsToItsServiceAccounts", testDeleteProjectForgetsGrantsToItsServiceAccounts},
		{"AccessGenerationCountsConcurrentChanges", testAccessGenerationCountsConcurrentChanges},
		{"BlobPresenceIsPerStorage", testBlobPresenceIsPerStorage},
		{"MountOnlyFromTheStorageInEffect", testMountOnlyFromTheStorageInEffect},
		{"ManifestReferencesArePerStorage", testManifestReferencesArePerStorage},
		{"UploadSessionsKeepTheirStorage", testUploadSessionsKeepTheirStorage},
		{"LocateBlobPrefersTheOrderNamed", testLocateBlobPrefersTheOrderNamed},
		{"TagImageLinksOnlyWhatTheSourceHolds", testTagImageLinksOnlyWhatTheSourceHolds},
		{"WebhookDeliveries", testWebhookDeliveries},
		{"PullLog", testPullLog},
		{"GCRoots", testGCRoots},
		{"GCTakenBlobIsGoneForEveryone", testGCTakenBlobIsGoneForEveryone},
		{"GCResumesTakenBlobs", testGCResumesTakenBlobs},
		{"GCManifestPushedAgain", testGCManifestPushedAgain},
		{"PruneRepository", testPruneRepository},
		{"Quotas", testQuotas},
		{"ImageSizeLimit", testImageSizeLimit},
		{"ConcurrentQuota", testConcurrentQuota},
		{"ProjectUsageFollowsLinks", testProjectUsageFollowsLinks},
		{"TagListing", testTagListing},
		{"ProjectSummaries", testProjectSummaries},
		{"AuditLog", testAuditLog},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, open) })
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Image links a config and a layer into repo and returns a manifest of
// them (not stored), different for each seed.
func Image(t *testing.T, s *store.Store, repo, seed string) store.Manifest {
	t.Helper()
	ctx := context.Background()
	cfg, layer := digest.FromString(seed+"cfg"), digest.FromString(seed+"layer")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, repo, cfg, 10))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, repo, layer, 20))
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"seed":%q}`, seed))
	return store.Manifest{
		Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Payload: payload, References: []store.Reference{{Digest: cfg, Size: 10, Required: true}, {Digest: layer, Size: 20, Required: true}},
	}
}

func testBlobs(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	b := digest.FromString("blob")
	if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/a", b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("BlobSize before link = %v", err)
	}
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", b, 4))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", b, 4))
	if size, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/a", b); err != nil || size != 4 {
		t.Fatalf("BlobSize = %d, %v", size, err)
	}
	if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/other", b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("blob visible in another repository: %v", err)
	}
	for _, from := range []string{"p/a", ""} {
		ok, err := s.MountBlob(ctx, store.Only(store.DefaultStorage), "p/mounted"+from, from, b)
		if err != nil || !ok {
			t.Fatalf("MountBlob from %q = %v, %v", from, ok, err)
		}
		if size, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/mounted"+from, b); err != nil || size != 4 {
			t.Fatalf("mounted blob size = %d, %v", size, err)
		}
	}
	if ok, err := s.MountBlob(ctx, store.Only(store.DefaultStorage), "p/x", "p/other", b); err != nil || ok {
		t.Fatalf("MountBlob from a repository without the blob = %v, %v", ok, err)
	}
	must(t, s.UnlinkBlob(ctx, "p/a", b))
	if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/a", b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("BlobSize after unlink = %v", err)
	}
	if err := s.UnlinkBlob(ctx, "p/a", b); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second unlink = %v", err)
	}
}

func testManifestReferences(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m := Image(t, s, "p/a", "one")
	missing := digest.FromString("missing")
	bad := m
	bad.References = append([]store.Reference{}, m.References...)
	bad.References = append(bad.References, store.Reference{Digest: missing, Required: true})
	var mre *store.MissingReferenceError
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", bad, []string{"latest"}); !errors.As(err, &mre) || mre.Digest != missing || mre.Manifest {
		t.Fatalf("PutManifest with a missing blob = %v", err)
	}
	if _, err := s.Manifest(ctx, "p/a", "latest"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("tag written by a failed put: %v", err)
	}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, []string{"latest"}))
	index := store.Manifest{
		Digest: digest.FromString("index"), MediaType: "application/vnd.oci.image.index.v1+json",
		Payload: []byte("index"), References: []store.Reference{{Digest: m.Digest, Manifest: true, Size: int64(len(m.Payload)), Required: true}},
	}
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/b", index, nil); !errors.As(err, &mre) || !mre.Manifest {
		t.Fatalf("index whose child is in another repository = %v", err)
	}
	sparse := index
	sparse.References = []store.Reference{{Digest: digest.FromString("absent child"), Manifest: true}}
	sparse.Digest, sparse.Payload = digest.FromString("sparse"), []byte("sparse")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/b", sparse, nil)) // not required: accepted
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", index, []string{"multi"}))
	got, err := s.Manifest(ctx, "p/a", "multi")
	if err != nil || got.Digest != index.Digest || string(got.Payload) != "index" || got.MediaType != index.MediaType {
		t.Fatalf("Manifest by tag = %+v, %v", got, err)
	}
	got, err = s.Manifest(ctx, "p/a", string(m.Digest))
	if err != nil || got.Digest != m.Digest {
		t.Fatalf("Manifest by digest = %+v, %v", got, err)
	}
	if _, err := s.Manifest(ctx, "p/b", string(m.Digest)); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("manifest visible in another repository: %v", err)
	}
}

// testReferenceSizes: a reference whose declared size differs from what
// the repository holds refuses the manifest, required or not; an absent
// optional reference is not checked.
func testReferenceSizes(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m := Image(t, s, "p/a", "sizes") // config 10 bytes, layer 20
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, nil))
	layer, child := m.References[1].Digest, m.Digest
	childSize := int64(len(m.Payload))
	for _, tc := range []struct {
		name   string
		ref    store.Reference
		stored int64
	}{
		{"required blob", store.Reference{Digest: layer, Size: 21, Required: true}, 20},
		{"optional blob present", store.Reference{Digest: layer, Size: 19}, 20},
		{"required child", store.Reference{Digest: child, Manifest: true, Size: childSize + 1, Required: true}, childSize},
		{"optional child present", store.Reference{Digest: child, Manifest: true, Size: 0}, childSize},
	} {
		payload := []byte("wrong size: " + tc.name)
		bad := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.index.v1+json",
			Payload: payload, References: []store.Reference{m.References[0], tc.ref}}
		var sizeErr *store.ReferenceSizeError
		err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", bad, []string{"bad"})
		if !errors.As(err, &sizeErr) || !errors.Is(err, errdefs.ErrSizeMismatch) || sizeErr.Digest != tc.ref.Digest ||
			sizeErr.Manifest != tc.ref.Manifest || sizeErr.Declared != tc.ref.Size || sizeErr.Stored != tc.stored {
			t.Fatalf("%s: PutManifest = %v (%+v), want a size error %d != %d", tc.name, err, sizeErr, tc.ref.Size, tc.stored)
		}
		if _, err := s.Manifest(ctx, "p/a", string(bad.Digest)); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("%s: refused manifest stored: %v", tc.name, err)
		}
	}
	if _, err := s.Manifest(ctx, "p/a", "bad"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("tag written by a refused put: %v", err)
	}
	payload := []byte("absent optional references")
	sparse := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.index.v1+json",
		Payload: payload, References: []store.Reference{m.References[0],
			{Digest: digest.FromString("absent layer"), Size: 5}, {Digest: digest.FromString("absent child"), Manifest: true, Size: 7}}}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", sparse, []string{"sparse"}))
}

func testTagHistory(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m1, m2 := Image(t, s, "p/a", "1"), Image(t, s, "p/a", "2")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m1, []string{"v"}))
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m1, []string{"v"})) // same digest: no new history
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m2, []string{"v"}))
	got, err := s.Manifest(ctx, "p/a", "v")
	if err != nil || got.Digest != m2.Digest {
		t.Fatalf("tag resolves to %s, %v; want newest %s", got.Digest, err, m2.Digest)
	}
	must(t, s.DeleteTag(ctx, "p/a", "v"))
	if err := s.DeleteTag(ctx, "p/a", "v"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second DeleteTag = %v", err)
	}
	if _, err := s.Manifest(ctx, "p/a", string(m2.Digest)); err != nil {
		t.Fatalf("deleting a tag removed the manifest: %v", err)
	}
	h, err := s.TagHistory(ctx, "p/a", "v")
	must(t, err)
	want := []digest.Digest{"", m2.Digest, m1.Digest}
	if len(h) != len(want) {
		t.Fatalf("history has %d entries, want %d: %+v", len(h), len(want), h)
	}
	for i := range want {
		if h[i].Digest != want[i] {
			t.Errorf("history[%d] = %s, want %s", i, h[i].Digest, want[i])
		}
		if i > 0 && h[i].Generation >= h[i-1].Generation {
			t.Errorf("generations not increasing toward the newest: %+v", h)
		}
	}
}

func testDeleteManifest(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m := Image(t, s, "p/a", "del")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, []string{"a", "b"}))
	must(t, s.DeleteManifest(ctx, "p/a", m.Digest))
	for _, ref := range []string{"a", "b", string(m.Digest)} {
		if _, err := s.Manifest(ctx, "p/a", ref); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s still resolves after delete: %v", ref, err)
		}
	}
	tags, _, err := s.Tags(ctx, "p/a", "", 10)
	if err != nil || len(tags) != 0 {
		t.Fatalf("tags after delete = %v, %v", tags, err)
	}
	if err := s.DeleteManifest(ctx, "p/a", m.Digest); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second delete = %v", err)
	}
}

func testPagination(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m := Image(t, s, "p/a", "page")
	var all []string
	for i := range 7 {
		all = append(all, fmt.Sprintf("t%02d", i))
	}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, all))
	var got []string
	last := ""
	for range 10 {
		page, more, err := s.Tags(ctx, "p/a", last, 3)
		must(t, err)
		got = append(got, page...)
		if !more {
			break
		}
		last = page[len(page)-1]
	}
	if fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("paged tags = %v, want %v", got, all)
	}
	if _, _, err := s.Tags(ctx, "p/none", "", 3); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Tags of unknown repo = %v", err)
	}
	for _, r := range []string{"p/c", "p/b", "q/a"} {
		must(t, s.LinkBlob(ctx, store.DefaultStorage, r, digest.FromString(r), 1))
	}
	repos, more, err := s.Repositories(ctx, "p/a", 2)
	if err != nil || fmt.Sprint(repos) != "[p/b p/c]" || !more {
		t.Fatalf("Repositories after p/a = %v, %v, %v", repos, more, err)
	}
}

func testReferrers(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	subject := Image(t, s, "p/a", "subject")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", subject, nil))
	for i, at := range []string{"application/sig", "application/sbom", "application/sig"} {
		r := Image(t, s, "p/a", fmt.Sprint("ref", i))
		r.Subject, r.ArtifactType = subject.Digest, at
		r.Annotations = map[string]string{"n": fmt.Sprint(i)}
		must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", r, nil))
	}
	all, more, err := s.Referrers(ctx, "p/a", subject.Digest, "", "", 10)
	must(t, err)
	if more {
		t.Fatal("more referrers reported than exist")
	}
	sigs, _, err := s.Referrers(ctx, "p/a", subject.Digest, "application/sig", "", 10)
	must(t, err)
	first, more, err := s.Referrers(ctx, "p/a", subject.Digest, "", "", 2)
	must(t, err)
	rest, _, err := s.Referrers(ctx, "p/a", subject.Digest, "", string(first[1].Digest), 2)
	must(t, err)
	if !more || len(first) != 2 || len(rest) != 1 || rest[0].Digest <= first[1].Digest {
		t.Fatalf("paged referrers: %d then %d, more=%v", len(first), len(rest), more)
	}
	if len(all) != 3 || len(sigs) != 2 {
		t.Fatalf("referrers = %d, sigs = %d; want 3, 2", len(all), len(sigs))
	}
	if sigs[0].Annotations["n"] == "" || sigs[0].ArtifactType != "application/sig" || sigs[0].Size == 0 {
		t.Fatalf("descriptor incomplete: %+v", sigs[0])
	}
	other, _, err := s.Referrers(ctx, "p/b", subject.Digest, "", "", 10)
	if err != nil || len(other) != 0 {
		t.Fatalf("referrers leak across repositories: %v, %v", other, err)
	}
}

func testUploads(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateUpload(ctx, store.Upload{ID: "u1", Repository: "p/a", Storage: store.DefaultStorage}, store.UploadLimits{}))
	if _, err := s.Upload(ctx, "p/b", "u1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("upload visible from another repository: %v", err)
	}
	must(t, s.AdvanceUpload(ctx, store.Upload{ID: "u1", Size: 5, HashState: []byte("h5"), DriverState: []byte("multipart 7")}, 0, false))
	if err := s.AdvanceUpload(ctx, store.Upload{ID: "u1", Size: 9}, 0, false); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("stale advance = %v, want ErrUnavailable", err)
	}
	u, err := s.Upload(ctx, "p/a", "u1")
	if err != nil || u.Size != 5 || string(u.HashState) != "h5" || string(u.DriverState) != "multipart 7" {
		t.Fatalf("Upload = %+v, %v", u, err)
	}
	ids, err := s.UploadIDs(ctx)
	if err != nil || !ids["u1"] {
		t.Fatalf("UploadIDs = %v, %v", ids, err)
	}
	b := digest.FromString("committed")
	must(t, s.CommitUpload(ctx, "u1", "p/a", store.Unclaimed(b, 9)))
	if _, err := s.Upload(ctx, "p/a", "u1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("upload survives commit: %v", err)
	}
	must(t, s.CreateUpload(ctx, store.Upload{ID: "old", Repository: "p/a", Storage: store.DefaultStorage}, store.UploadLimits{}))
	must(t, s.AdvanceUpload(ctx, store.Upload{ID: "old", Size: 1, DriverState: []byte("session uri")}, 0, false))
	expired, err := s.ExpireUploads(ctx, time.Now().Add(time.Hour))
	if err != nil || len(expired) != 1 || expired[0].ID != "old" || expired[0].Storage != store.DefaultStorage || string(expired[0].DriverState) != "session uri" {
		t.Fatalf("ExpireUploads = %v, %v", expired, err)
	}
}

func testUploadLimits(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	limits := store.UploadLimits{PerUser: 2, PerProject: 3}
	create := func(id, repo, owner string) error {
		return s.CreateUpload(ctx, store.Upload{ID: id, Repository: repo, Storage: store.DefaultStorage, Owner: owner}, limits)
	}
	must(t, create("a1", "p/x", "alice"))
	must(t, create("a2", "q/x", "alice"))
	err := create("a3", "r/x", "alice")
	var limit *store.UploadLimitError
	if !errors.As(err, &limit) || limit.Scope != "user" || limit.Name != "alice" || !errors.Is(err, errdefs.ErrLimitExceeded) {
		t.Fatalf("third session of alice = %v, want the user cap", err)
	}
	// The project cap counts every user's sessions in the project.
	must(t, create("b1", "p/x", "bob"))
	must(t, create("c1", "p/y", "carol"))
	err = create("c2", "p/z", "carol")
	if !errors.As(err, &limit) || limit.Scope != "project" || limit.Name != "p" {
		t.Fatalf("fourth session in p = %v, want the project cap", err)
	}
	// A refused session left nothing behind; ending one makes room.
	if _, err := s.Upload(ctx, "p/z", "c2"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("refused session exists: %v", err)
	}
	must(t, s.DeleteUpload(ctx, "b1"))
	must(t, create("c2", "p/z", "carol"))
	// No caps: anything goes.
	for i := range 5 {
		must(t, s.CreateUpload(ctx, store.Upload{ID: fmt.Sprint("free", i), Repository: "p/x", Storage: store.DefaultStorage, Owner: "alice"}, store.UploadLimits{}))
	}
}

func testEvents(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m := Image(t, s, "p/a", "ev")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, []string{"x"}))
	must(t, s.DeleteTag(ctx, "p/a", "x"))
	evs, err := s.Events(ctx, 0, 100)
	must(t, err)
	var kinds []string
	for i, e := range evs {
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Fatalf("sequence not increasing: %+v", evs)
		}
		kinds = append(kinds, e.Kind)
	}
	want := "[RepositoryCreated BlobLinked BlobLinked ManifestPushed TagUpdated TagDeleted]"
	if fmt.Sprint(kinds) != want {
		t.Fatalf("events = %v, want %s", kinds, want)
	}
	tail, err := s.Events(ctx, evs[3].Seq, 100)
	if err != nil || len(tail) != 2 {
		t.Fatalf("Events after seq = %v, %v", tail, err)
	}
}

func testConcurrentTagPushes(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	var ms []store.Manifest
	for i := range 8 {
		ms = append(ms, Image(t, s, "p/a", fmt.Sprint("c", i)))
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, []string{"race"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Manifest(ctx, "p/a", "race")
	must(t, err)
	h, err := s.TagHistory(ctx, "p/a", "race")
	must(t, err)
	if len(h) != len(ms) || h[0].Digest != got.Digest {
		t.Fatalf("history has %d entries (want %d), head %s, tag resolves to %s", len(h), len(ms), h[0].Digest, got.Digest)
	}
}

// One writer holds a session's lease at a time: another is refused with
// how long it has been held, until the holder advances with release, gives
// it back, or lets it lapse; a writer whose lease passed to another cannot
// move the session.
func testUploadLeases(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateUpload(ctx, store.Upload{ID: "l1", Repository: "p/a", Storage: store.DefaultStorage}, store.UploadLimits{}))
	soon := time.Now().Add(time.Minute)
	u, err := s.AcquireUpload(ctx, "p/a", "l1", "A", soon)
	if err != nil || u.Lease != "A" || u.Repository != "p/a" || u.Storage != store.DefaultStorage {
		t.Fatalf("acquire: %+v, %v", u, err)
	}
	var held *store.LeaseHeldError
	if _, err := s.AcquireUpload(ctx, "p/a", "l1", "B", soon); !errors.As(err, &held) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("a second writer: %v, want LeaseHeldError", err)
	}
	if _, err := s.AcquireUpload(ctx, "p/other", "l1", "B", soon); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("through another repository: %v, want not found", err)
	}
	if _, err := s.AcquireUpload(ctx, "p/a", "nope", "B", soon); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("an unknown session: %v, want not found", err)
	}
	// Advance and give back in one step; then B may write.
	must(t, s.AdvanceUpload(ctx, store.Upload{ID: "l1", Size: 3, Lease: "A"}, 0, true))
	if _, err := s.AcquireUpload(ctx, "p/a", "l1", "B", soon); err != nil {
		t.Fatalf("after A gave it back: %v", err)
	}
	if err := s.AdvanceUpload(ctx, store.Upload{ID: "l1", Size: 6, Lease: "A"}, 3, false); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("A advancing without the lease: %v, want ErrUnavailable", err)
	}
	if err := s.RenewUpload(ctx, "l1", "A", soon); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("A renewing B's lease: %v", err)
	}
	must(t, s.RenewUpload(ctx, "l1", "B", soon))
	must(t, s.ReleaseUpload(ctx, "l1", "A")) // not A's: nothing happens
	if _, err := s.AcquireUpload(ctx, "p/a", "l1", "C", soon); !errors.As(err, &held) {
		t.Fatalf("a release by a non-holder freed the lease: %v", err)
	}
	must(t, s.ReleaseUpload(ctx, "l1", "B"))
	// A lease its holder never gives back lapses.
	if _, err := s.AcquireUpload(ctx, "p/a", "l1", "C", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if u, err := s.AcquireUpload(ctx, "p/a", "l1", "D", soon); err != nil || u.Size != 3 {
		t.Fatalf("after C's lease lapsed: %+v, %v", u, err)
	}
}
