package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Concurrent writers on the same rows: what SQLite's single writer made
// safe must stay safe where writes run at once (PostgreSQL).

// Pushes that create one repository at once all succeed, and it is
// created once.
func testConcurrentRepositoryCreation(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	const writers = 12
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			if err := s.LinkBlob(ctx, store.DefaultStorage, "p/new", digest.FromString(fmt.Sprint("layer", i)), 5); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	evs, err := s.Events(ctx, 0, 1000)
	must(t, err)
	created, linked := 0, 0
	for _, e := range evs {
		switch store.EventKind(e.Kind) {
		case store.EventRepositoryCreated:
			created++
		case store.EventBlobLinked:
			linked++
		}
	}
	if created != 1 || linked != writers {
		t.Fatalf("%d RepositoryCreated and %d BlobLinked events, want 1 and %d", created, linked, writers)
	}
	repos, _, err := s.Repositories(ctx, "", 10)
	must(t, err)
	if len(repos) != 1 {
		t.Fatalf("repositories = %v", repos)
	}
}

// Creating one object from many writers at once: one wins, the others are
// told it exists.
func testConcurrentObjectCreation(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	const writers = 10
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, err := s.CreateObject(ctx, ConfigMap("team", "same", fmt.Sprintf(`{"n":%d}`, i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	won, exists := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, errdefs.ErrAlreadyExists):
			exists++
		default:
			t.Fatal(err)
		}
	}
	if won != 1 || exists != writers-1 {
		t.Fatalf("%d creates won, %d were told it exists; want 1 and %d", won, exists, writers-1)
	}
}

// Unconditional updates of one object from many writers: none is lost
// (each gets its own resourceVersion, and the last one is what is
// stored).
func testConcurrentUnconditionalUpdates(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	if _, err := s.CreateObject(ctx, ConfigMap("team", "a", `{"n":-1}`)); err != nil {
		t.Fatal(err)
	}
	const writers = 10
	var mu sync.Mutex
	byVersion := map[int64]string{}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			body := fmt.Sprintf(`{"n":%d}`, i)
			o, err := s.UpdateObject(ctx, ConfigMap("team", "a", body), 0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := byVersion[o.ResourceVersion]; dup {
				t.Errorf("two updates (%s, %s) got resourceVersion %d", other, body, o.ResourceVersion)
			}
			byVersion[o.ResourceVersion] = body
		})
	}
	wg.Wait()
	if len(byVersion) != writers {
		t.Fatalf("%d updates recorded, want %d", len(byVersion), writers)
	}
	var last int64
	for v := range byVersion {
		last = max(last, v)
	}
	got, err := s.GetObject(ctx, store.ObjectKey{Resource: "configmaps", Namespace: "team", Name: "a"})
	must(t, err)
	if got.ResourceVersion != last || string(got.Body) != byVersion[last] {
		t.Fatalf("stored %s at %d; the last update was %s at %d", got.Body, got.ResourceVersion, byVersion[last], last)
	}
}

// A reader that follows the log from the last number it saw (seq > n)
// while writers append sees every event exactly once, in order: numbers
// are taken in commit order, so none commits behind the reader's back.
func testEventLogHasNoGapsUnderConcurrentWriters(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	const writers, each = 6, 15
	done := make(chan struct{})
	var seen []store.Event
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var last int64
		finished := false
		for {
			evs, err := s.Events(ctx, last, 50)
			if err != nil {
				t.Error(err)
				return
			}
			for _, e := range evs {
				seen = append(seen, e)
				last = e.Seq
			}
			if len(evs) > 0 {
				continue
			}
			if finished {
				return
			}
			select {
			case <-done:
				finished = true // one more read after the last write
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				var err error
				if i%3 == 0 {
					_, err = s.CreateObject(ctx, ConfigMap("team", fmt.Sprintf("w%d-%d", w, i), `{}`))
				} else {
					err = s.LinkBlob(ctx, store.DefaultStorage, fmt.Sprintf("team/w%d", w), digest.FromString(fmt.Sprint(w, i)), 1)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	<-readerDone
	all, err := s.Events(ctx, 0, 10000)
	must(t, err)
	if len(seen) != len(all) {
		t.Fatalf("the reader saw %d events, the log holds %d", len(seen), len(all))
	}
	for i := range all {
		if seen[i].Seq != all[i].Seq {
			t.Fatalf("event %d: the reader saw seq %d, the log has %d", i, seen[i].Seq, all[i].Seq)
		}
		if i > 0 && all[i].Seq != all[i-1].Seq+1 {
			t.Fatalf("the log skips from %d to %d", all[i-1].Seq, all[i].Seq)
		}
	}
}

// Pushes, tag deletions and manifest deletions on one repository at once
// (on PostgreSQL the registry's writes run concurrently, each locking the
// repository's row): every write succeeds or finds its tag gone, and
// afterwards every tag names a manifest the repository holds.
func testConcurrentPushesAndDeletes(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	const rounds = 40
	var images []store.Manifest
	for i := range 4 {
		images = append(images, Image(t, s, "p/app", fmt.Sprint("i", i)))
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range rounds {
				m := images[(w+i)%len(images)]
				if err := s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/app", m, []string{fmt.Sprint("t", i%5)}); err != nil {
					t.Errorf("push: %v", err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range rounds {
				if err := s.DeleteTag(ctx, "p/app", fmt.Sprint("t", (i+w)%5)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
					t.Errorf("delete tag: %v", err)
					return
				}
				if i%10 == 9 {
					if err := s.DeleteManifest(ctx, "p/app", images[w].Digest); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
						t.Errorf("delete manifest: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	tags, _, err := s.Tags(ctx, "p/app", "", 100)
	must(t, err)
	for _, tag := range tags {
		m, err := s.Manifest(ctx, "p/app", tag)
		if err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
		if _, err := s.Manifest(ctx, "p/app", string(m.Digest)); err != nil {
			t.Fatalf("tag %s names %s, which the repository does not hold: %v", tag, m.Digest, err)
		}
	}
}

// Sessions opened at once by one user count one after the other: the
// cap holds however many race for it.
func testConcurrentUploadLimit(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	const racers = 16
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			err := s.CreateUpload(ctx, store.Upload{ID: fmt.Sprint("race", i), Repository: "p/a", Owner: "alice", Storage: store.DefaultStorage},
				store.UploadLimits{PerUser: 2})
			var limit *store.UploadLimitError
			switch {
			case err == nil:
				created.Add(1)
			case !errors.As(err, &limit):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := created.Load(); n != 2 {
		t.Fatalf("%d sessions opened with a cap of 2 per user", n)
	}
}
