package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
)

// One request writes to an upload session at a time: it holds the
// session's writer lease. A store of one process (SQLite: the data
// directory's lock) keeps leases in that process's memory, where taking
// one writes nothing to disk and a process that dies takes its leases
// with it. A store that instances share keeps them in the session's row,
// so that a chunked upload begun on one instance continues on another,
// and a lease a dead instance held lapses like any other.

// uploadLeaser keeps the writer leases of upload sessions.
type uploadLeaser interface {
	// acquire gives holder the lease of session id until until, unless
	// another holds it (a *LeaseHeldError); a session that does not exist
	// is errdefs.ErrNotFound (rows) or is found so by the caller (memory).
	acquire(ctx context.Context, id, holder string, now, until time.Time) error
	// renew extends holder's lease; false when holder no longer has it.
	renew(ctx context.Context, id, holder string, until time.Time) (bool, error)
	// holds tells, in the transaction that records an advance, whether
	// holder has the lease ("": no one has one) as of now.
	holds(ctx context.Context, tx *sql.Tx, id, holder string, now time.Time) (bool, error)
	// release gives holder's lease back (tx: inside a write, or nil).
	release(ctx context.Context, tx *sql.Tx, id, holder string) error
}

// LeaseHeldError says another writer holds an upload session's lease.
type LeaseHeldError struct {
	ID    string
	Since time.Time
}

func (e *LeaseHeldError) Error() string {
	return "upload " + e.ID + " is being written by another request (for " + time.Since(e.Since).Round(time.Millisecond).String() + ")"
}

func (e *LeaseHeldError) Unwrap() error { return errdefs.ErrUnavailable }

// AcquireUpload takes the writer lease of session id of repo for holder
// until until, and returns the session: one request writes to a session
// at a time. A session of another repository is errdefs.ErrNotFound like
// one that never existed; a lease another holder has, not lapsed, is a
// *LeaseHeldError.
func (s *Store) AcquireUpload(ctx context.Context, repo, id, holder string, until time.Time) (Upload, error) {
	if err := s.leases.acquire(ctx, id, holder, s.now(), until); err != nil {
		// Held, but said so only of a session of repo: another
		// repository's is one that never existed.
		if _, rerr := s.Upload(ctx, repo, id); rerr != nil {
			return Upload{}, rerr
		}
		return Upload{}, err
	}
	u, err := s.Upload(ctx, repo, id)
	if err != nil {
		s.leases.release(context.WithoutCancel(ctx), nil, id, holder)
		return Upload{}, err
	}
	u.Lease = holder
	return u, nil
}

// RenewUpload extends holder's lease of session id to until; it fails
// with errdefs.ErrUnavailable when holder no longer has it.
func (s *Store) RenewUpload(ctx context.Context, id, holder string, until time.Time) error {
	ok, err := s.leases.renew(ctx, id, holder, until)
	if err != nil {
		return fmt.Errorf("upload %s: renew the lease: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("upload %s: the lease is no longer held: %w", id, errdefs.ErrUnavailable)
	}
	return nil
}

// ReleaseUpload gives back holder's lease of session id; a lease holder
// no longer has is no error.
func (s *Store) ReleaseUpload(ctx context.Context, id, holder string) error {
	return s.leases.release(ctx, nil, id, holder)
}

// AdvanceUpload records that session id grew from size from to u.Size with
// hash state u.HashState and driver state u.DriverState, written in epoch
// u.Epoch, by the holder of its writer lease u.Lease ("": a session no one
// holds); with release, the lease is given back with the record.
// It fails with errdefs.ErrUnavailable if the session is no longer at
// from, or the lease is no longer u.Lease's (it lapsed, and another
// writer took it).
func (s *Store) AdvanceUpload(ctx context.Context, u Upload, from int64, release bool) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		held, err := s.leases.holds(ctx, tx, u.ID, u.Lease, s.now())
		if err != nil {
			return fmt.Errorf("advance upload %s: %w", u.ID, err)
		}
		if !held {
			return fmt.Errorf("upload %s: its writer lease passed to another writer: %w", u.ID, errdefs.ErrUnavailable)
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE uploads SET size = ?, hash_state = ?, epoch = ?, driver_state = ?, updated_at = ? WHERE id = ? AND size = ?`,
			u.Size, u.HashState, u.Epoch, u.DriverState, s.micros(), u.ID, from)
		if err != nil {
			return fmt.Errorf("advance upload %s: %w", u.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = ?`, u.ID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("upload %s ended (expired or cancelled): %w", u.ID, errdefs.ErrNotFound)
			}
			return fmt.Errorf("upload %s moved on from %d: %w", u.ID, from, errdefs.ErrUnavailable)
		}
		if release {
			return s.leases.release(ctx, tx, u.ID, u.Lease)
		}
		return nil
	})
}

// memoryLeases are the leases of a store of one process, by session ID.
type memoryLeases struct {
	mu sync.Mutex
	m  map[string]memoryLease
}

type memoryLease struct {
	holder       string
	since, until time.Time
}

func (l *memoryLeases) acquire(_ context.Context, id, holder string, now, until time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.m[id]; ok && cur.holder != holder && now.Before(cur.until) {
		return &LeaseHeldError{ID: id, Since: cur.since}
	}
	if l.m == nil {
		l.m = map[string]memoryLease{}
	}
	l.m[id] = memoryLease{holder: holder, since: now, until: until}
	return nil
}

func (l *memoryLeases) holds(_ context.Context, _ *sql.Tx, id, holder string, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.m[id]
	if holder == "" {
		return !ok || !now.Before(cur.until), nil
	}
	return ok && cur.holder == holder, nil
}

func (l *memoryLeases) renew(_ context.Context, id, holder string, until time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.m[id]
	if !ok || cur.holder != holder {
		return false, nil
	}
	cur.until = until
	l.m[id] = cur
	return true, nil
}

func (l *memoryLeases) release(_ context.Context, _ *sql.Tx, id, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.m[id]; ok && cur.holder == holder {
		delete(l.m, id)
	}
	return nil
}

// rowLeases keep each session's lease in its row (lease_holder,
// lease_since, lease_until), for instances that share the store. Times
// are the instances' clocks: a lease outlives a skew smaller than it.
type rowLeases struct{ s *Store }

func (l rowLeases) acquire(ctx context.Context, id, holder string, now, until time.Time) error {
	return l.s.pushTx(ctx, func(tx *sql.Tx) error {
		var cur string
		var since, lapses int64
		err := tx.QueryRowContext(ctx, `SELECT lease_holder, lease_since, lease_until FROM uploads WHERE id = ?`+l.s.dialect.forUpdate, id).
			Scan(&cur, &since, &lapses)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("upload %s: %w", id, errdefs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("lease upload %s: %w", id, err)
		}
		if cur != "" && cur != holder && now.UnixMicro() < lapses {
			return &LeaseHeldError{ID: id, Since: time.UnixMicro(since)}
		}
		_, err = tx.ExecContext(ctx, `UPDATE uploads SET lease_holder = ?, lease_since = ?, lease_until = ? WHERE id = ?`,
			holder, now.UnixMicro(), until.UnixMicro(), id)
		return err
	})
}

func (l rowLeases) holds(ctx context.Context, tx *sql.Tx, id, holder string, now time.Time) (bool, error) {
	var cur string
	var lapses int64
	err := tx.QueryRowContext(ctx, `SELECT lease_holder, lease_until FROM uploads WHERE id = ?`+l.s.dialect.forUpdate, id).Scan(&cur, &lapses)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil // the update that follows finds the session gone
	}
	if err != nil {
		return false, err
	}
	if holder == "" {
		return cur == "" || now.UnixMicro() >= lapses, nil
	}
	return cur == holder, nil
}

func (l rowLeases) renew(ctx context.Context, id, holder string, until time.Time) (bool, error) {
	renewed := false
	err := l.s.pushTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE uploads SET lease_until = ? WHERE id = ? AND lease_holder = ?`, until.UnixMicro(), id, holder)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		renewed = n > 0
		return nil
	})
	return renewed, err
}

func (l rowLeases) release(ctx context.Context, tx *sql.Tx, id, holder string) error {
	const q = `UPDATE uploads SET lease_holder = '', lease_until = 0 WHERE id = ? AND lease_holder = ?`
	if tx != nil {
		_, err := tx.ExecContext(ctx, q, id, holder)
		return err
	}
	return l.s.pushTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, id, holder)
		return err
	})
}
