package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/limiter"
	"github.com/berth-registry/berth/internal/store"
)

// maxWatch bounds one watch request; clients reconnect from the last
// resourceVersion they saw.
const maxWatch = 30 * time.Minute

// watchChange is one event a watch shows: ADDED, MODIFIED or DELETED,
// with the object as the change left it (as it was, for DELETED).
type watchChange[T metav1.Object] struct {
	Type   string
	Object T
}

// watchFeed is what a watchable kind gives serveWatch: what the watch was
// authorized on, how to read the kind, and how to print one object.
type watchFeed[T metav1.Object] struct {
	// resource and project are what the watch verb was authorized on; the
	// check is made again whenever access may have changed.
	resource auth.Resource
	project  string
	// current lists the objects there are now and the resourceVersion the
	// list is as of: a watch without a resourceVersion starts with them.
	current func(ctx context.Context) ([]T, int64, error)
	// changes reads what changed after resourceVersion after, oldest first,
	// a batch at a time. upTo is where the next read starts (it passes
	// changes the kind does not show); full says more may follow at once.
	// A history that no longer reaches back to after is errdefs.ErrGone.
	changes func(ctx context.Context, after int64) (changes []watchChange[T], upTo int64, full bool, err error)
	// table renders one object as a one-row Table (kubectl get -w).
	table func(T) metav1.Table
}

// serveWatch streams what feed reads after the request's resourceVersion:
// a JSON watch event per line, flushed as it happens. Without a
// resourceVersion (or "0") it first sends the current objects as ADDED,
// as Kubernetes does. The watch ends at timeoutSeconds (at most
// maxWatch) or server shutdown; with an ERROR event carrying a 410
// Expired Status when the history it needs was pruned (the client lists
// again); and with the refusal a new request would get as soon as the
// caller's credentials or rights no longer allow it.
//
// The handler has authorized the watch already; q selects what is sent.
func serveWatch[T metav1.Object](s *Server, w http.ResponseWriter, r *http.Request, q listQuery, feed watchFeed[T]) error {
	ctx := r.Context()
	timeout, err := watchTimeout(r)
	if err != nil {
		return err
	}
	access := &watchAccess{s: s, r: r, resource: feed.resource, project: feed.project, checked: -1}
	defer access.stop()
	var after int64
	var initial []T
	switch v := r.URL.Query().Get("resourceVersion"); v {
	case "", "0":
		if initial, after, err = feed.current(ctx); err != nil {
			return err
		}
	default:
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return badRequest("resourceVersion %q is not one this server gave", v)
		}
	}
	// After reading, before sending: what was read after an access change
	// is sent only if the caller still has access.
	if err := access.check(ctx); err != nil {
		return err
	}
	out := &watchWriter[T]{enc: json.NewEncoder(w)}
	out.flusher, _ = w.(http.Flusher)
	if wantsTable(r) {
		out.table = feed.table
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	for _, obj := range initial {
		if q.selects(obj) && out.send("ADDED", obj) != nil {
			return nil // the client went away
		}
	}
	out.flush()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		// Taken before reading, so no wake-up is lost.
		changed, accessChanged := s.opts.Store.Changed(), s.opts.Store.AccessChanged()
		changes, upTo, full, err := feed.changes(ctx, after)
		if err == nil {
			err = access.check(ctx)
		}
		if err != nil {
			if ctx.Err() == nil {
				out.fail(s.statusOf(r, err))
			}
			return nil
		}
		for _, c := range changes {
			if q.selects(c.Object) && out.send(c.Type, c.Object) != nil {
				return nil
			}
		}
		after = upTo
		out.flush()
		if full {
			continue
		}
		// Caught up (the initial list, and the history after the
		// resourceVersion asked for, are sent): from here on the watch
		// holds a connection, not the registry's work.
		limiter.Detach(ctx)
		select {
		case <-changed:
		case <-accessChanged:
		case <-access.expired():
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return nil
		case <-s.opts.Stopping:
			return nil
		}
	}
}

// watchTimeout is how long the request may watch: timeoutSeconds, at
// most maxWatch.
func watchTimeout(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("timeoutSeconds")
	if v == "" {
		return maxWatch, nil
	}
	secs, err := strconv.Atoi(v)
	if err != nil || secs < 0 {
		return 0, badRequest("timeoutSeconds %q is not a count of seconds", v)
	}
	if secs == 0 {
		return maxWatch, nil
	}
	return min(time.Duration(secs)*time.Second, maxWatch), nil
}

// watchWriter writes watch events: the object, or with as=Table a one-row
// Table.
type watchWriter[T metav1.Object] struct {
	enc     *json.Encoder
	flusher http.Flusher
	table   func(T) metav1.Table // nil: the object itself
}

func (ww *watchWriter[T]) send(typ string, obj T) error {
	var payload any = obj
	if ww.table != nil {
		payload = ww.table(obj)
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	if err := ww.enc.Encode(metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}}); err != nil {
		return err
	}
	ww.flush()
	return nil
}

// fail ends the stream with an ERROR event carrying se as a Status.
func (ww *watchWriter[T]) fail(se *StatusError) {
	_ = ww.enc.Encode(metav1.WatchEvent{Type: "ERROR", Object: runtime.RawExtension{Raw: mustJSON(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Code: int32(se.Code), Reason: metav1.StatusReason(se.Reason), Message: se.Message})}})
	ww.flush()
}

func (ww *watchWriter[T]) flush() {
	if ww.flusher != nil {
		ww.flusher.Flush()
	}
}

// watchAccess makes an open watch answer to the same checks as a new
// request: its credentials are authenticated again and the watch verb is
// authorized again whenever the store's access generation has moved (a
// binding, group, token, user or project changed), when the token it was
// opened with expires, and, for a password, as often as the password cache
// lets a new request skip the check. Without that, a watch opened before an unbind
// or a revocation would go on showing new objects, Secrets included.
type watchAccess struct {
	s        *Server
	r        *http.Request
	resource auth.Resource
	project  string
	// checked is the access generation the last check passed at; -1
	// before the first.
	checked int64
	// expires is when the credentials must be checked again (a token's
	// expiry, a password's next check; zero for none), and expiry fires
	// then.
	expires time.Time
	expiry  *time.Timer
}

// check returns the refusal a new request would get now (a *StatusError),
// nil when the caller may still watch.
func (a *watchAccess) check(ctx context.Context) error {
	// Read before checking: a change committed during the check moves it
	// again, and the next check runs.
	gen := a.s.opts.Store.AccessGeneration()
	if gen == a.checked && (a.expires.IsZero() || time.Now().Before(a.expires)) {
		return nil
	}
	authenticate := a.s.opts.Authenticator.Request
	if a.checked >= 0 {
		// Accepted before: a password is asked of its provider, not of the
		// cache, and a refusal is no failed login to throttle.
		authenticate = a.s.opts.Authenticator.Recheck
	}
	// The watch's request read the caches' generations when it began: a
	// check reads them anew, or it would judge by caches of then.
	ctx = store.WithGenerationMemo(ctx)
	id, err := authenticate(a.r.WithContext(ctx))
	var throttled *auth.ThrottledError
	switch {
	case errors.As(err, &throttled):
		return &StatusError{http.StatusTooManyRequests, "TooManyRequests", err.Error()}
	case errors.Is(err, auth.ErrUnauthenticated):
		return &StatusError{http.StatusUnauthorized, "Unauthorized", err.Error()}
	case err != nil:
		return fmt.Errorf("authenticate the watch of %s again: %w", a.resource.Resource, err)
	}
	if err := a.s.authorizeUser(ctx, id.User, "watch", a.resource, a.project); err != nil {
		return err
	}
	a.checked = gen
	expires := id.Expires
	if id.TokenID == "" && id.Name != auth.AnonymousUser {
		// A password: its identity provider can stop accepting it (an
		// htpasswd file edited) without the access generation moving, so
		// it is checked again as often as a new request would check it.
		expires = time.Now().Add(a.s.opts.Authenticator.PasswordRecheck())
	}
	a.watchExpiry(expires)
	return nil
}

// watchExpiry arms the timer that checks again when the token expires.
func (a *watchAccess) watchExpiry(expires time.Time) {
	a.expires = expires
	if expires.IsZero() {
		a.stop()
		return
	}
	wait := time.Until(expires)
	if wait <= 0 {
		// The authenticator's clock still accepts the token: ask again in
		// a moment rather than at once, over and over.
		wait = time.Second
	}
	if a.expiry == nil {
		a.expiry = time.NewTimer(wait)
		return
	}
	a.expiry.Reset(wait)
}

// expired fires when the token expires; never without one.
func (a *watchAccess) expired() <-chan time.Time {
	if a.expiry == nil || a.expires.IsZero() {
		return nil
	}
	return a.expiry.C
}

func (a *watchAccess) stop() {
	if a.expiry != nil {
		a.expiry.Stop()
	}
}
