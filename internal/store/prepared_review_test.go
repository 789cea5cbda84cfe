package store

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"testing"
)

// Review: RepositoriesIn (/v2/_catalog) and ProjectsBoundTo build their
// query with one placeholder per project or group, and go through
// s.query, so every distinct list length is prepared and kept for the
// life of the process (on each read connection it runs on). A user bound
// to many projects (a self-provisioner creates them at will) calling the
// catalog as the count grows fills the 256 slots with IN-lists, each of
// which SQLite compiles to code proportional to its length; from then on
// every fixed query not yet prepared runs unprepared for good.
func TestReviewDynamicQueriesFillThePreparedStatementCache(t *testing.T) {
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
	if _, err := s.BlobSize(ctx, "p0/app", digest.Digest("sha256:"+fmt.Sprintf("%064d", 0))); err == nil {
		t.Fatal("unexpected blob")
	}
	s.prepared.mu.RLock()
	_, blobSizePrepared := s.prepared.m[`
SELECT b.size FROM repositories r
JOIN repository_blobs rb ON rb.repository_id = r.id
JOIN blobs b ON b.digest = rb.digest
WHERE r.name = ? AND rb.digest = ?`]
	s.prepared.mu.RUnlock()
	if n >= maxStatements || !blobSizePrepared {
		t.Errorf("after catalog listings over 1..%d projects the statement cache holds %d of %d slots and a pull's blob lookup prepared = %v; "+
			"queries built with a variable number of placeholders should not be kept", len(projects), n, maxStatements, blobSizePrepared)
	}
}
