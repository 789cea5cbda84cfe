package registry

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
)

// getBlob serves GET and HEAD /v2/<name>/blobs/<digest> (spec: "Pulling blobs").
func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, repo string) error {
	dgst, err := parseDigest(req.PathValue("digest"))
	if err != nil {
		return newError(codeDigestInvalid, "invalid digest %q: %v", req.PathValue("digest"), err)
	}
	ctx := req.Context()
	st := r.storageOf(ctx)
	size, err := r.meta.BlobSize(ctx, st.ID, repo, dgst)
	if err != nil {
		return fromClass(err, codeBlobUnknown, "blob "+dgst.String())
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
	if rd, ok := st.Driver.(storage.Redirector); ok && !settings.From(ctx).DisableRedirect {
		url, err := rd.RedirectURL(ctx, dgst)
		if err != nil {
			return fromClass(err, codeBlobUnknown, "blob "+dgst.String())
		}
		if url != "" {
			http.Redirect(w, req, url, http.StatusTemporaryRedirect)
			return nil
		}
	}
	// Probed unless a range is asked for: a blob missing from the storage
	// is an error answer, not a 200 cut short.
	content, err := storage.OpenReadSeeker(ctx, st.Driver, dgst, size, req.Header.Get("Range") == "")
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
	dgst, err := parseDigest(req.PathValue("digest"))
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
