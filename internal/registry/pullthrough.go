package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// Pull-through. An imported image's manifests are here, its layers at
// their upstream until first pulled: a GET of such a blob streams it from
// the upstream to the client while writing it into the storage in effect
// (one upstream read, teed), checks its digest and size, and records it,
// so the next pull is local and survives the upstream going down. A HEAD
// answers from the size the manifest declares, without a download.
// Concurrent GETs of one blob fetch it once: the others wait for it to
// land and are then served locally. The bytes reach the first client as
// they arrive, before the digest is checked at the end (as Distribution's
// proxy does): clients check the digest they asked for, and bytes that
// fail it are not kept. Fetches are bounded in size and in number.

// Upstreams find and open the blobs of imported images (the image-stream
// service).
type Upstreams interface {
	// BlobUpstream is the size the manifests of repo declare for blob
	// dgst when an upstream holds it; errdefs.ErrNotFound when none does.
	BlobUpstream(ctx context.Context, repo string, dgst digest.Digest) (int64, error)
	// OpenUpstreamBlob opens blob dgst of repo at its upstream. A failure
	// says with UpstreamGone whether the upstream is down.
	OpenUpstreamBlob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, error)
}

// ErrUpstreamUnavailable marks an upstream that could not serve a blob
// now (down, overloaded, unreachable): the answer is 503, not 404.
var ErrUpstreamUnavailable = errors.New("the upstream registry is unavailable")

// DefaultMaxPullThroughBytes bounds the blob a pull-through fetches (the
// size its manifest declares): an upstream must not fill the storage
// with one layer.
const DefaultMaxPullThroughBytes = 10 << 30

// DefaultPullThroughFetches bounds the upstream fetches under way at
// once; a pull beyond them is asked to retry (429).
const DefaultPullThroughFetches = 32

// fetchTimeout bounds one upstream fetch.
const fetchTimeout = 30 * time.Minute

// inflight holds the blobs being fetched, each with a channel closed when
// its fetch ends.
type inflight struct {
	mu sync.Mutex
	m  map[digest.Digest]chan struct{}
}

// claim returns (nil, true) when the caller fetches dgst — it must call
// release — or the channel of the fetch under way.
func (f *inflight) claim(dgst digest.Digest) (chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, busy := f.m[dgst]; busy {
		return ch, false
	}
	if f.m == nil {
		f.m = map[digest.Digest]chan struct{}{}
	}
	f.m[dgst] = make(chan struct{})
	return nil, true
}

func (f *inflight) release(dgst digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.m[dgst])
	delete(f.m, dgst)
}

// pullThroughBlob serves a blob repo does not hold, from its upstream.
func (r *Registry) pullThroughBlob(w http.ResponseWriter, req *http.Request, repo string, dgst digest.Digest, notHere error) error {
	ctx := req.Context()
	size, err := r.upstreams.BlobUpstream(ctx, repo, dgst)
	if errors.Is(err, errdefs.ErrNotFound) || err == nil && size < 0 {
		return fromClass(notHere, codeBlobUnknown, "blob "+dgst.String())
	}
	if err != nil {
		return err
	}
	if size > r.maxPullThrough {
		return &Error{Code: codeDenied, Message: fmt.Sprintf("blob %s is declared %d bytes upstream, more than the %d a pull-through fetches",
			dgst, size, r.maxPullThrough)}
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", dgst.String())
	h.Set("ETag", `"`+dgst.String()+`"`)
	h.Set("Content-Type", "application/octet-stream")
	if req.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	for {
		wait, mine := r.fetching.claim(dgst)
		if mine {
			defer r.fetching.release(dgst)
			return r.fetchBlob(w, req, repo, dgst, size)
		}
		// One fetch per blob, however slow: a second would only share
		// the upstream's bandwidth and the storage with the first.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wait:
		}
		if _, err := r.meta.LocateBlob(ctx, r.readableOf(ctx), repo, dgst); err == nil {
			h.Del("Docker-Content-Digest")
			h.Del("ETag")
			h.Del("Content-Type")
			return r.getBlob(w, req, repo)
		}
		// The other fetch failed: try once more, ourselves or after
		// another caller.
	}
}

// fetchBlob streams blob dgst from the upstream to the client and into
// the storage in effect. The fetch ends with its client: a client that
// leaves must not leave the registry writing gigabytes nobody waits for
// (the next pull fetches again).
func (r *Registry) fetchBlob(w http.ResponseWriter, req *http.Request, repo string, dgst digest.Digest, size int64) error {
	select {
	case r.fetchSlots <- struct{}{}:
		defer func() { <-r.fetchSlots }()
	default:
		return &Error{Code: codeTooManyRequests, Header: http.Header{"Retry-After": {"10"}},
			Message: fmt.Sprintf("%d pull-through fetches are under way, the most this registry runs at once: retry later", cap(r.fetchSlots))}
	}
	ctx, cancel := context.WithTimeout(req.Context(), fetchTimeout)
	defer cancel()
	body, err := r.upstreams.OpenUpstreamBlob(ctx, repo, dgst)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return &Error{Code: codeBlobUnknown, Message: "blob " + dgst.String() + " is not here and its upstream does not have it: " + err.Error(), Err: err}
		}
		if errors.Is(err, ErrUpstreamUnavailable) {
			return &Error{Code: codeUnavailable, Header: http.Header{"Retry-After": {"30"}},
				Message: "blob " + dgst.String() + " has not been pulled through yet and its upstream cannot serve it now: " + err.Error(), Err: err}
		}
		return &Error{Code: codeBlobUnknown, Message: "blob " + dgst.String() + ": " + err.Error(), Err: err}
	}
	defer body.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	client := &clientWriter{ctx: req.Context(), w: w}
	st := r.storageOf(req.Context())
	if st.Driver == nil || settings.From(req.Context()).ReadOnly {
		// Nowhere to keep it: the client gets it, the next one fetches again.
		_, _ = io.Copy(client, io.LimitReader(body, size))
		return nil
	}
	err = Ingest(ctx, st, r.meta, repo, dgst, size, io.TeeReader(io.LimitReader(body, size+1), client))
	if err != nil {
		r.log.WarnContext(ctx, "pull-through blob not kept", "repository", repo, "digest", dgst, "err", err)
	}
	return nil // the answer is under way: what went wrong is in the log
}

// clientWriter writes to the client a fetch is for; once the client is
// gone (a write fails, or its request ended) it fails every write, which
// ends the fetch it tees from.
type clientWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *clientWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("the client left: %w", err)
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, fmt.Errorf("the client left: %w", err)
	}
	return n, nil
}

// BlobLinker claims a blob before its bytes are written (so the garbage
// collector leaves it alone), then records them in a storage and links it
// into a repository.
type BlobLinker interface {
	ClaimBlob(ctx context.Context, storage string, dgst digest.Digest, size int64) (store.BlobClaim, error)
	LinkClaimed(ctx context.Context, storage, repo string, c store.BlobClaim) error
}

// Ingest writes r, which must be blob dgst of size bytes, into st as one
// upload, checks it, commits it inside st's write gate and links it into
// repo: how content fetched from elsewhere (an import's config, a
// pulled-through layer) enters the registry.
func Ingest(ctx context.Context, st settings.Storage, links BlobLinker, repo string, dgst digest.Digest, size int64, r io.Reader) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("blob digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id) // crypto/rand.Read never fails (Go 1.24+)
	up := storage.Upload{ID: "fetch" + hex.EncodeToString(id)}
	h := &storage.HashingReader{R: r, Hash: dgst.Algorithm().Hash()}
	n, state, err := st.Driver.Append(ctx, up, 0, h)
	up.State = state
	abort := func() { _ = st.Driver.Abort(context.WithoutCancel(ctx), up) }
	if err != nil {
		abort()
		return fmt.Errorf("store blob %s: %w", dgst, err)
	}
	if n != size || h.N != size {
		abort()
		return fmt.Errorf("blob %s: got %d bytes, the manifest says %d: %w", dgst, h.N, size, errdefs.ErrSizeMismatch)
	}
	if got := digest.NewDigest(dgst.Algorithm(), h.Hash); got != dgst {
		abort()
		return fmt.Errorf("blob %s: the bytes have digest %s: %w", dgst, got, errdefs.ErrInvalidArgument)
	}
	leave, ok := st.Writes.Enter()
	if !ok {
		abort()
		return fmt.Errorf("store blob %s: the storage was switched: %w", dgst, errdefs.ErrUnavailable)
	}
	defer leave()
	ctx = context.WithoutCancel(ctx)
	claim, err := links.ClaimBlob(ctx, st.ID, dgst, size)
	if err != nil {
		abort()
		return fmt.Errorf("claim blob %s: %w", dgst, err)
	}
	if err := st.Driver.Commit(ctx, up, dgst, size); err != nil {
		abort()
		return fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	return links.LinkClaimed(ctx, st.ID, repo, claim)
}
