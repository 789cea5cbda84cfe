package registry

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
)

// getBlob serves GET and HEAD /v2/<name>/blobs/<digest> (spec: "Pulling blobs").
func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, repo string) error {
	dgst, err := names.Digest(req.PathValue("digest"))
	if err != nil {
		return newError(codeDigestInvalid, "invalid digest %q: %v", req.PathValue("digest"), err)
	}
	ctx := req.Context()
	loc, err := r.meta.LocateBlob(ctx, r.readableOf(ctx), repo, dgst)
	if errors.Is(err, errdefs.ErrNotFound) && r.upstreams != nil {
		return r.pullThroughBlob(w, req, repo, dgst, err)
	}
	if err != nil {
		return fromClass(err, codeBlobUnknown, "blob "+dgst.String())
	}
	size := loc.Size
	// The storage in effect, or an older one the blob was not migrated
	// from yet.
	st := r.holderOf(ctx, loc.Storage)
	if st.Driver == nil {
		// Present, but where it is cannot be read now: unavailable, not
		// unknown, so that a client retries rather than pushes again.
		r.log.ErrorContext(ctx, "blob in a storage that could not be opened", "repository", repo, "digest", dgst, "storage", loc.Storage)
		return &Error{Code: codeUnavailable, Header: http.Header{"Retry-After": {"30"}},
			Message: "blob " + dgst.String() + " is in an older storage of the registry that cannot be read now (see the registry's Degraded condition)",
			Err:     errors.New("storage " + loc.Storage + " not opened")}
	}
	h := w.Header()
	setBlobHeaders := func() {
		h.Set("Docker-Content-Digest", dgst.String())
		h.Set("ETag", `"`+dgst.String()+`"`)
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Cache-Control", "max-age=31536000") // content-addressed: never changes
		h.Set("Accept-Ranges", "bytes")
	}
	if req.Method == http.MethodHead {
		setBlobHeaders()
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// A blob in an older storage is streamed: a migration may delete its
	// bytes there the moment after, which a client redirected to them
	// would meet as a 404 from the backend.
	inEffect := st.ID == r.storageOf(ctx).ID
	if rd, ok := st.Driver.(storage.Redirector); ok && inEffect && !settings.From(ctx).DisableRedirect && redirectable(req.Header.Get("Range")) {
		url, err := rd.RedirectURL(ctx, dgst)
		if err != nil {
			return fromClass(err, codeBlobUnknown, "blob "+dgst.String())
		}
		if url != "" {
			http.Redirect(w, req, url, http.StatusTemporaryRedirect)
			return nil
		}
	}
	first := int64(0)
	if _, local := st.Driver.(storage.Seeker); !local {
		// Each range of a driver that is no Seeker is a read of the
		// backend: several are served as the whole blob (as nginx's
		// max_ranges 1 does), so that one request cannot ask the backend
		// for a read per range. A single range is read from its start.
		if h := req.Header.Get("Range"); strings.Contains(h, ",") {
			req.Header.Del("Range")
		} else if start, ok := singleRangeStart(h, size); ok && req.Header.Get("If-Range") == "" {
			first = start
		}
	}
	// The first read is opened now, where it will be read: a blob missing
	// from the storage is an error answer, not an answer cut short.
	content, err := storage.OpenReadSeeker(ctx, st.Driver, dgst, size, first)
	if errors.Is(err, errdefs.ErrNotFound) && !inEffect {
		// Migrated between the lookup and the read: where it is now.
		if loc, lerr := r.meta.LocateBlob(ctx, r.readableOf(ctx), repo, dgst); lerr == nil && loc.Storage != st.ID {
			if now := r.holderOf(ctx, loc.Storage); now.Driver != nil {
				st = now
				content, err = storage.OpenReadSeeker(ctx, st.Driver, dgst, size, first)
			}
		}
	}
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			// The store says the blob exists but its bytes are gone.
			r.log.ErrorContext(ctx, "blob recorded but missing from storage", "repository", repo, "digest", dgst, "storage", st.ID)
		}
		return fromClass(err, codeBlobUnknown, "blob "+dgst.String())
	}
	defer content.Close()
	setBlobHeaders()
	// ServeContent answers Range (206), bad ranges (416) and If-None-Match,
	// and hands an *os.File (a Seeker's) to the connection's sendfile.
	http.ServeContent(w, req, "", time.Time{}, content)
	return nil
}

// deleteBlob serves DELETE /v2/<name>/blobs/<digest>: the blob leaves the
// repository at once; its bytes go when no repository holds them (GC).
func (r *Registry) deleteBlob(w http.ResponseWriter, req *http.Request, repo string) error {
	dgst, err := names.Digest(req.PathValue("digest"))
	if err != nil {
		return newError(codeDigestInvalid, "invalid digest %q: %v", req.PathValue("digest"), err)
	}
	if err := r.meta.UnlinkBlob(req.Context(), repo, dgst); err != nil {
		return fromClass(err, codeBlobUnknown, "blob "+dgst.String())
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// singleRangeStart reads a Range header of one byte range of a blob of
// size bytes and returns where it starts; single is false for no Range,
// several ranges, or one net/http will refuse or ignore (it answers those
// in full, or with 416, reading from the start if at all).
func singleRangeStart(h string, size int64) (start int64, single bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, false
	}
	from, to, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, false
	}
	if from == "" {
		n, err := strconv.ParseInt(to, 10, 64)
		if err != nil || n <= 0 {
			return 0, false
		}
		return max(size-n, 0), true
	}
	start, err := strconv.ParseInt(from, 10, 64)
	if err != nil || start < 0 || start >= size {
		return 0, false
	}
	return start, true
}

// redirectable tells whether a blob GET with this Range header may be
// sent to the storage: one without, or one range from an offset. A suffix
// range (bytes=-N) or several ranges are served by Berth, which knows the
// blob's size: object stores differ in them (Azure's emulator answers a
// suffix range with a Content-Length of "NaN").
func redirectable(rangeHeader string) bool {
	if rangeHeader == "" {
		return true
	}
	spec, ok := strings.CutPrefix(rangeHeader, "bytes=")
	return ok && !strings.Contains(spec, ",") && !strings.HasPrefix(strings.TrimSpace(spec), "-")
}
