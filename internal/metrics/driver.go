package metrics

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Driver wraps a blob driver so that each operation is timed
// (imageregistry_storage_duration_seconds) and its failures counted by
// kind (imageregistry_storage_errors_total). Operations are named as the
// reference names its driver's, "StorageDriver.<Method>".
//
// The wrapper has every optional capability of storage (Redirector,
// Volatile, Recoverer, HealthChecker), each answering as a driver without
// it would when d lacks it: no redirect, no epoch, nothing to recover,
// nothing to check; and it is a Seeker exactly when d is.
func (m *Metrics) Driver(d storage.Driver) storage.Driver {
	op := func(name string) storageOp {
		return storageOp{name: name, duration: m.storageDuration.WithLabelValues(name), errors: m.storageErrors}
	}
	t := &timedDriver{d: d,
		open: op("StorageDriver.Open"), append: op("StorageDriver.Append"), readUpload: op("StorageDriver.ReadUpload"),
		commit: op("StorageDriver.Commit"), abort: op("StorageDriver.Abort"), delete: op("StorageDriver.Delete"),
		redirect: op("StorageDriver.RedirectURL"), recover: op("StorageDriver.Recover"),
	}
	if _, ok := d.(storage.Seeker); ok {
		return timedSeeker{t}
	}
	return t
}

type timedDriver struct {
	d                                                                  storage.Driver
	open, append, readUpload, commit, abort, delete, redirect, recover storageOp
}

// storageOp is one operation's series, resolved once.
type storageOp struct {
	name     string
	duration prometheus.Observer
	errors   *prometheus.CounterVec
}

// observe records one call that started at start and ended with err.
func (o storageOp) observe(start time.Time, err error) {
	o.duration.Observe(time.Since(start).Seconds())
	if code := errorCode(err); code != "" {
		o.errors.WithLabelValues(o.name, code).Inc()
	}
}

// errorCode is the kind of a driver failure, in the reference's codes
// where they fit: "" for no error and for what is no storage failure (the
// caller's context ending, a size the client got wrong).
func errorCode(err error) string {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, errdefs.ErrSizeMismatch):
		return ""
	case errors.Is(err, syscall.EROFS):
		return "READ_ONLY_FILESYSTEM"
	case errors.Is(err, syscall.EFBIG):
		return "FILE_TOO_LARGE"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "DEVICE_OUT_OF_SPACE"
	case errors.Is(err, errdefs.ErrNotFound):
		return "PATH_NOT_FOUND"
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return "INVALID_OFFSET" // the only argument a caller gets wrong: the offset of an append
	case errors.Is(err, errdefs.ErrUnavailable):
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

// Unwrap returns the driver wrapped.
func (t *timedDriver) Unwrap() storage.Driver { return t.d }

func (t *timedDriver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := t.d.Open(ctx, dgst, offset, length)
	t.open.observe(start, err)
	return rc, err
}

// timedSeeker is the wrapper of a driver that is a storage.Seeker: a
// wrapper of one that is not must not claim to be.
type timedSeeker struct{ *timedDriver }

// OpenSeeker implements storage.Seeker, timed as Open.
func (t timedSeeker) OpenSeeker(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, error) {
	start := time.Now()
	rc, err := t.d.(storage.Seeker).OpenSeeker(ctx, dgst)
	t.open.observe(start, err)
	return rc, err // as it is: an *os.File goes on to sendfile
}

// Append's time includes reading the client's bytes, which arrive as the
// driver writes them. A failure to read them is the client's, not the
// storage's, and is not counted as a storage error.
func (t *timedDriver) Append(ctx context.Context, u storage.Upload, offset int64, r io.Reader) (int64, []byte, error) {
	start := time.Now()
	src := &sourceReader{r: r}
	n, state, err := t.d.Append(ctx, u, offset, src)
	if src.err != nil {
		t.append.duration.Observe(time.Since(start).Seconds())
	} else {
		t.append.observe(start, err)
	}
	return n, state, err
}

// sourceReader remembers whether the bytes to append failed to arrive.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (t *timedDriver) ReadUpload(ctx context.Context, u storage.Upload) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := t.d.ReadUpload(ctx, u)
	t.readUpload.observe(start, err)
	return rc, err
}

func (t *timedDriver) Commit(ctx context.Context, u storage.Upload, dgst digest.Digest, size int64) error {
	start := time.Now()
	err := t.d.Commit(ctx, u, dgst, size)
	t.commit.observe(start, err)
	return err
}

func (t *timedDriver) Abort(ctx context.Context, u storage.Upload) error {
	start := time.Now()
	err := t.d.Abort(ctx, u)
	t.abort.observe(start, err)
	return err
}

func (t *timedDriver) Delete(ctx context.Context, dgst digest.Digest) error {
	start := time.Now()
	err := t.d.Delete(ctx, dgst)
	t.delete.observe(start, err)
	return err
}

// RedirectURL implements storage.Redirector: "" (stream the blob) when
// the driver cannot redirect.
func (t *timedDriver) RedirectURL(ctx context.Context, dgst digest.Digest) (string, error) {
	rd, ok := t.d.(storage.Redirector)
	if !ok {
		return "", nil
	}
	start := time.Now()
	url, err := rd.RedirectURL(ctx, dgst)
	t.redirect.observe(start, err)
	return url, err
}

// Epoch implements storage.Volatile: "" (appends are durable) when the
// driver is not volatile, which is what the registry assumes of such a
// driver.
func (t *timedDriver) Epoch() string {
	if v, ok := t.d.(storage.Volatile); ok {
		return v.Epoch()
	}
	return ""
}

// Recover implements storage.Recoverer: nothing to do when the driver
// keeps no leftovers.
func (t *timedDriver) Recover(ctx context.Context, live func(id string) bool) error {
	rec, ok := t.d.(storage.Recoverer)
	if !ok {
		return nil
	}
	start := time.Now()
	err := rec.Recover(ctx, live)
	t.recover.observe(start, err)
	return err
}

// Health implements storage.HealthChecker: healthy when the driver cannot
// tell. Not timed: /healthz probes are not storage operations.
func (t *timedDriver) Health(ctx context.Context) error {
	if hc, ok := t.d.(storage.HealthChecker); ok {
		return hc.Health(ctx)
	}
	return nil
}
