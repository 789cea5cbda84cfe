package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Queries built with one placeholder per project or group (the catalog's
// RepositoriesIn, ProjectsBoundTo) are not kept prepared: a user bound to
// ever more projects listing the catalog would otherwise fill the cache
// with a statement per count, and fixed queries run after that would stay
// unprepared.
func TestDynamicQueriesStayOutOfTheStatementCache(t *testing.T) {
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	projects := make([]string, 0, maxStatements+10)
	for i := range maxStatements + 10 {
		projects = append(projects, fmt.Sprintf("p%d", i))
		// What the catalog asks as the caller's bound projects grow.
		if _, _, err := s.RepositoriesIn(ctx, projects, "", 100); err != nil {
			t.Fatal(err)
		}
	}
	s.prepared.mu.RLock()
	n := len(s.prepared.m)
	s.prepared.mu.RUnlock()
	// A fixed query first run now (a pull's blob lookup) is not prepared.
	if _, err := s.BlobSize(ctx, Only(DefaultStorage), "p0/app", digest.Digest("sha256:"+fmt.Sprintf("%064d", 0))); err == nil {
		t.Fatal("unexpected blob")
	}
	s.prepared.mu.RLock()
	_, blobSizePrepared := s.prepared.m[locateBlobQuery(1)]
	s.prepared.mu.RUnlock()
	if n >= maxStatements || !blobSizePrepared {
		t.Errorf("after catalog listings over 1..%d projects the statement cache holds %d of %d slots and a pull's blob lookup prepared = %v; "+
			"queries built with a variable number of placeholders should not be kept", len(projects), n, maxStatements, blobSizePrepared)
	}
}
