package operator_test

import (
	"context"
	"slices"
	"testing"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/settings"
)

// spec.imageStreams.tagHistoryLimit and spec.webhooks.allowedDestinations
// reach the settings snapshot while the operator runs: no restart.
func TestTagHistoryAndWebhookDestinationsApplyLive(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.op.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return f.settings.Load().Generation > 0 })
	if s := f.settings.Load(); s.TagHistoryLimit != 0 || s.WebhookDestinations != nil {
		t.Fatalf("bootstrap settings: tagHistoryLimit %d, webhookDestinations %q", s.TagHistoryLimit, s.WebhookDestinations)
	}

	f.write(func(s *imageregistryv1.ConfigSpec) { s.ImageStreams.TagHistoryLimit = 50 })
	waitFor(t, func() bool { return f.settings.Load().TagHistoryLimit == 50 })

	allowed := []string{"127.0.0.1", "10.0.0.0/8", "hooks.internal.example"}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Webhooks.AllowedDestinations = allowed })
	waitFor(t, func() bool { return slices.Equal(f.settings.Load().WebhookDestinations, allowed) })
	if got := f.settings.Load().TagHistoryLimit; got != 50 {
		t.Errorf("tagHistoryLimit became %d with a change of another field", got)
	}

	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.ImageStreams.TagHistoryLimit = 0
		s.Webhooks.AllowedDestinations = nil
	})
	waitFor(t, func() bool {
		s := f.settings.Load()
		return s.TagHistoryLimit == 0 && len(s.WebhookDestinations) == 0
	})
}

// A Config stored around the API with a bad value leaves the last good
// settings in effect and says why.
func TestInvalidTagHistoryOrDestinationKeepsSettings(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.ImageStreams.TagHistoryLimit = 10
		s.Webhooks.AllowedDestinations = []string{"192.168.0.0/16"}
	})
	f.reconcile()
	for _, bad := range []func(*imageregistryv1.ConfigSpec){
		func(s *imageregistryv1.ConfigSpec) { s.ImageStreams.TagHistoryLimit = 5000 },
		func(s *imageregistryv1.ConfigSpec) { s.Webhooks.AllowedDestinations = []string{"192.168.0.0/99"} },
	} {
		f.write(func(s *imageregistryv1.ConfigSpec) {
			s.ImageStreams.TagHistoryLimit = 10
			s.Webhooks.AllowedDestinations = []string{"192.168.0.0/16"}
			bad(s)
		})
		f.reconcile()
		s := f.settings.Load()
		if s.TagHistoryLimit != 10 || !slices.Equal(s.WebhookDestinations, []string{"192.168.0.0/16"}) {
			t.Errorf("an invalid Config changed the settings: tagHistoryLimit %d, webhookDestinations %q", s.TagHistoryLimit, s.WebhookDestinations)
		}
		f.expectCondition("Degraded", "True", "VerificationFailed", "spec.")
	}
}

// Snapshots that differ in these fields alone are different snapshots:
// swap, which compares fingerprints, puts the new one in effect even when
// nothing else (the generation included) tells them apart.
func TestFingerprintCoversTagHistoryAndDestinations(t *testing.T) {
	base := settings.Settings{Generation: 3, TagHistoryLimit: 25, WebhookDestinations: []string{"127.0.0.1"}}
	same := base
	same.WebhookDestinations = []string{"127.0.0.1"}
	if operator.Fingerprint(&base) != operator.Fingerprint(&same) {
		t.Errorf("equal snapshots have different fingerprints")
	}
	for name, change := range map[string]func(*settings.Settings){
		"tagHistoryLimit":          func(s *settings.Settings) { s.TagHistoryLimit = 26 },
		"a destination added":      func(s *settings.Settings) { s.WebhookDestinations = []string{"127.0.0.1", "::1"} },
		"a destination changed":    func(s *settings.Settings) { s.WebhookDestinations = []string{"127.0.0.2"} },
		"the destinations emptied": func(s *settings.Settings) { s.WebhookDestinations = nil },
	} {
		next := base
		change(&next)
		if operator.Fingerprint(&base) == operator.Fingerprint(&next) {
			t.Errorf("%s: the fingerprint did not change", name)
		}
	}
}
