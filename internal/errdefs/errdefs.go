// Package errdefs holds the error classes that Berth's packages wrap with
// context. Callers test a class with errors.Is; only the protocol edges
// (the /v2 handlers, later the API server) turn a class into a wire code.
package errdefs

import "errors"

var (
	// ErrNotFound: the named object (blob, manifest, tag, upload,
	// repository) does not exist or is not visible in that repository.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a create found the object present. Content-addressed
	// writes treat it as success.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: the caller's input is malformed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrSizeMismatch: content did not have the length it was declared with.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrConflict: a write named a version of the object that is no longer
	// current (optimistic concurrency); read it again and retry.
	ErrConflict = errors.New("conflict")
	// ErrGone: what was asked for is no longer kept (a watch from a
	// resourceVersion older than the retained history).
	ErrGone = errors.New("gone")
	// ErrUnavailable: the object is busy (an upload written by another
	// request); retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrTimeout: the client was too slow (a request body that stopped
	// arriving at the minimum rate); what arrived before may be kept.
	ErrTimeout = errors.New("timeout")
	// ErrLimitExceeded: the request would go beyond a configured limit (open
	// upload sessions of a user or project); finishing or cancelling some
	// of what is open makes room.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrQuotaExceeded: the write would take a project beyond its quota or
	// limit range; deleting content, or an administrator raising the
	// bound, makes room. Unlike ErrLimitExceeded, waiting does not.
	ErrQuotaExceeded = errors.New("quota exceeded")
)
