package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/webhook"
)

// storedHooks are the Webhook and ClusterWebhook objects of the store, as
// the webhook dispatcher reads them (webhook.Hooks).
type storedHooks struct{ meta *store.Store }

var webhookResources = []struct{ resource, kind string }{
	{"webhooks", "Webhook"},
	{"clusterwebhooks", "ClusterWebhook"},
}

// Webhooks lists every webhook, with its signing key read from its
// Secret.
func (h storedHooks) Webhooks(ctx context.Context) ([]webhook.Hook, error) {
	var out []webhook.Hook
	for _, r := range webhookResources {
		q := store.ObjectQuery{Group: berthv1.GroupName, Resource: r.resource, Limit: 500}
		for {
			objs, more, _, err := h.meta.ListObjects(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", r.resource, err)
			}
			for _, o := range objs {
				var w berthv1.Webhook
				if err := json.Unmarshal(o.Body, &w); err != nil {
					return nil, fmt.Errorf("decode %s: %w", o.ObjectKey, err)
				}
				hook := webhook.Hook{UID: o.UID, Kind: r.kind, Namespace: o.Namespace, Name: o.Name, Spec: w.Spec}
				if ref := w.Spec.SecretRef; ref != nil {
					hook.Key, hook.KeyError = h.signingKey(ctx, o.Namespace, *ref)
				}
				out = append(out, hook)
			}
			if !more || len(objs) == 0 {
				break
			}
			last := objs[len(objs)-1]
			q.After = store.ObjectCursor{Namespace: last.Namespace, Name: last.Name}
		}
	}
	return out, nil
}

// signingKey reads the key a secretRef names; a Webhook's Secret is in its
// own project whatever the reference says.
func (h storedHooks) signingKey(ctx context.Context, ns string, ref berthv1.SecretKeySelector) ([]byte, string) {
	if ns == "" {
		ns = ref.Namespace
	}
	o, err := h.meta.GetObject(ctx, store.ObjectKey{Resource: "secrets", Namespace: ns, Name: ref.Name})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Sprintf("the signing key's secret %s/%s does not exist", ns, ref.Name)
	}
	if err != nil {
		return nil, fmt.Sprintf("read the signing key's secret %s/%s: %v", ns, ref.Name, err)
	}
	var sec corev1.Secret
	if err := json.Unmarshal(o.Body, &sec); err != nil {
		return nil, fmt.Sprintf("decode the signing key's secret %s/%s: %v", ns, ref.Name, err)
	}
	key, ok := sec.Data[ref.Key]
	if !ok {
		if v, ok := sec.StringData[ref.Key]; ok {
			key = []byte(v)
		}
	}
	if len(key) == 0 {
		return nil, fmt.Sprintf("the signing key's secret %s/%s has no key %q", ns, ref.Name, ref.Key)
	}
	return key, ""
}

// SetStatus writes a webhook's status, unless it is unchanged or the
// webhook went (or was re-created) meanwhile.
func (h storedHooks) SetStatus(ctx context.Context, hook webhook.Hook, status berthv1.WebhookStatus) error {
	resource := "webhooks"
	if hook.Namespace == "" {
		resource = "clusterwebhooks"
	}
	key := store.ObjectKey{Group: berthv1.GroupName, Resource: resource, Namespace: hook.Namespace, Name: hook.Name}
	o, err := h.meta.GetObject(ctx, key)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if o.UID != hook.UID {
		return nil
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(o.Body, &body); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	st, err := json.Marshal(status)
	if err != nil {
		return err
	}
	if string(body["status"]) == string(st) {
		return nil
	}
	body["status"] = st
	if o.Body, err = json.Marshal(body); err != nil {
		return err
	}
	if _, err := h.meta.UpdateObject(ctx, o, o.ResourceVersion); err != nil {
		if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrNotFound) {
			return nil // changed meanwhile: the next round writes
		}
		return fmt.Errorf("write the status of %s: %w", key, err)
	}
	return nil
}

// webhookSenders keeps the webhook sender of the destinations the
// settings in effect allow, built again when they change (a sender holds
// its connections, so it is not built per delivery).
type webhookSenders struct {
	settings *settings.Holder
	client   *http.Client
	log      *slog.Logger

	mu     sync.Mutex
	key    string
	sender *webhook.Sender
}

func (w *webhookSenders) current() *webhook.Sender {
	allowed := w.settings.Load().WebhookDestinations
	key := strings.Join(allowed, "\n")
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sender != nil && w.key == key {
		return w.sender
	}
	dest, err := webhook.NewDestinations(allowed)
	if err != nil {
		// The operator refuses such a list; should one get through,
		// public destinations only is the safe reading.
		w.log.Warn("webhook allowed destinations", "err", err)
		dest = nil
	}
	w.key, w.sender = key, webhook.NewSender(w.client, dest)
	return w.sender
}
