package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"syscall"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// code is an error code of the OCI Distribution Spec with the HTTP status
// it is sent with. The table below is the only place codes are defined.
type code struct {
	Name   string
	Status int
}

var (
	codeBlobUnknown         = code{"BLOB_UNKNOWN", http.StatusNotFound}
	codeBlobUploadInvalid   = code{"BLOB_UPLOAD_INVALID", http.StatusBadRequest}
	codeBlobUploadUnknown   = code{"BLOB_UPLOAD_UNKNOWN", http.StatusNotFound}
	codeDigestInvalid       = code{"DIGEST_INVALID", http.StatusBadRequest}
	codeManifestBlobUnknown = code{"MANIFEST_BLOB_UNKNOWN", http.StatusBadRequest}
	codeManifestInvalid     = code{"MANIFEST_INVALID", http.StatusBadRequest}
	codeManifestUnknown     = code{"MANIFEST_UNKNOWN", http.StatusNotFound}
	// codeManifestChildUnknown refuses an index whose child is not pushed.
	codeManifestChildUnknown = code{"MANIFEST_UNKNOWN", http.StatusBadRequest}
	codeNameInvalid          = code{"NAME_INVALID", http.StatusBadRequest}
	codeNameUnknown          = code{"NAME_UNKNOWN", http.StatusNotFound}
	codeSizeInvalid          = code{"SIZE_INVALID", http.StatusBadRequest}
	codeTooLarge             = code{"SIZE_INVALID", http.StatusRequestEntityTooLarge}
	codeRangeInvalid         = code{"BLOB_UPLOAD_INVALID", http.StatusRequestedRangeNotSatisfiable}
	// codeBodyTimeout answers a body that stopped arriving.
	codeBodyTimeout       = code{"BLOB_UPLOAD_INVALID", http.StatusRequestTimeout}
	codeStorageFull       = code{"DENIED", http.StatusInsufficientStorage}
	codeUnsupported       = code{"UNSUPPORTED", http.StatusMethodNotAllowed}
	codeNotFound          = code{"NOT_FOUND", http.StatusNotFound}
	codePaginationInvalid = code{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest}
	codeUnavailable       = code{"UNAVAILABLE", http.StatusServiceUnavailable}
	codeUnauthorized      = code{"UNAUTHORIZED", http.StatusUnauthorized}
	codeDenied            = code{"DENIED", http.StatusForbidden}
	codeTooManyRequests   = code{"TOOMANYREQUESTS", http.StatusTooManyRequests}
	codeInternal          = code{"INTERNAL_ERROR", http.StatusInternalServerError}
)

// Error is what a handler returns to answer with a spec error.
type Error struct {
	Code    code
	Message string
	Detail  any
	// Header is added to the response (e.g. Range on a 416).
	Header http.Header
	// Err is the cause, logged for 5xx, never sent.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code.Name, e.Message, e.Err)
	}
	return e.Code.Name + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func newError(c code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// fromClass maps an error class from the store or a driver to a spec code;
// notFound is the code a missing object gets in this handler's context.
func fromClass(err error, notFound code, what string) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, errdefs.ErrNotFound):
		return &Error{Code: notFound, Message: what + " unknown to registry", Err: err}
	case errors.Is(err, errdefs.ErrSizeMismatch):
		return &Error{Code: codeSizeInvalid, Message: what + ": size does not match", Err: err}
	case errors.Is(err, errdefs.ErrUnavailable):
		return &Error{Code: codeUnavailable, Message: what + " is busy, retry later", Err: err}
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return &Error{Code: codeBlobUploadInvalid, Message: what + " invalid", Err: err}
	case errors.Is(err, errdefs.ErrTimeout):
		return &Error{Code: codeBodyTimeout, Message: err.Error(), Err: err}
	case storageFull(err):
		// No code of the spec fits; DENIED is what Harbor answers when
		// its quota is reached, and 507 says it is the storage's state.
		return &Error{Code: codeStorageFull, Message: "the registry's storage is full: its administrator must raise its limit or move it to a larger storage", Err: err}
	case errors.Is(err, errdefs.ErrQuotaExceeded):
		return &Error{Code: codeDenied, Message: quotaMessage(err), Err: err}
	case errors.Is(err, errdefs.ErrLimitExceeded):
		return &Error{Code: codeTooManyRequests, Message: err.Error(), Err: err}
	default:
		return &Error{Code: codeInternal, Message: "internal error", Err: err}
	}
}

// quotaMessage is the store's refusal without the context it was
// wrapped in: the quota, its bound and the figures, and how to make room.
func quotaMessage(err error) string {
	if l, ok := errors.AsType[*store.ImageTooLargeError](err); ok {
		return l.Error() + "; push a smaller image, or ask a cluster administrator to raise the limit"
	}
	msg := err.Error()
	if q, ok := errors.AsType[*store.QuotaExceededError](err); ok {
		msg = q.Error()
	}
	return msg + "; make room by deleting from the project (a deleted image's layers count until garbage collection frees them), or ask a cluster administrator to raise the bound"
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// storageFull tells whether err says the storage has no room: the disk is
// full (ENOSPC), a volume's quota is reached (EDQUOT), an emptyDir at its
// limit.
func storageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// writeError is the one place an error becomes a response.
// errNotServing marks the 503 of a registry the Config took out of
// service: its state, not a failure to log at each request.
var errNotServing = errors.New("the registry is not serving")

// WriteTooManyRequests refuses a request the request limiter turned
// away, with the spec's TOOMANYREQUESTS error and Retry-After.
func WriteTooManyRequests(w http.ResponseWriter, r *http.Request, message string) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	writeError(w, r, slog.New(slog.DiscardHandler), newError(codeTooManyRequests, "%s", message))
}

func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := fromClass(err, codeInternal, "object")
	if e.Code.Status >= 500 && !errors.Is(err, errNotServing) {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("Content-Type", "application/json")
	for _, k := range []string{"Content-Length", "Docker-Content-Digest", "ETag", "Cache-Control", "Accept-Ranges"} {
		h.Del(k)
	}
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code.Name, Message: e.Message, Detail: e.Detail}}})
	w.WriteHeader(e.Code.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
