package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// openTestSQLite is a new SQLite store, closed when t ends.
func openTestSQLite(t *testing.T) *Store {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pullAudit(t *testing.T, s *Store) []string {
	t.Helper()
	page, err := s.AuditLog(context.Background(), AuditQuery{Action: AuditPull})
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, e := range page.Entries {
		rows = append(rows, e.Actor+" "+e.Project+" "+e.Name+" "+e.Detail)
	}
	return rows
}

// A flood of pulls of distinct images fills the log: the pulls past it
// are still audited, counted by user, and the log asks for a flush.
func TestPullLogOverflowIsAudited(t *testing.T) {
	ctx := context.Background()
	s := openTestSQLite(t)
	log := s.NewPullLog(time.Hour)
	log.limit = 3
	for i := range 3 {
		log.Pulled("mal/flood", digest.FromString(fmt.Sprint(i)), "mallory")
	}
	select {
	case <-log.full:
		t.Fatal("the log asked for a flush before it was full")
	default:
	}
	log.Pulled("mal/x", digest.FromString("x"), "mallory")
	log.Pulled("team/app", digest.FromString("y"), "mallory")
	log.Pulled("team/app", digest.FromString("y"), "bob")
	select {
	case <-log.full:
	default:
		t.Fatal("a full log did not ask for a flush")
	}
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows := strings.Join(pullAudit(t, s), "\n")
	for _, want := range []string{"mallory  (not itemized) 2 pulls while the pull log was full",
		"bob team (not itemized) 1 pulls while the pull log was full", "mallory mal mal/flood 1 pull"} {
		if !strings.Contains(rows, want) {
			t.Errorf("audit rows lack %q:\n%s", want, rows)
		}
	}
	if log.Dropped() != 3 {
		t.Errorf("Dropped() = %d, want 3", log.Dropped())
	}
}

// A flush that fails puts what it took back: the next one writes it.
func TestPullLogFailedFlushKeepsThePulls(t *testing.T) {
	ctx := context.Background()
	s := openTestSQLite(t)
	if err := s.LinkBlob(ctx, DefaultStorage, "team/app", digest.FromString("layer"), 1); err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("m")
	log := s.NewPullLog(time.Hour)
	for range 5 {
		log.Pulled("team/app", d, "bob")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := log.Flush(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("flush with a cancelled context = %v", err)
	}
	log.Pulled("team/app", d, "bob")
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pulls, err := s.PullsOf(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if pulls[d].Pulls != 6 {
		t.Errorf("pulls after a failed flush and a good one: %+v, want 6", pulls[d])
	}
	if rows := pullAudit(t, s); len(rows) != 1 || rows[0] != "bob team team/app 6 pulls" {
		t.Errorf("audit rows: %q", rows)
	}
}

// Pulls of a repository deleted and pushed again before the flush count
// toward neither; each user's audit row bears their own last pull's time.
func TestPullLogAcrossARecreatedRepository(t *testing.T) {
	ctx := context.Background()
	s := openTestSQLite(t)
	d := digest.FromString("m")
	log := s.NewPullLog(time.Hour)
	log.pulledAt("reused/app", d, "alice", 2, time.Now().Add(-time.Minute))
	if err := s.LinkBlob(ctx, DefaultStorage, "reused/app", digest.FromString("layer"), 1); err != nil {
		t.Fatal(err) // the repository as it is now, made after alice's pulls
	}
	bobAt := time.Now()
	log.pulledAt("reused/app", d, "bob", 1, bobAt)
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if pulls, err := s.PullsOf(ctx, "reused/app"); err != nil || pulls[d].Pulls != 0 {
		t.Errorf("pulls of the new repository: %+v %v, want none credited (the batch began before it)", pulls, err)
	}
	page, err := s.AuditLog(ctx, AuditQuery{Action: AuditPull, Since: bobAt.Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Actor != "bob" {
		t.Errorf("pull rows since bob's pull: %+v, want bob's alone", page.Entries)
	}
}

// A flush of a full log writes every image, so the next pulls find room;
// a failed flush puts back no more than the log holds.
func TestPullLogStaysBounded(t *testing.T) {
	ctx := context.Background()
	s := openTestSQLite(t)
	log := s.NewPullLog(time.Hour)
	log.limit = 3
	for i := range 3 {
		log.Pulled("p/a", digest.FromString(fmt.Sprint(i)), "bob")
	}
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(log.pending); n != 0 {
		t.Fatalf("a full log's flush left %d images pending", n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for round := range 4 {
		for i := range 3 {
			log.Pulled("p/a", digest.FromString(fmt.Sprint("new", round, i)), "bob")
		}
		_ = log.Flush(cancelled)
		if n := len(log.pending); n > log.limit {
			t.Fatalf("after failed flush %d: %d images pending, past the bound %d", round, n, log.limit)
		}
	}
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Every pull is in an audit row: itemized, or counted by user.
	rows := pullAudit(t, s)
	var sum int64
	for _, r := range rows {
		fields := strings.Fields(r)
		for i, f := range fields {
			if (f == "pull" || f == "pulls") && i > 0 {
				var n int64
				if _, err := fmt.Sscanf(fields[i-1], "%d", &n); err == nil {
					sum += n
				}
			}
		}
	}
	if sum != 15 {
		t.Errorf("pulls audited: %d, want the 15 made:\n%s", sum, strings.Join(rows, "\n"))
	}
}
