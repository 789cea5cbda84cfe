package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/quota"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/storetest"
)

func BenchmarkLinkBlob(b *testing.B) {
	s := openSQLite(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if err := s.LinkBlob(ctx, store.DefaultStorage, "p/bench", digest.FromString(fmt.Sprint(i)), 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAdvanceUpload(b *testing.B) {
	s := openSQLite(b)
	ctx := context.Background()
	if err := s.CreateUpload(ctx, store.Upload{ID: "u", Repository: "p/bench", Storage: store.DefaultStorage}, store.UploadLimits{}); err != nil {
		b.Fatal(err)
	}
	state := make([]byte, 108)
	for i := int64(0); b.Loop(); i++ {
		if err := s.AdvanceUpload(ctx, store.Upload{ID: "u", Size: i + 1, HashState: state}, i, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkManifestByTag(b *testing.B) {
	s := openSQLite(b)
	ctx := context.Background()
	cfg := digest.FromString("cfg")
	if err := s.LinkBlob(ctx, store.DefaultStorage, "p/bench", cfg, 1); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"schemaVersion":2}`)
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Payload: payload, References: []store.Reference{{Digest: cfg, Size: 1, Required: true}}}
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/bench", m, []string{"latest"}); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Manifest(ctx, "p/bench", "latest"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBlobSize is the pull path's presence check (HEAD and GET of a
// blob): answered from the size cache.
func BenchmarkBlobSize(b *testing.B) {
	s := openSQLite(b)
	ctx := context.Background()
	dgst := digest.FromString("layer")
	if err := s.LinkBlob(ctx, store.DefaultStorage, "p/bench", dgst, 1); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/bench", dgst); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBlobSizeAbsent is the check a client makes before pushing a
// layer the registry does not hold: a miss is not cached, so each one is
// the SQL query.
func BenchmarkBlobSizeAbsent(b *testing.B) {
	s := openSQLite(b)
	ctx := context.Background()
	if err := s.LinkBlob(ctx, store.DefaultStorage, "p/bench", digest.FromString("other"), 1); err != nil {
		b.Fatal(err)
	}
	dgst := digest.FromString("absent")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "p/bench", dgst); err == nil {
				b.Error("an absent blob was found")
				return
			}
		}
	})
}

// BenchmarkCommitUpload is the end of a chunked push: a session is opened
// and committed as a new blob.
func BenchmarkCommitUpload(b *testing.B) {
	s := openSQLite(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("u%d", i)
		if err := s.CreateUpload(ctx, store.Upload{ID: id, Repository: "p/bench", Storage: store.DefaultStorage}, store.UploadLimits{}); err != nil {
			b.Fatal(err)
		}
		if err := s.CommitUpload(ctx, id, "p/bench", store.Unclaimed(digest.FromString(id), 1)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinkBlobQuota is a blob link new to a project that holds
// `held` blobs, without quota objects, with a stream quota only, and with
// a storage quota (whose check sums the project's distinct blobs).
func BenchmarkLinkBlobQuota(b *testing.B) {
	for _, held := range []int{1000, 10000} {
		for _, c := range []struct{ name, hard string }{
			{"none", ""},
			{"streams", `{"openshift.io/imagestreams":"1000"}`},
			{"storage", `{"berth.io/storage":"1Ti"}`},
		} {
			b.Run(fmt.Sprintf("held=%d/quota=%s", held, c.name), func(b *testing.B) {
				s := storetest.WithProjects(b, openSQLite(b), "p")
				s.SetLimitsPolicy(quota.Policy())
				ctx := context.Background()
				if c.hard != "" {
					if _, err := s.CreateObject(ctx, store.Object{ObjectKey: store.ObjectKey{Resource: quota.ResourceQuotas, Namespace: "p", Name: "q"},
						UID: "q", Body: []byte(`{"spec":{"hard":` + c.hard + `}}`)}); err != nil {
						b.Fatal(err)
					}
				}
				for i := range held {
					if err := s.LinkBlob(ctx, store.DefaultStorage, fmt.Sprintf("p/r%d", i%10), digest.FromString(fmt.Sprint("held", i)), 1<<20); err != nil {
						b.Fatal(err)
					}
				}
				for i := 0; b.Loop(); i++ {
					if err := s.LinkBlob(ctx, store.DefaultStorage, "p/r0", digest.FromString(fmt.Sprint(i)), 1<<20); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkListTags reads one page of 50 of a stream's 10,000 tags in
// each order (what the console's tag table asks), against
// BenchmarkStreamTags10k, reading the whole stream (what a listing built
// in memory read for every page).
func BenchmarkListTags(b *testing.B) {
	s := openSQLite(b)
	seedTags(b, s, "p/many", 10000)
	ctx := context.Background()
	for _, sort := range []store.TagSort{store.TagsByName, store.TagsBySize, store.TagsByPushed, store.TagsByPulls} {
		b.Run(string(sort), func(b *testing.B) {
			for b.Loop() {
				page, err := s.ListTags(ctx, store.TagQuery{Project: "p", Repository: "p/many", Sort: sort, Descending: true, Offset: 5000, Limit: 50})
				if err != nil || len(page.Rows) != 50 || page.Total != 10000 {
					b.Fatalf("page: %d rows of %d, %v", len(page.Rows), page.Total, err)
				}
			}
		})
	}
	b.Run("search", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.ListTags(ctx, store.TagQuery{Project: "p", Search: "t09", Sort: store.TagsBySize, Limit: 50}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkStreamTags10k(b *testing.B) {
	s := openSQLite(b)
	seedTags(b, s, "p/many", 10000)
	ctx := context.Background()
	for b.Loop() {
		tags, err := s.StreamTags(ctx, "p/many")
		if err != nil || len(tags) != 10000 {
			b.Fatalf("%d tags, %v", len(tags), err)
		}
	}
}

// seedTags stores n tags of repo, each its own image of one layer.
func seedTags(b *testing.B, s *store.Store, repo string, n int) {
	b.Helper()
	ctx := context.Background()
	for i := range n {
		layer := digest.FromString(fmt.Sprint("layer", i))
		if err := s.LinkBlob(ctx, store.DefaultStorage, repo, layer, int64(i*37%n+1)); err != nil {
			b.Fatal(err)
		}
		payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"n":%d}`, i))
		m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
			Payload: payload, References: []store.Reference{{Digest: layer, Size: int64(i*37%n + 1), Required: true}}}
		if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{fmt.Sprintf("t%05d", i)}); err != nil {
			b.Fatal(err)
		}
	}
}
