// Package apiserver serves Berth's management API: Kubernetes-shaped
// resources (apiVersion, kind, metadata, spec, status) under /api and
// /apis, and the OAuth token endpoint the CLI logs in with.
package apiserver

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/store"
)

// Options configure the API server.
type Options struct {
	Store         *store.Store
	Authorizer    *auth.RBAC
	Authenticator *auth.Authenticator
	Issuer        *auth.Issuer
	Logger        *slog.Logger
}

// Server is the management API handler.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New returns the API server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// WriteAuthError answers a request whose credentials were refused, as a
// Kubernetes Status.
func WriteAuthError(w http.ResponseWriter, _ *http.Request, err error) {
	var throttled *auth.ThrottledError
	status, reason := http.StatusUnauthorized, "Unauthorized"
	if errors.As(err, &throttled) {
		status, reason = http.StatusTooManyRequests, "TooManyRequests"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure",
		"message": err.Error(), "reason": reason, "code": status,
	})
}
