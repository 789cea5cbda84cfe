// Package registry serves the OCI Distribution Spec v1.1 under /v2/.
//
// Handlers return errors; writeError alone turns them into the spec's JSON
// error envelope. Metadata comes from the store (existence, sizes, tags),
// bytes from a storage.Driver.
package registry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// BlobIndex records which repository holds which blob, and in which
// storage its bytes are: a blob is present only in the storages named.
type BlobIndex interface {
	LocateBlob(ctx context.Context, in store.Storages, repo string, dgst digest.Digest) (store.BlobLocation, error)
	MountBlob(ctx context.Context, in store.Storages, repo, from string, dgst digest.Digest) (bool, error)
	ClaimBlob(ctx context.Context, storage string, dgst digest.Digest, size int64) (store.BlobClaim, error)
	LinkClaimed(ctx context.Context, storage, repo string, c store.BlobClaim) error
	UnlinkBlob(ctx context.Context, repo string, dgst digest.Digest) error
}

// UploadSessions records upload progress so any instance can continue it.
type UploadSessions interface {
	CreateUpload(ctx context.Context, u store.Upload, limits store.UploadLimits) error
	Upload(ctx context.Context, repo, id string) (store.Upload, error)
	AcquireUpload(ctx context.Context, repo, id, holder string, until time.Time) (store.Upload, error)
	RenewUpload(ctx context.Context, id, holder string, until time.Time) error
	ReleaseUpload(ctx context.Context, id, holder string) error
	AdvanceUpload(ctx context.Context, u store.Upload, from int64, release bool) error
	CommitUpload(ctx context.Context, uploadID, repo string, c store.BlobClaim) error
	DeleteUpload(ctx context.Context, id string) error
}

// ManifestIndex stores manifests, tags and referrers.
type ManifestIndex interface {
	PutManifest(ctx context.Context, in store.Storages, repo string, m store.Manifest, tags []string) error
	Manifest(ctx context.Context, repo, reference string) (store.Manifest, error)
	DeleteManifest(ctx context.Context, repo string, dgst digest.Digest) error
	DeleteTag(ctx context.Context, repo, tag string) error
	Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error)
	Repositories(ctx context.Context, last string, n int) ([]string, bool, error)
	Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType, last string, n int) ([]store.Descriptor, bool, error)
}

// Metadata is everything the registry asks of the metadata store.
type Metadata interface {
	BlobIndex
	UploadSessions
	ManifestIndex
}

// Storages finds a blob storage this process has built by its ID: the
// one an upload session recorded, when it is no longer the one in effect,
// to discard the session's bytes there.
type Storages interface {
	Built(id string) (storage.Driver, bool)
}

// Options configure a Registry.
type Options struct {
	Metadata Metadata
	// Blobs serves a request whose settings snapshot names no storage (a
	// registry built without the operator, in tests); StorageID is its ID
	// ("": store.DefaultStorage). A snapshot's storage takes precedence.
	Blobs     storage.Driver
	StorageID string
	// Storages finds storages no longer in effect (nil: only Blobs).
	Storages Storages
	Logger   *slog.Logger
	// MaxManifestBytes caps a manifest PUT; 0 means 4 MiB.
	MaxManifestBytes int64
	// AllowSparse accepts manifests whose layers or child manifests are not
	// in the repository (OCI "sparse" content: partial mirrors). Off, such a
	// PUT fails with MANIFEST_BLOB_UNKNOWN or MANIFEST_UNKNOWN.
	AllowSparse bool
	// Authorizer decides every request; nil serves everyone everything
	// (the protocol's own tests).
	Authorizer auth.Authorizer
	// Projects is required with an Authorizer.
	Projects Projects
	// TokenRealm is the path of the token endpoint 401 challenges name.
	TokenRealm string
	// UploadLimits cap open upload sessions per user and per project.
	UploadLimits store.UploadLimits
	// StoreTimes, when set, is told how long each metadata store call the
	// registry makes took, by the call's name (metrics).
	StoreTimes func(call string, d time.Duration)
	// Pulls, when set, is told of each manifest GET served (webhooks'
	// pull events); it must not block.
	Pulls Pulls
	// Upstreams, when set, serve the blobs of imported images that are
	// not here yet (pull-through).
	Upstreams Upstreams
	// Proxy, when set, brings in the manifests a pull asks for in a
	// proxy-cache project before they are looked up.
	Proxy Proxy
	// MaxPullThroughBytes bounds a pulled-through blob (0:
	// DefaultMaxPullThroughBytes); PullThroughFetches the fetches at
	// once (0: DefaultPullThroughFetches).
	MaxPullThroughBytes int64
	PullThroughFetches  int
}

// Proxy resolves pulls of proxy-cache projects (the image-stream
// service).
type Proxy interface {
	// ResolvePull makes reference (tag or digest) of repo present when
	// repo's project is a proxy cache. A failure wraps
	// errdefs.ErrNotFound or ErrUpstreamUnavailable.
	ResolvePull(ctx context.Context, repo, reference string) error
}

// Pulls notes pulls (store.PullLog).
type Pulls interface {
	Pulled(repo string, dgst digest.Digest, actor string)
}

// Registry is the /v2 protocol handler.
type Registry struct {
	meta Metadata
	// blobs is the storage of requests whose snapshot names none.
	blobs       settings.Storage
	storages    Storages
	log         *slog.Logger
	maxManifest int64
	allowSparse bool
	mux         *http.ServeMux
	// leaseTTL is how long a writer lease of an upload session lasts
	// without renewal.
	leaseTTL   time.Duration
	authz      auth.Authorizer
	projects   Projects
	tokenRealm string
	// uploadLimits cap open upload sessions.
	uploadLimits store.UploadLimits
	pulls        Pulls
	upstreams    Upstreams
	proxy        Proxy
	fetching     inflight
	// maxPullThrough and fetchSlots bound pull-through fetches.
	maxPullThrough int64
	fetchSlots     chan struct{}
}

const defaultMaxManifestBytes = 4 << 20

// New returns a Registry.
func New(opts Options) *Registry {
	r := &Registry{
		meta:         timedMetadata{opts.Metadata, opts.StoreTimes},
		blobs:        settings.Storage{ID: opts.StorageID, Driver: opts.Blobs},
		storages:     opts.Storages,
		log:          opts.Logger,
		maxManifest:  opts.MaxManifestBytes,
		allowSparse:  opts.AllowSparse,
		leaseTTL:     leaseTTL,
		authz:        opts.Authorizer,
		projects:     opts.Projects,
		tokenRealm:   opts.TokenRealm,
		uploadLimits: opts.UploadLimits,
		pulls:        opts.Pulls,
		upstreams:    opts.Upstreams,
		proxy:        opts.Proxy,
	}
	r.maxPullThrough = opts.MaxPullThroughBytes
	if r.maxPullThrough <= 0 {
		r.maxPullThrough = DefaultMaxPullThroughBytes
	}
	slots := opts.PullThroughFetches
	if slots <= 0 {
		slots = DefaultPullThroughFetches
	}
	r.fetchSlots = make(chan struct{}, slots)
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.blobs.ID == "" {
		r.blobs.ID = store.DefaultStorage
	}
	if r.storages == nil {
		r.storages = ownStorage{r.blobs}
	}
	if r.projects != nil {
		r.projects = timedProjects{r.projects, opts.StoreTimes}
	}
	if r.maxManifest <= 0 {
		r.maxManifest = defaultMaxManifestBytes
	}
	r.routes()
	return r
}

// handlerFunc is a /v2 handler; repo is "" on routes without a repository.
type handlerFunc func(w http.ResponseWriter, req *http.Request, repo string) error

// endpoint is a handler with the access it needs.
type endpoint struct {
	h   handlerFunc
	act action
	// createsRepository: the request may create the repository, which
	// needs the right to create image streams.
	createsRepository bool
	// hidden is the answer to a caller who may not see the project: what
	// a repository that does not exist answers.
	hidden func(*http.Request) error
}

func (ep endpoint) hide(req *http.Request) error { return ep.hidden(req) }

// answer is a hidden answer that does not depend on the request.
func answer(err error) func(*http.Request) error { return func(*http.Request) error { return err } }

func (r *Registry) routes() {
	mux := http.NewServeMux()
	const repo = "/v2/{project}/{image}"
	// A session of a repository one may not see answers as an unknown one.
	noSession := func(req *http.Request) error {
		return fromClass(errdefs.ErrNotFound, codeBlobUploadUnknown, "upload "+req.PathValue("id"))
	}
	push := func(h handlerFunc) endpoint { return endpoint{h: h, act: actPush, hidden: noSession} }
	blobUnknown := answer(newError(codeBlobUnknown, "blob unknown to registry"))
	manifestUnknown := answer(newError(codeManifestUnknown, "manifest unknown to registry"))
	repoRoutes := []struct {
		pattern string
		methods map[string]endpoint
	}{
		{repo + "/blobs/uploads/{$}", map[string]endpoint{
			"POST": {h: r.startUpload, act: actPush, createsRepository: true}}},
		{repo + "/blobs/uploads/{id}", map[string]endpoint{
			"GET": push(r.uploadStatus), "PATCH": push(r.patchUpload), "PUT": push(r.finishUpload), "DELETE": push(r.cancelUpload)}},
		{repo + "/blobs/{digest}", map[string]endpoint{
			"GET":    {h: r.getBlob, act: actPull, hidden: blobUnknown},
			"HEAD":   {h: r.getBlob, act: actPull, hidden: blobUnknown},
			"DELETE": {h: r.deleteBlob, act: actDelete, hidden: blobUnknown}}},
		{repo + "/manifests/{reference}", map[string]endpoint{
			"GET":    {h: r.getManifest, act: actPull, hidden: manifestUnknown},
			"HEAD":   {h: r.getManifest, act: actPull, hidden: manifestUnknown},
			"PUT":    {h: r.putManifest, act: actPush, createsRepository: true},
			"DELETE": {h: r.deleteManifest, act: actDelete, hidden: manifestUnknown}}},
		{repo + "/tags/list", map[string]endpoint{
			"GET": {h: r.listTags, act: actPull, hidden: answer(newError(codeNameUnknown, "repository name not known to registry"))}}},
		{repo + "/referrers/{digest}", map[string]endpoint{
			"GET": {h: r.listReferrers, act: actPull, hidden: answer(errNoReferrers)}}},
	}
	for _, rt := range repoRoutes {
		mux.Handle(rt.pattern, r.dispatch(rt.methods, true))
	}
	mux.Handle("/v2/_catalog", r.dispatch(map[string]endpoint{
		"GET": {h: r.catalog, act: actCatalog}, "HEAD": {h: r.catalog, act: actCatalog}}, false))
	mux.Handle("/v2/{$}", r.dispatch(map[string]endpoint{
		"GET": {h: r.base, act: actPing}, "HEAD": {h: r.base, act: actPing}}, false))
	mux.HandleFunc("/v2/", r.unknownRoute)
	r.mux = mux
}

// ServeHTTP implements http.Handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	// ServeMux would answer a path with "." or ".." segments or doubled
	// slashes with a redirect; a registry answers with a spec error.
	if p := req.URL.Path; p != "/v2/" && path.Clean(p) != strings.TrimSuffix(p, "/") {
		writeError(w, req, r.log, newError(codeNameInvalid, "path %q is not canonical; %s", p, names.RepositoryFormat))
		return
	}
	r.mux.ServeHTTP(w, req)
}

// dispatch picks the handler for the method and, on repository routes,
// validates the name before any handler sees it.
func (r *Registry) dispatch(methods map[string]endpoint, hasRepo bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ep, ok := methods[req.Method]
		if !ok {
			writeError(w, req, r.log, methodNotAllowed(w, req, methods))
			return
		}
		set := settings.From(req.Context())
		if set.Unavailable != "" {
			writeError(w, req, r.log, &Error{Code: codeUnavailable, Message: "the registry is not serving: " + set.Unavailable, Err: errNotServing})
			return
		}
		if r.storageOf(req.Context()).Driver == nil {
			writeError(w, req, r.log, &Error{Code: codeUnavailable, Message: "the registry is not serving: no blob storage is in effect", Err: errNotServing})
			return
		}
		repo := ""
		if hasRepo {
			repo = req.PathValue("project") + "/" + req.PathValue("image")
			if err := names.Repository(repo); err != nil {
				writeError(w, req, r.log, newError(codeNameInvalid, "%v; %s", err, names.RepositoryFormat))
				return
			}
		}
		err := r.authorize(req, ep, repo)
		if e := reqlog.FromContext(req.Context()); e.Debug() {
			e.SetRoute(req.Pattern)
			e.Decide(accessAnswer(err))
		}
		if err == nil && set.ReadOnly && ep.writes(req) {
			err = readOnly(w, methods)
		}
		if errors.Is(err, errNoReferrers) {
			err = r.listReferrersOf(w, req, repo, true)
		} else if err == nil {
			err = ep.h(w, req, repo)
		}
		if err != nil {
			writeError(w, req, r.log, err)
		}
	})
}

// writes says whether the request changes what the registry holds: a
// push, an upload or a delete (reading an upload's status does not).
func (ep endpoint) writes(req *http.Request) bool {
	return (ep.act == actPush || ep.act == actDelete) && req.Method != http.MethodGet && req.Method != http.MethodHead
}

// readOnly refuses a write while the Config's readOnly is set, with the
// route's methods that still work in Allow, as the reference's registry
// does; authorization has already run, so a caller who may not write
// still learns that first.
func readOnly(w http.ResponseWriter, methods map[string]endpoint) *Error {
	var allowed []string
	for m := range methods {
		if m == http.MethodGet || m == http.MethodHead {
			allowed = append(allowed, m)
		}
	}
	w.Header().Set("Allow", strings.Join(sortedStrings(allowed), ", "))
	return newError(codeUnsupported, "the registry is read-only (spec.readOnly of the registry Config): pushes and deletes are refused, pulls work")
}

func methodNotAllowed(w http.ResponseWriter, req *http.Request, methods map[string]endpoint) *Error {
	allowed := make([]string, 0, len(methods))
	for m := range methods {
		allowed = append(allowed, m)
	}
	w.Header().Set("Allow", strings.Join(sortedStrings(allowed), ", "))
	return newError(codeUnsupported, "%s is not supported on %s", req.Method, req.URL.Path)
}

// unknownRoute answers /v2 paths no route matched. A path that ends in a
// registry route but has the wrong number of name components is a bad name.
func (r *Registry) unknownRoute(w http.ResponseWriter, req *http.Request) {
	reqlog.FromContext(req.Context()).SetRoute(req.Pattern)
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	for _, marker := range []string{"/blobs/", "/manifests/", "/tags/list", "/referrers/"} {
		if i := strings.Index(p, marker); i > 0 && names.Repository(p[:i]) != nil {
			writeError(w, req, r.log, newError(codeNameInvalid, "repository name %q is invalid: %s", p[:i], names.RepositoryFormat))
			return
		}
	}
	writeError(w, req, r.log, newError(codeNotFound, "no such endpoint %s", req.URL.Path))
}

func (r *Registry) base(w http.ResponseWriter, _ *http.Request, _ string) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	_, _ = w.Write([]byte("{}")) // after the header a failed write is the client's hang-up
	return nil
}

// storageOf is the blob storage of a request: the one in effect when it
// started (its settings snapshot), which it keeps to its end even if the
// storage is switched meanwhile.
func (r *Registry) storageOf(ctx context.Context) settings.Storage {
	if s := settings.From(ctx).Storage; s.Driver != nil {
		return s
	}
	return r.blobs
}

// readableOf names the storages blobs of a request are found in: the
// storage of its snapshot, and the older ones that still hold blobs.
func (r *Registry) readableOf(ctx context.Context) store.Storages {
	in := store.Only(r.storageOf(ctx).ID)
	for _, o := range settings.From(ctx).Older {
		in.Older = append(in.Older, o.ID)
	}
	return in
}

// holderOf is the storage of a request's snapshot whose ID is id: the one
// in effect or an older one (whose Driver is nil if it could not be
// opened).
func (r *Registry) holderOf(ctx context.Context, id string) settings.Storage {
	if st := r.storageOf(ctx); st.ID == id {
		return st
	}
	for _, o := range settings.From(ctx).Older {
		if o.ID == id {
			return o
		}
	}
	return settings.Storage{ID: id}
}

// ownStorage finds the registry's own storage only.
type ownStorage struct{ s settings.Storage }

func (o ownStorage) Built(id string) (storage.Driver, bool) {
	return o.s.Driver, id == o.s.ID && o.s.Driver != nil
}
