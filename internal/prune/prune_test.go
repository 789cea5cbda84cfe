package prune_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/prune"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/storetest"
)

// A run walks every repository (past a page of them), reports only those
// it prunes, with totals, and removes nothing unconfirmed or read-only.
func TestRunWalksEveryRepository(t *testing.T) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const repos = 503 // more than a page
	for i := range repos {
		repo := fmt.Sprintf("p/r%03d", i)
		for j := range 2 {
			m := storetest.Image(t, s, repo, fmt.Sprint(i, "-", j))
			if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{"latest"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	later := time.Now().Add(time.Hour)
	p := &prune.Pruner{Store: s, Now: func() time.Time { return later }}
	opts := prune.Options{KeepTagRevisions: 1, KeepYoungerThan: time.Minute}
	dry, err := p.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Repositories) != repos || dry.Revisions != repos || dry.Images != repos || dry.ManifestBytes <= 0 {
		t.Fatalf("dry run: %d repositories, %d revisions, %d images, %d bytes", len(dry.Repositories), dry.Revisions, dry.Images, dry.ManifestBytes)
	}
	p.ReadOnly = func() bool { return true }
	opts.Confirm = true
	if _, err := p.Run(ctx, opts); !errors.Is(err, prune.ErrReadOnly) {
		t.Fatalf("confirmed run while read-only = %v", err)
	}
	p.ReadOnly = nil
	done, err := p.Run(ctx, opts)
	if err != nil || done.Images != repos || done.Revisions != repos {
		t.Fatalf("confirmed run: %+v, %v", done.Images, err)
	}
	again, err := p.Run(ctx, opts)
	if err != nil || len(again.Repositories) != 0 {
		t.Fatalf("second run: %d repositories, %v", len(again.Repositories), err)
	}
	if _, err := p.Run(ctx, prune.Options{KeepTagRevisions: -1}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("negative revisions = %v", err)
	}
}
