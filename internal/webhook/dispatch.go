package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Queue is the store the dispatcher works through: the event log, the
// deliveries queued from it, and the manifests events name.
type Queue interface {
	WebhookCursor(ctx context.Context) (int64, error)
	Events(ctx context.Context, after int64, limit int) ([]store.Event, error)
	QueueDeliveries(ctx context.Context, from, to int64, ds []store.QueuedDelivery) error
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]store.Delivery, time.Time, error)
	FinishAttempt(ctx context.Context, id int64, a store.DeliveryAttempt) error
	WebhookDeliveries(ctx context.Context, uid string, limit int) ([]store.Delivery, int64, error)
	DropDeliveries(ctx context.Context, keep []string) (int64, error)
	QueuedDeliveries(ctx context.Context) (int64, error)
	PendingByWebhook(ctx context.Context) (map[string]int64, error)
	StoredManifestByDigest(ctx context.Context, dgst digest.Digest) (store.StoredManifest, error)
	Changed() <-chan struct{}
}

// Hook is a webhook as the dispatcher uses it: its spec, with the signing
// key read from its Secret.
type Hook struct {
	UID       string
	Kind      string // Webhook or ClusterWebhook
	Namespace string // the project of a Webhook; "" for a ClusterWebhook
	Name      string
	Spec      berthv1.WebhookSpec
	// Key signs payloads; KeyError says why the secretRef could not be
	// read (deliveries fail with it until it can).
	Key      []byte
	KeyError string
}

// Hooks are the webhooks in effect, and where their status goes.
type Hooks interface {
	Webhooks(ctx context.Context) ([]Hook, error)
	SetStatus(ctx context.Context, h Hook, status berthv1.WebhookStatus) error
}

// Counters receives what the dispatcher does, for metrics.
type Counters interface {
	Delivered(result string) // Delivered, Retrying, Failed
	QueueDepth(n int64)
	Lost(n int64)
}

// Dispatcher queues a delivery for each event and matching webhook, and
// delivers them: at least once, retried with Backoff until GiveUpAfter,
// never on a push's path (it reads the log the push appended to).
type Dispatcher struct {
	Queue Queue
	Hooks Hooks
	// Sender is the sender for the destinations allowed now (they are
	// part of the registry's live settings).
	Sender   func() *Sender
	Log      *slog.Logger
	Counters Counters
	// Source is the registry's base URL, the events' source
	// ("https://host:port").
	Source string
	// Poll is the longest wait between looks at the queue (default 2 s):
	// commits wake the dispatcher sooner, and retries fall due on their
	// own.
	Poll time.Duration
	// Concurrency is how many deliveries are sent at once (default 4).
	Concurrency int
	Now         func() time.Time
}

const eventBatch = 500

// maxPendingPerWebhook bounds a webhook's backlog: past it, its events
// are dropped (and counted lost) rather than queued, so that an endpoint
// down for long cannot fill the store.
const maxPendingPerWebhook = 10000

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	poll := d.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	for ctx.Err() == nil {
		changed := d.Queue.Changed()
		next, err := d.Round(ctx)
		if err != nil && ctx.Err() == nil {
			d.Log.Warn("webhook dispatch", "err", err)
		}
		wait := poll
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), 10*time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// Round queues the deliveries of new events and sends those due once,
// and tells when the next retry falls due (zero: none waits).
func (d *Dispatcher) Round(ctx context.Context) (time.Time, error) {
	hooks, err := d.Hooks.Webhooks(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("read webhooks: %w", err)
	}
	if err := d.fanOut(ctx, hooks); err != nil {
		return time.Time{}, err
	}
	byUID := make(map[string]Hook, len(hooks))
	keep := make([]string, 0, len(hooks))
	for _, h := range hooks {
		byUID[h.UID] = h
		keep = append(keep, h.UID)
	}
	if n, err := d.Queue.DropDeliveries(ctx, keep); err != nil {
		return time.Time{}, err
	} else if n > 0 {
		d.Log.Info("dropped the deliveries of deleted webhooks", "deliveries", n)
	}
	next, err := d.deliver(ctx, byUID)
	if err != nil {
		return time.Time{}, err
	}
	if d.Counters != nil {
		n, err := d.Queue.QueuedDeliveries(ctx)
		if err != nil {
			return time.Time{}, err
		}
		d.Counters.QueueDepth(n)
	}
	return next, nil
}

// fanOut reads the events after the cursor and queues their deliveries,
// batch by batch, each in the transaction that moves the cursor past it.
func (d *Dispatcher) fanOut(ctx context.Context, hooks []Hook) error {
	for {
		cursor, err := d.Queue.WebhookCursor(ctx)
		if err != nil {
			return err
		}
		events, err := d.Queue.Events(ctx, cursor, eventBatch)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		if gap := events[0].Seq - cursor - 1; gap > 0 && d.Counters != nil {
			// Events are appended gap-free; a hole means a prune took
			// events the dispatcher had not read (it was stuck).
			d.Counters.Lost(gap)
			d.Log.Warn("webhook events lost to pruning", "events", gap)
		}
		pending, err := d.Queue.PendingByWebhook(ctx)
		if err != nil {
			return err
		}
		var ds []store.QueuedDelivery
		var dropped int64
		for _, ev := range events {
			e, ok, err := d.event(ctx, ev)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			payload, err := Encode(e)
			if err != nil {
				return err
			}
			for _, h := range hooks {
				if !matches(h, e) {
					continue
				}
				if pending[h.UID] >= maxPendingPerWebhook {
					dropped++
					continue
				}
				pending[h.UID]++
				ds = append(ds, store.QueuedDelivery{WebhookUID: h.UID, EventID: e.ID, EventType: e.Type, Subject: e.Subject, Payload: payload})
			}
		}
		if dropped > 0 {
			d.Log.Warn("webhook backlogs full: events dropped", "deliveries", dropped)
			if d.Counters != nil {
				d.Counters.Lost(dropped)
			}
		}
		err = d.Queue.QueueDeliveries(ctx, cursor, events[len(events)-1].Seq, ds)
		if errors.Is(err, errdefs.ErrConflict) {
			continue // another dispatcher queued them
		}
		if err != nil {
			return err
		}
		if len(events) < eventBatch {
			return nil
		}
	}
}

// event is the webhook event ev stands for, if any. A push with a tag is
// sent on its TagUpdated event, which names the tag.
func (d *Dispatcher) event(ctx context.Context, ev store.Event) (Event, bool, error) {
	project, stream, ok := strings.Cut(ev.Repository, "/")
	if !ok {
		return Event{}, false, nil
	}
	e := Event{ID: "berth-" + strconv.FormatInt(ev.Seq, 10), Time: ev.Created,
		Source: d.Source + "/apis/image.openshift.io/v1/namespaces/" + project + "/imagestreams/" + stream,
		Data:   EventData{Project: project, Stream: stream, Tag: ev.Tag, Digest: string(ev.Digest), Actor: ev.Actor}}
	switch store.EventKind(ev.Kind) {
	case store.EventManifestPushed:
		// A push by tag is sent on its TagUpdated event; a manifest linked
		// by tagging or aliasing (a reason) was not pushed.
		if ev.Tag != "" || ev.Reason != "" {
			return Event{}, false, nil
		}
		e.Type = TypeImagePushed
	case store.EventTagUpdated:
		e.Type = TypeImagePushed
		if ev.Reason != store.ReasonPushed {
			e.Type, e.Data.Reason = TypeTagUpdated, string(ev.Reason)
		}
	case store.EventTagDeleted:
		e.Type = TypeTagDeleted
	case store.EventManifestDeleted:
		e.Type, e.Data.Reason = TypeImageDeleted, string(ev.Reason)
	case store.EventImagePulled:
		e.Type = TypeImagePulled
	default:
		return Event{}, false, nil
	}
	e.Subject = Subject(project, stream, e.Data.Tag, e.Data.Digest)
	if e.Data.Digest != "" && e.Type != TypeImageDeleted {
		m, err := d.Queue.StoredManifestByDigest(ctx, digest.Digest(e.Data.Digest))
		switch {
		case err == nil:
			e.Data.MediaType, e.Data.Size = m.MediaType, m.Size
		case !errors.Is(err, errdefs.ErrNotFound):
			return Event{}, false, err
		}
	}
	return e, true, nil
}

// matches says whether h wants e.
func matches(h Hook, e Event) bool {
	if h.Spec.Disabled {
		return false
	}
	if h.Namespace != "" && h.Namespace != e.Data.Project {
		return false
	}
	if len(h.Spec.Events) > 0 && !slices.Contains(h.Spec.Events, FilterOf(e.Type)) {
		return false
	}
	if len(h.Spec.Streams) > 0 {
		name := e.Data.Stream
		if h.Namespace == "" {
			name = e.Data.Project + "/" + e.Data.Stream
		}
		if !slices.Contains(h.Spec.Streams, name) {
			return false
		}
	}
	return true
}

// deliver sends the deliveries due, some at once, records each attempt
// and updates the statuses of the webhooks that had any.
func (d *Dispatcher) deliver(ctx context.Context, hooks map[string]Hook) (time.Time, error) {
	due, next, err := d.Queue.DueDeliveries(ctx, d.now(), 100)
	if err != nil {
		return time.Time{}, err
	}
	if len(due) == 0 {
		return next, nil
	}
	workers := d.Concurrency
	if workers <= 0 {
		workers = 4
	}
	// One delivery at a time per webhook, in order; webhooks side by side.
	byHook := map[string][]store.Delivery{}
	var order []string
	for _, dl := range due {
		if _, ok := byHook[dl.WebhookUID]; !ok {
			order = append(order, dl.WebhookUID)
		}
		byHook[dl.WebhookUID] = append(byHook[dl.WebhookUID], dl)
	}
	sem := make(chan struct{}, workers)
	errs := make(chan error, len(order))
	for _, uid := range order {
		h, ok := hooks[uid]
		if !ok {
			errs <- nil
			continue
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- d.deliverAll(ctx, h, byHook[uid])
		}()
	}
	var all []error
	for range order {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if err := errors.Join(all...); err != nil {
		return time.Time{}, err
	}
	// What the round left queued may be due at once (more than 100 were).
	return d.now(), nil
}

// deliverAll sends h's due deliveries in order, stopping at the first
// that must wait (the endpoint is failing: the rest would fail too), and
// writes h's status.
func (d *Dispatcher) deliverAll(ctx context.Context, h Hook, due []store.Delivery) error {
	for _, dl := range due {
		waits, err := d.attempt(ctx, h, dl)
		if err != nil {
			return err
		}
		if waits {
			break
		}
	}
	return d.writeStatus(ctx, h)
}

// attempt sends dl once and records the outcome; waits is true when it
// is to be retried.
func (d *Dispatcher) attempt(ctx context.Context, h Hook, dl store.Delivery) (bool, error) {
	e, err := Decode(dl.Payload)
	if err != nil {
		return false, d.finish(ctx, dl, store.DeliveryAttempt{State: store.DeliveryFailed, Error: err.Error()})
	}
	var r Result
	if h.KeyError != "" {
		r = Result{Err: errors.New(h.KeyError), Retry: true}
	} else {
		r = d.Sender().Send(ctx, h.Spec.URL, h.Key, e)
	}
	if ctx.Err() != nil {
		return true, nil // stopping: the attempt does not count
	}
	a := store.DeliveryAttempt{Status: r.Status, State: store.DeliveryDelivered}
	if r.Err != nil {
		a.Error = r.Err.Error()
		a.State = store.DeliveryFailed
		if r.Retry {
			wait := max(Backoff(dl.Attempts, nil), r.RetryAfter)
			if at := d.now().Add(wait); at.Sub(dl.Created) < GiveUpAfter {
				a.State, a.NextAt = store.DeliveryQueued, at
			}
		}
	}
	return a.State == store.DeliveryQueued, d.finish(ctx, dl, a)
}

func (d *Dispatcher) finish(ctx context.Context, dl store.Delivery, a store.DeliveryAttempt) error {
	if d.Counters != nil {
		result := a.State
		if result == store.DeliveryQueued {
			result = "Retrying"
		}
		d.Counters.Delivered(result)
	}
	return d.Queue.FinishAttempt(ctx, dl.ID, a)
}

// maxShownDeliveries is how many attempts a webhook's status lists.
const maxShownDeliveries = 10

// writeStatus sets h's status from its deliveries.
func (d *Dispatcher) writeStatus(ctx context.Context, h Hook) error {
	recent, pending, err := d.Queue.WebhookDeliveries(ctx, h.UID, maxShownDeliveries)
	if err != nil {
		return err
	}
	st := berthv1.WebhookStatus{Pending: pending}
	succeeded := false // seen, newest first: the failures before it are not consecutive
	for _, dl := range recent {
		result := dl.State
		if result == store.DeliveryQueued {
			result = "Retrying"
		}
		at := metav1.NewTime(dl.Updated.Truncate(time.Second))
		st.Deliveries = append(st.Deliveries, berthv1.WebhookDelivery{ID: dl.EventID, Type: dl.EventType, Subject: dl.Subject,
			Time: at, Attempt: int64(dl.Attempts), Status: dl.LastStatus, Error: dl.LastError, Result: result})
		if result == store.DeliveryDelivered {
			succeeded = true
			if st.LastSuccessTime == nil {
				st.LastSuccessTime = &at
			}
			continue
		}
		if st.LastFailureTime == nil {
			st.LastFailureTime = &at
		}
		if !succeeded {
			st.ConsecutiveFailures += int64(dl.Attempts)
		}
	}
	return d.Hooks.SetStatus(ctx, h, st)
}
