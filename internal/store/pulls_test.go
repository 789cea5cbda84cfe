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
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
