// Package settings is the registry's runtime configuration: an immutable
// snapshot that the operator builds from the Config resource and swaps
// atomically, and that every request reads from its context. A request
// keeps the snapshot it started with, so a change never lands half-way
// through one; nothing on the hot path reads the object store for it.
package settings

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/storage"
)

// Settings is one snapshot. It is never changed after Holder.Store: build
// a new one.
type Settings struct {
	// Generation is the Config's metadata.generation the snapshot was
	// built from (0 before the operator's first reconcile).
	Generation int64
	// Unavailable, when set, is why the registry serves no /v2 request
	// (the Config is Removed, or no storage is configured): /v2 answers
	// 503 with it.
	Unavailable string
	// ReadOnly refuses pushes, uploads, mounts and deletes.
	ReadOnly bool
	// Replicas is how many instances should run (the Deployment view's
	// spec.replicas).
	Replicas int
	// LogLevel is the registry's log level.
	LogLevel slog.Level
	// Requests limits concurrent requests per instance.
	Requests Requests
	// HTTPSecret is the secret instances share for what they sign.
	HTTPSecret []byte
	// DisableRedirect streams blobs instead of redirecting clients to
	// object storage.
	DisableRedirect bool
	// Proxy is the proxy of outbound connections (internal/outbound).
	Proxy Proxy
	// StorageCredentials are the object-storage credentials by the
	// reference's variable names (REGISTRY_STORAGE_S3_ACCESSKEY, …): the
	// server's environment overridden by the user secret. Never logged.
	StorageCredentials map[string]string
	// Routes are the host names the registry is exposed as
	// (spec.defaultRoute, spec.routes) that it serves, the default route
	// first; a route whose certificate could not be used is not here.
	Routes []Route
	// Storage is the blob storage in effect: where new blobs go and where
	// blobs are looked for. Its zero value is none (before the operator
	// put one in effect; a test that builds one handler).
	Storage Storage
	// TagHistoryLimit bounds each tag's history (the registry Config's
	// spec.imageStreams.tagHistoryLimit); 0 is the store's default
	// (store.DefaultTagHistory).
	TagHistoryLimit int
	// WebhookDestinations are the CIDRs, addresses and host names that
	// webhooks may reach although they are not public (the registry
	// Config's spec.webhooks.allowedDestinations, each valid for
	// webhook.NewDestinations). Read-only, like the rest of the snapshot.
	WebhookDestinations []string
	// ImportDestinations are the addresses of the cluster's own network
	// that imports, pull-through and proxy caches may reach (the
	// registry Config's spec.imageStreams.allowedImportDestinations).
	ImportDestinations []string
	// Older are the storages switched away from that still hold blobs
	// (not yet migrated): blobs are read from them, never written. One
	// whose Driver is nil could not be opened; its blobs are unavailable,
	// not absent.
	Older []Storage
}

// Proxy names the proxies of outbound connections; an empty field falls
// back to the process's environment.
type Proxy struct {
	HTTP, HTTPS, NoProxy string
}

// Route is one host name the registry answers as, with the certificate a
// TLS handshake naming it gets.
type Route struct {
	// Name is the Route object's name.
	Name string
	// Host is the host name, in lower case, without a port.
	Host string
	// Certificate is served to a TLS client that names Host (parsed once,
	// when the operator built the snapshot); nil over plain HTTP.
	Certificate *tls.Certificate
}

// RouteFor returns the route whose host is name (a TLS server name or a
// Host header's name, in any case), or nil.
func (s *Settings) RouteFor(name string) *Route {
	name = strings.TrimSuffix(name, ".")
	for i := range s.Routes {
		if strings.EqualFold(s.Routes[i].Host, name) {
			return &s.Routes[i]
		}
	}
	return nil
}

// Storage is a blob storage: its driver, and the ID the metadata store
// records with each blob and upload session whose bytes are in it.
type Storage struct {
	// ID names the storage for as long as its bytes live: "pvc:<claim>"
	// for a volume, "emptydir:<random>" for an emptyDir, whose bytes die
	// with the process (so a restarted process never finds blobs recorded
	// under an earlier one's).
	ID     string
	Driver storage.Driver
	// Writes admits the commits of blobs into the storage; removing the
	// storage closes it, after the commits in flight (nil: always open).
	Writes *Gate
	// Version names the settings Driver was built with: a storage rebuilt
	// (new credentials) is another snapshot.
	Version string
}

// Gate lets writes into a storage run side by side and its removal wait
// for them: once closed, no write enters again.
type Gate struct {
	mu     sync.RWMutex
	closed bool
}

// Enter admits a write, which calls leave when done; ok is false once the
// gate is closed. A nil gate admits everything.
func (g *Gate) Enter() (leave func(), ok bool) {
	if g == nil {
		return func() {}, true
	}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return nil, false
	}
	return g.mu.RUnlock, true
}

// Alone runs fn with no write inside: the writes in flight finish first,
// and new ones wait until fn returns (a migration deleting a blob's bytes
// while no commit can record them there again). A nil gate runs fn.
func (g *Gate) Alone(fn func() error) error {
	if g == nil {
		return fn()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return fn()
}

// Close waits for the writes admitted to leave and admits no more.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Requests are the read and write limits.
type Requests struct {
	Read, Write Limits
}

// Limits bound one kind of request: MaxRunning at once (0: no limit), at
// most MaxInQueue waiting for a slot, each for at most MaxWait (0: as long
// as its client waits).
type Limits struct {
	MaxRunning int
	MaxInQueue int
	MaxWait    time.Duration
}

// Defaults are the settings before the operator's first reconcile.
func Defaults() *Settings { return &Settings{} }

// Holder keeps the snapshot in effect.
type Holder struct {
	current atomic.Pointer[Settings]
	// changed is closed and replaced at each Store, for those who act on
	// a change (the log level, the limiter's gauges) rather than read it
	// per request.
	changed atomic.Pointer[chan struct{}]
}

// NewHolder holds s.
func NewHolder(s *Settings) *Holder {
	h := &Holder{}
	h.current.Store(s)
	ch := make(chan struct{})
	h.changed.Store(&ch)
	return h
}

// Load returns the snapshot in effect.
func (h *Holder) Load() *Settings { return h.current.Load() }

// Store puts s in effect for requests that start from now on.
func (h *Holder) Store(s *Settings) {
	h.current.Store(s)
	ch := make(chan struct{})
	old := h.changed.Swap(&ch)
	close(*old)
}

// Changed is closed at the next Store.
func (h *Holder) Changed() <-chan struct{} { return *h.changed.Load() }

type contextKey struct{}

// With returns ctx carrying s.
func With(ctx context.Context, s *Settings) context.Context {
	return context.WithValue(ctx, contextKey{}, s)
}

// From returns the snapshot the request started with, or the defaults
// when ctx carries none (a background job, a test of one handler).
func From(ctx context.Context) *Settings {
	if s, ok := ctx.Value(contextKey{}).(*Settings); ok {
		return s
	}
	return defaults
}

var defaults = Defaults()

// Middleware gives each request the snapshot in effect when it starts.
func (h *Holder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(With(r.Context(), h.Load())))
	})
}
