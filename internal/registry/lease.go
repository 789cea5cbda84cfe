package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/store"
)

// leaseTTL is how long an upload session's writer lease lasts without
// renewal: a request renews it while it runs, so this is how long a
// session stays locked after the process writing to it died.
const leaseTTL = 30 * time.Second

// lease is a request's writer lease of an upload session, kept by the
// store so that one request writes to a session at a time, whichever
// instance it reached. The request that takes it owns it: release stops
// its renewal and gives it back (again, when the session's last record
// gave it back already: the store forgets it either way).
type lease struct {
	r          *Registry
	id, holder string
	stop, done chan struct{}
}

// acquireSession takes the writer lease of session id of repo and returns
// the session.
func (r *Registry) acquireSession(ctx context.Context, repo, id string) (store.Upload, *lease, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	holder := hex.EncodeToString(b)
	u, err := r.meta.AcquireUpload(ctx, repo, id, holder, time.Now().Add(r.leaseTTL))
	if held, ok := errors.AsType[*store.LeaseHeldError](err); ok {
		return store.Upload{}, nil, &Error{Code: codeUnavailable, Header: http.Header{"Retry-After": {"1"}}, Err: err,
			Message: held.Error() + "; retry when it ends"}
	}
	if err != nil {
		return store.Upload{}, nil, fromClass(err, codeBlobUploadUnknown, "upload "+id)
	}
	l := &lease{r: r, id: id, holder: holder, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew(context.WithoutCancel(ctx))
	return u, l, nil
}

// renew extends the lease while the request holds it.
func (l *lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.r.leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if err := l.r.meta.RenewUpload(ctx, l.id, l.holder, time.Now().Add(l.r.leaseTTL)); err != nil {
				// The request's next record of the session will fail too
				// (it checks the lease): nothing it wrote is counted.
				l.r.log.WarnContext(ctx, "renew the writer lease of an upload", "id", l.id, "err", err)
			}
		}
	}
}

// release stops the renewal and gives the lease back.
func (l *lease) release(ctx context.Context) {
	close(l.stop)
	<-l.done
	if err := l.r.meta.ReleaseUpload(context.WithoutCancel(ctx), l.id, l.holder); err != nil {
		l.r.log.WarnContext(ctx, "release the writer lease of an upload", "id", l.id, "err", err)
	}
}
