// Package apiserver serves Berth's management API: Kubernetes-shaped
// resources (apiVersion, kind, metadata, spec, status) under /api and
// /apis, and the OAuth token endpoint the CLI logs in with.
//
// Every handler asks the one authorizer (Options.Authorizer) before it
// acts; the caller is the identity the authentication middleware put in
// the request's context (auth.IdentityFrom). Handlers return errors, and
// writeError alone turns them into Kubernetes Status objects. Objects in
// projects the caller may not see answer 404 exactly like missing ones;
// elsewhere a refusal is 403 (401 for the anonymous user, who should log
// in), decided before anything is looked up.
package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/imagestream"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/store"
)

// Options configure the API server.
type Options struct {
	Store         Store
	Authorizer    *auth.RBAC
	Authenticator *auth.Authenticator
	Issuer        *auth.Issuer
	Logger        *slog.Logger
	// Blobs reads image configs for the Image view and discards the upload
	// bytes of deleted projects (nil: Images show what their manifests say
	// only, and the bytes go at the next start).
	Blobs Blobs
	// Stopping is closed when the server shuts down: watches end then, so
	// that a graceful shutdown does not wait for them.
	Stopping <-chan struct{}
	// PodName is this instance's pod (pods/log serves its log only), and
	// PodLogs its log (nil: empty).
	PodName string
	PodLogs PodLogs
	// StorageMigrator runs berth adm migrate-storage (nil: not served).
	StorageMigrator StorageMigrator
	// GarbageCollector runs berth adm gc (nil: not served).
	GarbageCollector GarbageCollector
	// ImagePruner runs berth adm prune images (nil: not served).
	ImagePruner ImagePruner
	// ImageStreams serves image streams and their tags (nil: the
	// image-stream service over Store).
	ImageStreams ImageStreams
}

// Server is the management API handler.
type Server struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	configs imageConfigCache
	streams ImageStreams
}

// API groups and versions served.
const (
	groupUser    = "user.openshift.io"
	groupOAuth   = "oauth.openshift.io"
	groupProject = "project.openshift.io"
	groupRBAC    = "rbac.authorization.k8s.io"
	groupAuthz   = "authorization.openshift.io"
	groupAuthn   = "authentication.k8s.io"
)

// Paths are the URL paths (and subtrees, ending in "/") the management API
// serves behind the authentication middleware; /oauth/ it serves without.
var Paths = []string{"/api/", "/apis/", "/api", "/apis", "/version", "/openapi/"}

// New returns the API server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(), streams: opts.ImageStreams}
	if s.streams == nil {
		s.streams = imagestream.New(opts.Store)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	const (
		users    = "/apis/" + groupUser + "/v1"
		oauth    = "/apis/" + groupOAuth + "/v1/useroauthaccesstokens"
		projects = "/apis/" + groupProject + "/v1"
		rbac     = "/apis/" + groupRBAC + "/v1"
		authz    = "/apis/" + groupAuthz + "/v1"
		core     = "/api/v1/namespaces/{ns}/serviceaccounts"
	)
	s.discoveryRoutes()
	s.storedRoutes()
	s.namespaceRoutes()
	s.imageStreamRoutes()
	s.imageStreamWriteRoutes()
	s.clusterRoleRoutes()
	s.imageRoutes()
	s.auditRoutes()
	s.selfReviewRoutes()
	s.podRoutes()
	s.handle("POST /oauth/token", s.oauthToken)
	s.handle("GET "+users+"/users/{name}", s.getUser)
	s.handle("GET "+users+"/users", s.listUsers)
	s.handle("GET "+oauth, s.listTokens)
	s.handle("GET "+oauth+"/{name}", s.getToken)
	s.handle("DELETE "+oauth+"/{name}", s.deleteToken)

	s.handle("POST "+projects+"/projectrequests", s.createProject)
	s.handle("GET "+projects+"/projects", s.listProjects)
	s.handle("GET "+projects+"/projects/{name}", s.getProject)
	s.handle("DELETE "+projects+"/projects/{name}", s.deleteProject)

	s.handle("POST "+authz+"/namespaces/{ns}/resourceaccessreviews", s.resourceAccessReview)
	s.handle("POST "+authz+"/resourceaccessreviews", s.resourceAccessReview)

	s.handle("POST "+core+"/{name}/token", s.createServiceAccountToken)

	s.handleDryRun("POST /apis/"+groupImageRegistry+"/v1/configs/{name}/storagemigration", s.migrateStorage)
	s.handleDryRun("POST /apis/"+groupImageRegistry+"/v1/configs/{name}/garbagecollection", s.collectGarbage)
	s.handleDryRun("POST /apis/"+groupImageRegistry+"/v1/imagepruners/{name}/prune", s.pruneImages)

	s.handle("/", func(_ http.ResponseWriter, r *http.Request) error {
		return &StatusError{Code: http.StatusNotFound, Reason: "NotFound",
			Message: fmt.Sprintf("the server could not find the requested resource (%s %s)", r.Method, r.URL.Path)}
	})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// handle routes pattern to a handler that returns its error.
func (s *Server) handle(pattern string, h func(http.ResponseWriter, *http.Request) error) {
	s.handleDryRun(pattern, func(w http.ResponseWriter, r *http.Request) error {
		if err := refuseDryRun(w, r); err != nil {
			return err
		}
		return h(w, r)
	})
}

// handleDryRun routes a handler that honours dryRun itself.
func (s *Server) handleDryRun(pattern string, h func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		reqlog.FromContext(r.Context()).SetRoute(pattern)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// refuseDryRun answers a dry-run write (dryRun=All in the query, or in a
// DELETE's options) to a handler that would really write: refusing is
// the honest answer.
func refuseDryRun(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	dry := r.URL.Query().Has("dryRun")
	if !dry && r.Method == http.MethodDelete && r.Body != nil {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			return badRequest("read the request body: %v", err)
		}
		var opts struct {
			DryRun []string `json:"dryRun"`
		}
		dry = json.Unmarshal(b, &opts) == nil && len(opts.DryRun) > 0
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if dry {
		return badRequest("dry run is not supported for %s; nothing was changed", r.URL.Path)
	}
	return nil
}

// StatusError is a failure as the API reports it: a Kubernetes Status.
type StatusError struct {
	Code    int
	Reason  string // NotFound, AlreadyExists, Forbidden, Unauthorized, Invalid, BadRequest, Conflict, …
	Message string
}

func (e *StatusError) Error() string { return e.Message }

func notFound(resource, name string) *StatusError {
	return &StatusError{http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", resource, name)}
}

func invalid(format string, args ...any) *StatusError {
	return &StatusError{http.StatusUnprocessableEntity, "Invalid", fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *StatusError {
	return &StatusError{http.StatusBadRequest, "BadRequest", fmt.Sprintf(format, args...)}
}

func unauthorized() *StatusError {
	return &StatusError{http.StatusUnauthorized, "Unauthorized", "Unauthorized: log in first (berth login URL)"}
}

// writeError answers err as a Status: a *StatusError as it says, the
// store's error classes by their meaning, anything else as a 500 whose
// detail goes to the log only.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	se := s.statusOf(r, err)
	writeStatus(w, se.Code, se.Reason, se.Message)
}

// statusOf is the Status that answers err (see writeError); an error it
// does not know is logged.
func (s *Server) statusOf(r *http.Request, err error) *StatusError {
	var se *StatusError
	switch {
	case errors.As(err, &se):
	case errors.Is(err, errdefs.ErrNotFound):
		se = &StatusError{http.StatusNotFound, "NotFound", err.Error()}
	case errors.Is(err, errdefs.ErrAlreadyExists):
		se = &StatusError{http.StatusConflict, "AlreadyExists", err.Error()}
	case errors.Is(err, errdefs.ErrInvalidArgument):
		se = &StatusError{http.StatusUnprocessableEntity, "Invalid", err.Error()}
	case errors.Is(err, errdefs.ErrConflict):
		se = &StatusError{http.StatusConflict, "Conflict", err.Error() +
			"; the object has been modified; please apply your changes to the latest version and try again"}
	case errors.Is(err, errdefs.ErrGone):
		se = &StatusError{http.StatusGone, "Expired", err.Error()}
	case errors.Is(err, errdefs.ErrQuotaExceeded):
		msg := err.Error()
		if q, ok := errors.AsType[*store.QuotaExceededError](err); ok {
			msg = q.Error()
		}
		se = &StatusError{http.StatusForbidden, "Forbidden", msg}
	default:
		s.log.Error("management API", "method", r.Method, "path", r.URL.Path, "err", err)
		se = &StatusError{http.StatusInternalServerError, "InternalError", "internal error; the server log has the detail"}
	}
	return se
}

// WriteStatus answers with a Status object (for the server's own
// refusals in front of the API, such as the request limiter's).
func WriteStatus(w http.ResponseWriter, code int, reason, message string) {
	writeStatus(w, code, reason, message)
}

func writeStatus(w http.ResponseWriter, code int, reason, message string) {
	writeJSON(w, code, status{
		TypeMeta: TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   "Failure", Message: message, Reason: reason, Code: code,
	})
}

// WriteAuthError answers a request whose credentials were refused, as a
// Kubernetes Status (or, on the OAuth token endpoint, as RFC 6749 §5.2
// says: the Basic credentials there are the client's).
func WriteAuthError(w http.ResponseWriter, r *http.Request, err error) {
	var throttled *auth.ThrottledError
	code, reason := http.StatusUnauthorized, "Unauthorized"
	if errors.As(err, &throttled) {
		code, reason = http.StatusTooManyRequests, "TooManyRequests"
		w.Header().Set("Retry-After", retryAfter(throttled))
	}
	if r != nil && r.URL.Path == oauthTokenPath {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
		}
		writeOAuthError(w, code, "invalid_client", err.Error())
		return
	}
	writeStatus(w, code, reason, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// decode reads a JSON body into v, matching field names exactly. Fields
// Berth's reduced types lack are ignored: these kinds carry less than the
// reference's, and clients send what they have.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeStrictJSON(body, v, false)
}

// caller is who made r.
func caller(r *http.Request) auth.Identity { return auth.IdentityFrom(r.Context()) }

func isAnonymous(u auth.User) bool { return u.Name == auth.AnonymousUser }

// authorize asks the authorizer whether the caller may do verb on res in
// project ("" for cluster-wide). A refusal is 401 for the anonymous user
// and 403 for anyone else, with the message Kubernetes gives.
func (s *Server) authorize(r *http.Request, verb string, res auth.Resource, project string) error {
	return s.authorizeUser(r.Context(), caller(r).User, verb, res, project)
}

// authorizeUser is authorize for user u.
func (s *Server) authorizeUser(ctx context.Context, u auth.User, verb string, res auth.Resource, project string) error {
	ok, err := s.opts.Authorizer.Authorize(ctx, u, verb, res, project)
	entry := reqlog.FromContext(ctx)
	switch {
	case err != nil:
		entry.Decide(reqlog.Failed)
		return err
	case ok:
		entry.Decide(reqlog.Allowed)
		return nil
	case isAnonymous(u):
		entry.Decide(reqlog.Unauthorized)
	default:
		entry.Decide(reqlog.Denied)
	}
	return s.forbidden(u, verb, res, project)
}

func (s *Server) forbidden(u auth.User, verb string, res auth.Resource, project string) error {
	if isAnonymous(u) {
		return unauthorized()
	}
	qualified, where := res.Resource, "at the cluster scope"
	if res.Group != "" {
		qualified += "." + res.Group
	}
	if project != "" {
		where = fmt.Sprintf("in the namespace %q", project)
	}
	return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
		"%s is forbidden: User %q cannot %s resource %q in API group %q %s",
		qualified, u.Name, verb, res.Resource, res.Group, where)}
}

// requireProject answers 404 for a project that does not exist; call it
// after authorizing, so that existence is told only to those allowed.
func (s *Server) requireProject(r *http.Request, name string) error {
	if _, err := s.opts.Store.Project(r.Context(), name); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return notFound("namespaces", name)
		}
		return err
	}
	return nil
}
