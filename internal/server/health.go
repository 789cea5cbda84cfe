package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/storage"
)

// health answers the probes: /healthz (alive: the metadata store answers a
// trivial query and the blob storage passes its cheap check), /readyz
// (send traffic here: serving, not shutting down, and healthy) and /livez
// (the process answers). Neither
// asks for credentials, and a request limiter must let both through.
type health struct {
	checks []healthCheck
	// ttl is how long an answer is reused, so that a flood of probes
	// costs the store one query a second; timeout bounds each check.
	ttl, timeout time.Duration
	log          *slog.Logger

	// serving: the listener is open; stopping: a graceful shutdown began.
	serving, stopping atomic.Bool

	mu      sync.Mutex // held through a check: probes meanwhile wait for its answer
	checked time.Time
	failed  string // what failed at the last check ("" none)
}

type healthCheck struct {
	// what names the part in a 503's detail: it says what failed without
	// the error itself (paths, addresses), which goes to the log.
	what  string
	check func(ctx context.Context) error
}

// pinger is the metadata store's trivial query.
type pinger interface {
	Ping(ctx context.Context) error
}

func newHealth(meta pinger, blobs storage.HealthChecker, log *slog.Logger) *health {
	h := &health{ttl: time.Second, timeout: 2 * time.Second, log: log}
	h.checks = append(h.checks,
		healthCheck{"the metadata store does not answer", meta.Ping},
		healthCheck{"the blob storage is not usable", blobs.Health})
	return h
}

// failure runs the checks, or reuses an answer younger than ttl, and
// returns what failed ("" when all passed).
func (h *health) failure(ctx context.Context) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.checked.IsZero() && time.Since(h.checked) < h.ttl {
		return h.failed
	}
	// A probe that hangs up must not cut the check short: its answer is
	// cached for the probes that follow.
	ctx = context.WithoutCancel(ctx)
	failed := ""
	var cause error
	for _, c := range h.checks {
		cctx, cancel := context.WithTimeout(ctx, h.timeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			failed, cause = c.what, err
			break
		}
	}
	switch {
	case failed != "" && failed != h.failed:
		h.log.Warn("health check failed", "check", failed, "err", cause)
	case failed == "" && h.failed != "":
		h.log.Info("health checks pass again")
	}
	h.checked, h.failed = time.Now(), failed
	return failed
}

// ready reports whether this instance should get traffic.
func (h *health) ready(ctx context.Context) bool {
	return h.serving.Load() && !h.stopping.Load() && h.failure(ctx) == ""
}

func (h *health) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", h.healthz)
	// The reference answers its root like /healthz.
	mux.HandleFunc("GET /{$}", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /livez", h.livez)
}

// livez answers while the process serves HTTP, whatever its store and
// storage say: a liveness probe that restarts the process on its
// dependencies' outage (PostgreSQL restarting) would restart every
// instance at once and help nothing.
func (h *health) livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
}

func (h *health) healthz(w http.ResponseWriter, r *http.Request) {
	if failed := h.failure(r.Context()); failed != "" {
		unavailable(w, "health check failed: "+failed)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
}

func (h *health) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case h.stopping.Load():
		unavailable(w, "shutting down")
	case !h.serving.Load():
		unavailable(w, "not serving yet")
	default:
		h.healthz(w, r)
	}
}

// unavailable answers 503 with the registry's error shape.
func unavailable(w http.ResponseWriter, detail string) {
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{
		"code": "UNAVAILABLE", "message": "service unavailable", "detail": detail,
	}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}
