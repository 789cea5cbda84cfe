package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/quota"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/pgtest"
	"github.com/berth-registry/berth/internal/store/storetest"
)

// In a project with a quota, a tag of a many-layered image from another
// project (which touches each layer's row) runs beside mounts of the same
// layers in reverse (each holding its layer's row): the quota lock comes
// before any row lock in both, so PostgreSQL finds no deadlock to break.
// With the lock taken where the quota is first checked instead, these 8
// rounds had 98 writes run again (the review's 20 rounds: 415, and a
// write failed past its retries).
func TestQuotaLockComesFirst(t *testing.T) {
	dsn := pgtest.DSN(t)
	s, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	storetest.WithProjects(t, s, "p", "free")
	s.SetLimitsPolicy(quota.Policy())
	ctx := context.Background()
	if _, err := s.CreateObject(ctx, store.Object{ObjectKey: store.ObjectKey{Resource: quota.ResourceQuotas, Namespace: "p", Name: "q"},
		UID: "q", Body: []byte(`{"spec":{"hard":{"berth.io/storage":"1Ti"}}}`)}); err != nil {
		t.Fatal(err)
	}
	const layers = 20
	var refs []store.Reference
	var ds []digest.Digest
	for i := range layers {
		d := digest.FromString(fmt.Sprint("layer", i))
		ds = append(ds, d)
		if err := s.LinkBlob(ctx, store.DefaultStorage, "free/src", d, 10); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, store.Reference{Digest: d, Size: 10, Required: true})
	}
	payload := []byte(`{"layers":20}`)
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload, References: refs}
	if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "free/src", m, []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	before := s.WriteRetries()
	for round := range 8 {
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := s.TagImage(ctx, fmt.Sprintf("p/t%d", round), "v1", "free/src", m.Digest, store.ReasonTagged); err != nil {
				t.Error(err)
			}
		})
		for i := layers - 1; i >= 0; i-- {
			wg.Go(func() {
				if _, err := s.MountBlob(ctx, store.Only(store.DefaultStorage), fmt.Sprintf("p/m%d-%d", round, i), "free/src", ds[i]); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := s.WriteRetries() - before; n != 0 {
		t.Fatalf("%d writes were run again: PostgreSQL broke deadlocks", n)
	}
}

// Pruning one repository of a project while an import links the same
// manifests into another takes their rows of project_contents in one
// order (digest order), so neither waits for the other in a cycle. Linked
// in the order the import names them, these rounds had writes run again
// (the review's 150 rounds: 44).
func TestPruneAndImportShareTheProjectsRowsInOrder(t *testing.T) {
	s := openPostgres(t)
	ctx := context.Background()
	var ms []store.Manifest
	for i := range 2 {
		payload := fmt.Appendf(nil, `{"n":%d}`, i)
		ms = append(ms, store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload})
	}
	if ms[0].Digest < ms[1].Digest {
		ms[0], ms[1] = ms[1], ms[0] // the import names the higher digest first
	}
	before := s.WriteRetries()
	for round := range 40 {
		pruned, imported := fmt.Sprintf("p/a%d", round), fmt.Sprintf("p/b%d", round)
		for _, m := range ms {
			if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), pruned, m, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.TouchRepository(ctx, imported); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := s.PruneRepository(ctx, pruned, store.PrunePolicy{KeepYoungerThan: time.Now().Add(time.Hour)}, true); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := s.RecordImport(ctx, imported, "", store.Imported{Manifests: ms, Source: "upstream.example/x"}); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
	}
	if n := s.WriteRetries() - before; n != 0 {
		t.Fatalf("%d writes were run again: PostgreSQL broke deadlocks", n)
	}
}

// Instances that start together on an empty database migrate it once:
// the others wait for the migration lock and find the schema current.
func TestPostgresInstancesStartingTogetherMigrateOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	stores := make([]*store.Store, 4)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = store.OpenPostgres(ctx, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	// Each sees the others' writes: one schema, not four.
	if err := stores[0].LinkBlob(ctx, store.DefaultStorage, "p/a", digest.FromString("x"), 1); err != nil {
		t.Fatal(err)
	}
	if u, err := stores[3].ProjectUsage(ctx, "p"); err != nil || u.StorageBytes != 1 {
		t.Fatalf("another instance: %+v %v", u, err)
	}
}
