package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Deliveries are queued with the cursor's move, once: a second dispatcher
// that read the same events finds the cursor moved and queues nothing.
// Attempts are recorded, and each webhook keeps its newest finished
// deliveries only.
func testWebhookDeliveries(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	in := store.Only(store.DefaultStorage)
	m := Image(t, s, "p/a", "before")
	must(t, s.PutManifest(ctx, in, "p/a", m, []string{"v0"}))
	cursor, err := s.WebhookCursor(ctx)
	must(t, err)
	if latest, _ := s.LatestResourceVersion(ctx); cursor != latest {
		t.Fatalf("a new cursor starts at %d, want the newest event %d (no replay)", cursor, latest)
	}
	m2 := Image(t, s, "p/a", "after")
	must(t, s.PutManifest(store.WithActor(ctx, "alice"), in, "p/a", m2, []string{"v1"}))
	events, err := s.Events(ctx, cursor, 100)
	must(t, err)
	var tagged *store.Event
	for i, e := range events {
		if e.Kind == string(store.EventTagUpdated) {
			tagged = &events[i]
		}
	}
	if tagged == nil || tagged.Actor != "alice" || tagged.Tag != "v1" || tagged.Reason != store.ReasonPushed || tagged.Created.IsZero() {
		t.Fatalf("the push's TagUpdated event: %+v", tagged)
	}
	to := events[len(events)-1].Seq
	queued := []store.QueuedDelivery{{WebhookUID: "hook-1", EventID: "e1", EventType: "t", Subject: "p/a:v1", Payload: []byte("{}")}}
	must(t, s.QueueDeliveries(ctx, cursor, to, queued))
	if err := s.QueueDeliveries(ctx, cursor, to, queued); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("queueing from a moved cursor = %v, want a conflict", err)
	}
	now := time.Now()
	due, _, err := s.DueDeliveries(ctx, now.Add(time.Second), 10)
	must(t, err)
	if len(due) != 1 || due[0].EventID != "e1" || due[0].State != store.DeliveryQueued {
		t.Fatalf("due: %+v", due)
	}
	retryAt := now.Add(time.Hour)
	must(t, s.FinishAttempt(ctx, due[0].ID, store.DeliveryAttempt{Status: 503, Error: "down", State: store.DeliveryQueued, NextAt: retryAt}))
	due, next, err := s.DueDeliveries(ctx, now.Add(time.Second), 10)
	must(t, err)
	if len(due) != 0 || next.Sub(retryAt).Abs() > time.Millisecond {
		t.Fatalf("after a failed attempt: due %+v, next %v (want %v)", due, next, retryAt)
	}
	recent, pending, err := s.WebhookDeliveries(ctx, "hook-1", 10)
	must(t, err)
	if pending != 1 || len(recent) != 1 || recent[0].Attempts != 1 || recent[0].LastStatus != 503 {
		t.Fatalf("status: %+v, pending %d", recent, pending)
	}

	// Finished deliveries beyond the kept few go, newest kept.
	cursor = to
	for i := range 15 {
		var ds []store.QueuedDelivery
		ds = append(ds, store.QueuedDelivery{WebhookUID: "hook-2", EventID: "x" + string(rune('a'+i)), EventType: "t", Subject: "s", Payload: []byte("{}")})
		must(t, s.QueueDeliveries(ctx, cursor, cursor, ds))
	}
	// A listing takes a few of each webhook's: one with a backlog does
	// not crowd out the others.
	due, _, err = s.DueDeliveries(ctx, time.Now().Add(time.Second), 100)
	must(t, err)
	perHook := map[string]int{}
	for _, d := range due {
		perHook[d.WebhookUID]++
	}
	if perHook["hook-2"] != 5 {
		t.Fatalf("a listing took %d of hook-2's 15 due deliveries, want 5", perHook["hook-2"])
	}
	for range 10 {
		due, _, err = s.DueDeliveries(ctx, time.Now().Add(time.Second), 100)
		must(t, err)
		for _, d := range due {
			if d.WebhookUID == "hook-2" {
				must(t, s.FinishAttempt(ctx, d.ID, store.DeliveryAttempt{Status: 200, State: store.DeliveryDelivered}))
			}
		}
	}
	if counts, err := s.PendingByWebhook(ctx); err != nil || counts["hook-2"] != 0 || counts["hook-1"] != 1 {
		t.Fatalf("pending by webhook: %v %v", counts, err)
	}
	recent, pending, err = s.WebhookDeliveries(ctx, "hook-2", 100)
	must(t, err)
	if len(recent) != 10 || pending != 0 {
		t.Fatalf("hook-2 keeps %d finished deliveries (pending %d), want 10", len(recent), pending)
	}
	if n, err := s.DropDeliveries(ctx, []string{"hook-2"}); err != nil || n != 1 {
		t.Fatalf("dropping the deliveries of deleted webhooks: %d, %v", n, err)
	}
	if n, err := s.QueuedDeliveries(ctx); err != nil || n != 0 {
		t.Fatalf("queued after the drop: %d, %v", n, err)
	}
}

// Pulls are appended in batches, each repository and image once per
// interval, with who pulled.
func testPullLog(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	log := s.NewPullLog(time.Hour)
	before, _ := s.LatestResourceVersion(ctx)
	d := digest.FromString("m")
	log.Pulled("p/a", d, "bob")
	log.Pulled("p/a", d, "carol")
	log.Pulled("p/b", d, "")
	must(t, log.Flush(ctx))
	log.Pulled("p/a", d, "dave") // within the interval: not again
	must(t, log.Flush(ctx))
	events, err := s.Events(ctx, before, 100)
	must(t, err)
	got := map[string]string{}
	for _, e := range events {
		if e.Kind != string(store.EventImagePulled) || e.Digest != d {
			t.Fatalf("unexpected event %+v", e)
		}
		got[e.Repository] = e.Actor
	}
	if len(events) != 2 || got["p/a"] != "carol" || got["p/b"] != "" {
		t.Fatalf("pull events: %+v", events)
	}
}
