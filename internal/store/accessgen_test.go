package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// Between the commit of an access change and the move of the generation
// after it, a reader could see the new rows and still find what it cached
// from the old ones: meanwhile every AccessGeneration is a number no cache
// entry is stored under twice; after it, the generation has moved and
// stands still again. A commit that fails leaves the generation usable.
func TestAccessGenerationWhileCommitting(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.AccessGeneration()
	if again := s.AccessGeneration(); again != before {
		t.Fatalf("the generation moved with nothing committed: %d, %d", before, again)
	}
	var seen []int64
	var committing func(*sql.Tx)
	w := s.writer.(*groupWriter)
	committing, w.committing = w.committing, func(tx *sql.Tx) {
		committing(tx)
		seen = append(seen, s.AccessGeneration(), s.AccessGeneration())
	}
	if err := s.tx(ctx, func(tx *sql.Tx) error {
		s.touchAccess(tx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The write ran on the writer's goroutine; tx returned after it.
	if len(seen) != 2 || seen[0] == seen[1] || seen[0] == before || seen[1] == before {
		t.Errorf("generations while committing: %v (before %d), want two numbers never seen", seen, before)
	}
	after := s.AccessGeneration()
	if after == before || s.AccessGeneration() != after {
		t.Errorf("after the commit the generation is %d then %d (before %d): want it moved and standing", after, s.AccessGeneration(), before)
	}
	if s.accessCommitting.Load() != 0 {
		t.Errorf("%d commits still counted as under way", s.accessCommitting.Load())
	}
}
