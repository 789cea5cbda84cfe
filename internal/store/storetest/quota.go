package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/quota"
	"github.com/berth-registry/berth/internal/store"
)

// quotaObject is a ResourceQuota of project with hard as its JSON bounds.
func quotaObject(project, name, hard string) store.Object {
	return store.Object{
		ObjectKey: store.ObjectKey{Resource: quota.ResourceQuotas, Namespace: project, Name: name}, UID: "uid-" + name,
		Body: fmt.Appendf(nil, `{"kind":"ResourceQuota","apiVersion":"v1","metadata":{"name":%q,"namespace":%q},"spec":{"hard":%s}}`, name, project, hard),
	}
}

// limitRangeObject bounds each image of project to max bytes.
func limitRangeObject(project, name string, max int64) store.Object {
	return store.Object{
		ObjectKey: store.ObjectKey{Resource: quota.LimitRanges, Namespace: project, Name: name}, UID: "uid-" + name,
		Body: fmt.Appendf(nil, `{"kind":"LimitRange","apiVersion":"v1","metadata":{"name":%q},"spec":{"limits":[{"type":"openshift.io/Image","max":{"storage":"%d"}}]}}`, name, max),
	}
}

func testQuotas(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p", "free")
	s.SetLimitsPolicy(quota.Policy())
	ctx := context.Background()
	_, err := s.CreateObject(ctx, quotaObject("p", "streams", `{"openshift.io/imagestreams":"2"}`))
	must(t, err)
	// A looser quota of the same resource changes nothing: each must hold.
	_, err = s.CreateObject(ctx, quotaObject("p", "loose", `{"openshift.io/imagestreams":"10","berth.io/storage":"1Mi"}`))
	must(t, err)
	_, err = s.CreateObject(ctx, quotaObject("p", "bytes", `{"berth.io/storage":"1000"}`))
	must(t, err)

	blob := func(seed string) digest.Digest { return digest.FromString(seed) }
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", blob("one"), 600))
	// The same bytes in a second repository cost nothing.
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/b", blob("one"), 600))

	err = s.LinkBlob(ctx, store.DefaultStorage, "p/c", blob("two"), 1)
	var exceeded *store.QuotaExceededError
	if !errors.As(err, &exceeded) || !errors.Is(err, errdefs.ErrQuotaExceeded) {
		t.Fatalf("a third stream with a quota of 2: %v", err)
	}
	want := "exceeded quota: streams, requested: openshift.io/imagestreams=1, used: openshift.io/imagestreams=2, limited: openshift.io/imagestreams=2"
	if exceeded.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", exceeded.Error(), want)
	}
	if _, err := s.RepositoryByName(ctx, "p/c"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the refused stream exists: %v", err)
	}

	err = s.LinkBlob(ctx, store.DefaultStorage, "p/a", blob("three"), 401)
	if !errors.As(err, &exceeded) {
		t.Fatalf("601 bytes past a quota of 1000: %v", err)
	}
	want = "exceeded quota: bytes, requested: berth.io/storage=401, used: berth.io/storage=600, limited: berth.io/storage=1000"
	if exceeded.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", exceeded.Error(), want)
	}
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", blob("three"), 400)) // exactly full
	// Full: no more upload sessions, before any byte is sent.
	err = s.CreateUpload(ctx, store.Upload{ID: "u1", Repository: "p/a", Owner: "alice", Storage: store.DefaultStorage}, store.UploadLimits{})
	if !errors.As(err, &exceeded) || exceeded.Error() != "exceeded quota: bytes, used: berth.io/storage=1000, limited: berth.io/storage=1000: the project is full" {
		t.Fatalf("an upload into a full project: %v", err)
	}
	u, err := s.ProjectUsage(ctx, "p")
	must(t, err)
	if u != (store.Usage{ImageStreams: 2, StorageBytes: 1000}) {
		t.Fatalf("usage %+v, want 2 streams and 1000 bytes", u)
	}
	// Full: a manifest's own bytes count too.
	m := store.Manifest{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte("{}"),
		References: []store.Reference{{Digest: blob("one"), Size: 600, Required: true}}}
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, []string{"v1"}); !errors.As(err, &exceeded) {
		t.Fatalf("a manifest into a full project: %v", err)
	}
	// Deleting makes room.
	must(t, s.UnlinkBlob(ctx, "p/a", blob("three")))
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", m, []string{"v1"}))
	// Another project is not bounded by p's quotas.
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "free/x", blob("big"), 1<<40))
	for _, r := range []string{"free/y", "free/z"} {
		must(t, s.LinkBlob(ctx, store.DefaultStorage, r, blob("big"), 1<<40))
	}
	// Tagging an image into a full project links its bytes there: refused.
	big := store.Manifest{Digest: digest.FromString("big"), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte("{}"),
		References: []store.Reference{{Digest: blob("big"), Size: 1 << 40, Required: true}}}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "free/x", big, nil))
	if err := s.TagImage(ctx, "p/a", "big", "free/x", big.Digest, store.ReasonTagged); !errors.Is(err, errdefs.ErrQuotaExceeded) {
		t.Fatalf("tag 1Ti into a project of 1000 bytes: %v", err)
	}
}

func testImageSizeLimit(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p")
	s.SetLimitsPolicy(quota.Policy())
	ctx := context.Background()
	_, err := s.CreateObject(ctx, limitRangeObject("p", "images", 30))
	must(t, err)
	_, err = s.CreateObject(ctx, limitRangeObject("p", "looser", 1000))
	must(t, err)
	fits := Image(t, s, "p/a", "fits") // 10 + 20 bytes
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", fits, []string{"ok"}))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/a", digest.FromString("extra"), 1))
	big := fits
	big.Payload = []byte(`{"big":true}`)
	big.Digest = digest.FromBytes(big.Payload)
	big.References = append(big.References, store.Reference{Digest: digest.FromString("extra"), Size: 1, Required: true})
	err = s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", big, []string{"big"})
	var tooLarge *store.ImageTooLargeError
	if !errors.As(err, &tooLarge) || !errors.Is(err, errdefs.ErrQuotaExceeded) {
		t.Fatalf("an image of 31 bytes with a limit of 30: %v", err)
	}
	want := fmt.Sprintf("image %s of size 31 exceeds the maximum of limit range images (openshift.io/Image max): storage=30", big.Digest)
	if tooLarge.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", tooLarge.Error(), want)
	}
	// An index is not an image: its children were checked.
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", indexOf(fits), []string{"index"}))

	// Declared sizes that wrap around past the largest int64 do not add
	// up to little: such an image is too large.
	wrap := fits
	wrap.Payload = []byte(`{"wrap":true}`)
	wrap.Digest = digest.FromBytes(wrap.Payload)
	wrap.References = append(append([]store.Reference{}, fits.References...),
		store.Reference{Digest: digest.FromString("foreign1"), Size: math.MaxInt64},
		store.Reference{Digest: digest.FromString("foreign2"), Size: math.MaxInt64 - 29})
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/a", wrap, nil); !errors.As(err, &tooLarge) || tooLarge.Size != math.MaxInt64 {
		t.Fatalf("foreign layers whose sizes wrap to 0: %v", err)
	}

	// A tag from another project and an import are bound too.
	WithProjects(t, s, "free")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "free/x", digest.FromString("extra"), 1))
	for _, r := range fits.References {
		must(t, s.LinkBlob(ctx, store.DefaultStorage, "free/x", r.Digest, r.Size))
	}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "free/x", big, []string{"big"}))
	if err := s.TagImage(ctx, "p/a", "tagged", "free/x", big.Digest, store.ReasonTagged); !errors.As(err, &tooLarge) {
		t.Fatalf("a 31-byte image tagged into p: %v", err)
	}
	imported := big
	imported.Payload = []byte(`{"imported":true}`)
	imported.Digest = digest.FromBytes(imported.Payload)
	if err := s.RecordImport(ctx, "p/imported", "v1", store.Imported{Manifests: []store.Manifest{imported}, Source: "example.com/x"}); !errors.As(err, &tooLarge) {
		t.Fatalf("a 31-byte image imported into p: %v", err)
	}
	if _, err := s.RepositoryByName(ctx, "p/imported"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the refused import left its stream: %v", err)
	}
}

// testConcurrentQuota: pushes into one project at once, each fitting
// alone, never overrun its quota together.
func testConcurrentQuota(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p")
	s.SetLimitsPolicy(quota.Policy())
	ctx := context.Background()
	_, err := s.CreateObject(ctx, quotaObject("p", "q", `{"berth.io/storage":"1000","openshift.io/imagestreams":"5"}`))
	must(t, err)
	const racers = 16
	var linked, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			// Eight streams asked for, five allowed; 16 blobs of 100
			// bytes, ten allowed.
			err := s.LinkBlob(ctx, store.DefaultStorage, fmt.Sprintf("p/r%d", i%8), digest.FromString(fmt.Sprint("blob", i)), 100)
			switch {
			case err == nil:
				linked.Add(1)
			case errors.Is(err, errdefs.ErrQuotaExceeded):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	u, err := s.ProjectUsage(ctx, "p")
	must(t, err)
	if u.StorageBytes > 1000 || u.ImageStreams > 5 || u.StorageBytes != 100*linked.Load() {
		t.Fatalf("usage %+v after %d links (%d refused): over the quota", u, linked.Load(), refused.Load())
	}
	if linked.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d linked, %d refused: the race did not reach the bound", linked.Load(), refused.Load())
	}
}

// testProjectUsageFollowsLinks: what a project holds follows every way
// content enters and leaves it: links, unlinks, manifest and repository
// deletion, tags from another project, the collector, project deletion.
func testProjectUsageFollowsLinks(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p", "q")
	ctx := context.Background()
	usage := func(want int64) {
		t.Helper()
		u, err := s.ProjectUsage(ctx, "p")
		must(t, err)
		if u.StorageBytes != want {
			t.Fatalf("p holds %d bytes, want %d", u.StorageBytes, want)
		}
	}
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/one", a, 100))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/one", b, 200))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/two", a, 100)) // counted once
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "p/two", c, 50))
	usage(350)
	m := store.Manifest{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte(`{"m":1}`),
		References: []store.Reference{{Digest: b, Size: 200, Required: true}}}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/one", m, nil))
	usage(357)
	must(t, s.UnlinkBlob(ctx, "p/one", a)) // p/two still holds it
	usage(357)
	must(t, s.UnlinkBlob(ctx, "p/two", c))
	usage(307)
	must(t, s.DeleteManifest(ctx, "p/one", m.Digest))
	usage(300)
	_, err := s.DeleteRepository(ctx, "p/two")
	must(t, err)
	usage(200)
	// An image tagged in from q links its blobs and manifest into p.
	img := Image(t, s, "q/src", "tagged") // 10 + 20 bytes
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "q/src", img, []string{"v1"}))
	must(t, s.TagImage(ctx, "p/one", "v1", "q/src", img.Digest, store.ReasonTagged))
	usage(200 + 30 + int64(len(img.Payload)))
	// The collector unlinks b, which no manifest references.
	gcCollect(t, s, gcEverything())
	usage(30 + int64(len(img.Payload)))
	_, err = s.DeleteProjectAndRepositories(ctx, "p")
	must(t, err)
	WithProjects(t, s, "p")
	usage(0)
	if u, err := s.ProjectUsage(ctx, "q"); err != nil || u.StorageBytes != 30+int64(len(img.Payload)) {
		t.Fatalf("q: %+v %v", u, err)
	}
}
