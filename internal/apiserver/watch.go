package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

// watchFeed is what a watchable kind gives serveWatch: how to read the
// kind, and how to print one object.
type watchFeed[T metav1.Object] struct {
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
// maxWatch) or server shutdown, and with an ERROR event carrying a 410
// Expired Status when the history it needs was pruned (the client lists
// again).
//
// The handler has authorized the watch already; q selects what is sent.
func serveWatch[T metav1.Object](s *Server, w http.ResponseWriter, r *http.Request, q listQuery, feed watchFeed[T]) error {
	ctx := r.Context()
	timeout, err := watchTimeout(r)
	if err != nil {
		return err
	}
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
		changed := s.opts.Store.Changed()
		changes, upTo, full, err := feed.changes(ctx, after)
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
		select {
		case <-changed:
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
