package webhook

import (
	"context"
	"strings"
	"testing"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/store"
	"github.com/opencontainers/go-digest"
)

// A webhook gets its project's events only (a ClusterWebhook every
// project's), of the kinds and streams it asks for, and none while
// disabled.
func TestMatches(t *testing.T) {
	push := Event{Type: TypeImagePushed, Data: EventData{Project: "team", Stream: "app"}}
	for _, c := range []struct {
		name string
		hook Hook
		want bool
	}{
		{"project", Hook{Namespace: "team"}, true},
		{"another project", Hook{Namespace: "other"}, false},
		{"cluster", Hook{}, true},
		{"disabled", Hook{Namespace: "team", Spec: berthv1.WebhookSpec{Disabled: true}}, false},
		{"push filter", Hook{Namespace: "team", Spec: berthv1.WebhookSpec{Events: []string{"push"}}}, true},
		{"tag filter", Hook{Namespace: "team", Spec: berthv1.WebhookSpec{Events: []string{"tag", "delete"}}}, false},
		{"stream", Hook{Namespace: "team", Spec: berthv1.WebhookSpec{Streams: []string{"app"}}}, true},
		{"other stream", Hook{Namespace: "team", Spec: berthv1.WebhookSpec{Streams: []string{"web"}}}, false},
		{"cluster stream", Hook{Spec: berthv1.WebhookSpec{Streams: []string{"team/app"}}}, true},
		{"cluster bare stream", Hook{Spec: berthv1.WebhookSpec{Streams: []string{"app"}}}, false},
	} {
		if got := matches(c.hook, push); got != c.want {
			t.Errorf("%s: matches = %v, want %v", c.name, got, c.want)
		}
	}
}

// An image pruning removed is sent as a deletion that says so.
func TestPrunedImageIsADeletionWithItsReason(t *testing.T) {
	d := &Dispatcher{Source: "https://registry.example"}
	e, ok, err := d.event(context.Background(), store.Event{Seq: 7, Kind: string(store.EventManifestDeleted),
		Repository: "team/app", Digest: digest.Digest("sha256:" + strings.Repeat("a", 64)), Reason: store.ReasonPruned})
	if err != nil || !ok || e.Type != TypeImageDeleted || e.Data.Reason != "Pruned" {
		t.Fatalf("event = %+v, %v, %v", e, ok, err)
	}
	e, ok, err = d.event(context.Background(), store.Event{Seq: 8, Kind: string(store.EventManifestDeleted),
		Repository: "team/app", Digest: digest.Digest("sha256:" + strings.Repeat("b", 64))})
	if err != nil || !ok || e.Type != TypeImageDeleted || e.Data.Reason != "" {
		t.Fatalf("a user's deletion = %+v, %v, %v", e, ok, err)
	}
}
