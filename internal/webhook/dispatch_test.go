package webhook

import (
	"testing"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
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
