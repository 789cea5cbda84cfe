// Package reqlog carries what a request's handlers learn about it to the
// access log, which wraps them and writes its line once they return: who
// the caller turned out to be and, when the log is at debug level, the
// route, the access decision and the time spent in the metadata store.
//
// The access log puts an Entry in the request's context; the
// authentication middleware, the authorizer, the registry and the API
// server fill it in. Whether the log is at debug level is asked once per
// request: below it, an Entry records the user only, and the calls that
// would record the rest return at once.
package reqlog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Answers to an access decision, as the debug line names them.
const (
	Allowed = "allowed"
	// Hidden: answered as if the object did not exist (the caller may not
	// see its project).
	Hidden = "hidden"
	// Denied: 403.
	Denied = "denied"
	// Unauthorized: 401, credentials missing or refused.
	Unauthorized = "unauthorized"
	// Throttled: 429, too many failed logins.
	Throttled = "throttled"
	// Failed: no decision could be made (the store failed).
	Failed = "failed"
)

// Entry is what the handlers of one request tell the access log. Its
// methods may be called on a nil Entry (a request the access log did not
// wrap), and from any goroutine.
type Entry struct {
	debug bool

	mu   sync.Mutex
	user string
	// Below, recorded at debug level only.
	route      string
	checks     int
	lastCheck  Check
	decided    Check // the check that led to access
	access     string
	storeCalls int
	storeTime  time.Duration
}

// Check is one question put to the authorizer.
type Check struct {
	Verb, Resource, Project string
}

// New returns an Entry; debug says whether the log will show the details.
func New(debug bool) *Entry { return &Entry{debug: debug} }

type entryKey struct{}

// NewContext returns ctx carrying e.
func NewContext(ctx context.Context, e *Entry) context.Context {
	return context.WithValue(ctx, entryKey{}, e)
}

// FromContext returns the Entry of ctx's request, nil if none.
func FromContext(ctx context.Context) *Entry {
	e, _ := ctx.Value(entryKey{}).(*Entry)
	return e
}

// Debug reports whether details are recorded.
func (e *Entry) Debug() bool { return e != nil && e.debug }

// SetUser records who made the request (never a secret: a user name).
func (e *Entry) SetUser(name string) {
	if e == nil {
		return
	}
	e.mu.Lock()
	e.user = name
	e.mu.Unlock()
}

// User is who made the request: "-" when authentication failed or did not
// run.
func (e *Entry) User() string {
	if e == nil {
		return "-"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.user == "" {
		return "-"
	}
	return e.user
}

// SetRoute records the route that served the request: a /v2 route pattern
// or the API's method and path pattern.
func (e *Entry) SetRoute(route string) {
	if !e.Debug() {
		return
	}
	e.mu.Lock()
	e.route = route
	e.mu.Unlock()
}

// NoteCheck records a question put to the authorizer.
func (e *Entry) NoteCheck(c Check) {
	if !e.Debug() {
		return
	}
	e.mu.Lock()
	e.checks++
	e.lastCheck = c
	e.mu.Unlock()
}

// Decide records the answer access got, with the last check as the one
// that led to it. A refusal stands: a later Allowed (a check made after
// the answer, by the handler) does not replace it, a later refusal does
// (a 403 turned into the 404 of a hidden project).
func (e *Entry) Decide(access string) {
	if !e.Debug() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if access == Allowed && e.access != "" && e.access != Allowed {
		return
	}
	e.access, e.decided = access, e.lastCheck
}

// StoreTimer measures one call to the metadata store; the zero value
// measures nothing.
type StoreTimer struct {
	e     *Entry
	start time.Time
}

// StartStore starts measuring a metadata store call of ctx's request:
//
//	defer reqlog.StartStore(ctx).Stop()
func StartStore(ctx context.Context) StoreTimer {
	if e := FromContext(ctx); e.Debug() {
		return StoreTimer{e, time.Now()}
	}
	return StoreTimer{}
}

// Stop adds the call's time to its request.
func (t StoreTimer) Stop() {
	if t.e == nil {
		return
	}
	d := time.Since(t.start)
	t.e.mu.Lock()
	t.e.storeCalls++
	t.e.storeTime += d
	t.e.mu.Unlock()
}

// DebugAttrs are the details recorded, for the access log's debug line.
func (e *Entry) DebugAttrs() []slog.Attr {
	user := e.User()
	e.mu.Lock()
	defer e.mu.Unlock()
	attrs := []slog.Attr{slog.String("route", e.route), slog.String("user", user)}
	if e.access != "" {
		if e.decided != (Check{}) {
			attrs = append(attrs, slog.String("verb", e.decided.Verb), slog.String("resource", e.decided.Resource),
				slog.String("project", e.decided.Project))
		}
		attrs = append(attrs, slog.Bool("allowed", e.access == Allowed), slog.String("access", e.access))
	}
	return append(attrs, slog.Int("checks", e.checks),
		slog.Int("store_calls", e.storeCalls), slog.Duration("store", e.storeTime))
}
