package instance

import (
	"context"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/berth-registry/berth/internal/store"
)

var podName = regexp.MustCompile(`^image-registry-[` + alphabet + `]{10}-[` + alphabet + `]{5}$`)

func TestIdentity(t *testing.T) {
	a, b := New(), New()
	if _, err := uuid.Parse(a.ID); err != nil || a.ID == b.ID {
		t.Errorf("ids %q and %q", a.ID, b.ID)
	}
	for _, id := range []Identity{a, b} {
		if !podName.MatchString(id.Name) {
			t.Errorf("pod name %q is not image-registry-<hash>-<suffix>", id.Name)
		}
	}
	// One build shares the hash; the suffix tells instances apart.
	if a.Name[:len(a.Name)-5] != b.Name[:len(b.Name)-5] || a.Name == b.Name {
		t.Errorf("names of one build: %q and %q", a.Name, b.Name)
	}
	if PodName("v1", "bbbbb") == PodName("v2", "bbbbb") {
		t.Error("two versions share a pod-template hash")
	}
	if a.Host == "" || a.Version == "" || time.Since(a.Started) > time.Minute {
		t.Errorf("identity %+v", a)
	}
}

// Two heartbeaters on one store: both rows are there and ready; the one
// that stops beating goes stale while the other renews its row.
func TestHeartbeaters(t *testing.T) {
	ctx := context.Background()
	meta, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	const every = 20 * time.Millisecond
	ready := func() bool { return true }
	a := &Heartbeater{Store: meta, Self: New(), Listen: ":5000", Ready: ready, Interval: every}
	b := &Heartbeater{Store: meta, Self: New(), Listen: ":5001", Ready: ready, Interval: every}
	for _, h := range []*Heartbeater{a, b} {
		if err := h.Beat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ctxA, stopA := context.WithCancel(ctx)
	ctxB, stopB := context.WithCancel(ctx)
	var wgA, wgB sync.WaitGroup
	wgA.Go(func() { a.Run(ctxA) })
	wgB.Go(func() { b.Run(ctxB) })
	defer func() { stopA(); stopB(); wgA.Wait(); wgB.Wait() }()

	rows := func() map[string]store.Instance {
		list, err := meta.Instances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.Instance{}
		for _, in := range list {
			m[in.ID] = in
		}
		return m
	}
	m := rows()
	if len(m) != 2 || !m[a.Self.ID].ReadyAt(time.Now(), time.Minute) || m[b.Self.ID].Name != b.Self.Name {
		t.Fatalf("rows: %+v", m)
	}
	stopB() // only a beats from now on
	wgB.Wait()
	lastB := rows()[b.Self.ID].Heartbeat
	deadline := time.After(30 * time.Second)
	for {
		changed := meta.Changed()
		m = rows()
		if m[a.Self.ID].Heartbeat.After(lastB.Add(3 * every)) {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("a did not renew its row: %+v", m)
		}
	}
	now := m[a.Self.ID].Heartbeat
	if !m[a.Self.ID].ReadyAt(now, 3*every) || m[b.Self.ID].ReadyAt(now, 3*every) {
		t.Errorf("as of a's last beat, a ready %v, b ready %v (b stopped beating)",
			m[a.Self.ID].ReadyAt(now, 3*every), m[b.Self.ID].ReadyAt(now, 3*every))
	}
	// A graceful stop: not ready at once, then gone.
	stopA()
	wgA.Wait()
	if err := a.Stopping(ctx); err != nil {
		t.Fatal(err)
	}
	if in := rows()[a.Self.ID]; in.Ready || in.Stopping.IsZero() {
		t.Errorf("stopping row: %+v", in)
	}
	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := rows()[a.Self.ID]; ok {
		t.Error("the row outlived Remove")
	}
}
