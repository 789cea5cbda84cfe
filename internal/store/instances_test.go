package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// Two processes on one database (two Stores on one file, as two berth
// serve instances would share PostgreSQL): each renews its own row, each
// sees both, and one that stopped renewing is not ready.
func TestInstancesHeartbeats(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	a, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// b's last heartbeat was a minute ago: its process stopped renewing.
	b.now = func() time.Time { return time.Now().Add(-time.Minute) }

	started := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	ia := Instance{ID: "id-a", Name: "image-registry-a-aaaaa", Host: "h1", Version: "v1", Listen: ":5000", Ready: true, Started: started}
	ib := Instance{ID: "id-b", Name: "image-registry-b-bbbbb", Host: "h2", Version: "v1", Listen: ":5001", Ready: true, Started: started.Add(time.Second)}
	for _, beat := range []struct {
		s  *Store
		in Instance
	}{{a, ia}, {b, ib}, {a, ia}} {
		if err := beat.s.Heartbeat(ctx, beat.in); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{a, b} {
		list, err := s.Instances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != "id-a" || list[1].ID != "id-b" {
			t.Fatalf("instances = %+v", list)
		}
		now := time.Now()
		if got := list[0]; !got.ReadyAt(now, 30*time.Second) || got.Name != ia.Name || got.Host != "h1" ||
			got.Listen != ":5000" || !got.Started.Equal(started) || got.Restarts != 0 {
			t.Errorf("the renewed instance: %+v", got)
		}
		if got := list[1]; got.ReadyAt(now, 30*time.Second) || got.Live(now, 30*time.Second) {
			t.Errorf("an instance silent for a minute is ready or live: %+v", got)
		}
	}

	// A graceful shutdown says so, then removes the row.
	ia.Stopping, ia.Ready = time.Now(), false
	if err := a.Heartbeat(ctx, ia); err != nil {
		t.Fatal(err)
	}
	list, _ := b.Instances(ctx)
	if list[0].Stopping.IsZero() || list[0].Live(time.Now(), 30*time.Second) {
		t.Errorf("a stopping instance: %+v", list[0])
	}
	if err := a.RemoveInstance(ctx, "id-a"); err != nil {
		t.Fatal(err)
	}
	// The janitor forgets rows long dead.
	n, err := a.DeleteStaleInstances(ctx, time.Now().Add(-30*time.Second))
	if err != nil || n != 1 {
		t.Fatalf("DeleteStaleInstances = %d, %v", n, err)
	}
	if list, _ := a.Instances(ctx); len(list) != 0 {
		t.Errorf("left: %+v", list)
	}
}

func TestPing(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Ping(ctx); err == nil {
		t.Error("a closed store answers a ping")
	}
}
