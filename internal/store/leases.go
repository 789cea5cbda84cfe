package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// JobLease is who runs a background job.
type JobLease struct {
	Name     string
	Holder   string
	Acquired time.Time
	Expires  time.Time
}

// AcquireJobLease takes (or renews) the lease of job name for holder for
// ttl, by the database's clock, unless another holder has it unexpired.
// It reports whether holder has it now.
func (s *Store) AcquireJobLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := s.dialect.nowMicros
	var got string
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
INSERT INTO job_leases (name, holder, acquired_at, expires_at) VALUES (?, ?, `+now+`, `+now+` + ?)
ON CONFLICT (name) DO UPDATE SET
	acquired_at = CASE WHEN job_leases.holder = excluded.holder THEN job_leases.acquired_at ELSE excluded.acquired_at END,
	holder = excluded.holder, expires_at = excluded.expires_at
WHERE job_leases.holder = excluded.holder OR job_leases.expires_at < excluded.acquired_at
RETURNING holder`, name, holder, ttl.Microseconds()).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // another holds it
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return got == holder, nil
}

// ReleaseJobLease gives back holder's lease of job name, so that another
// instance takes the job at once; a lease holder no longer has is no
// error.
func (s *Store) ReleaseJobLease(ctx context.Context, name, holder string) error {
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM job_leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// JobLeases lists the leases, by job name.
func (s *Store) JobLeases(ctx context.Context) ([]JobLease, error) {
	rows, err := s.query(ctx, `SELECT name, holder, acquired_at, expires_at FROM job_leases ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []JobLease
	for rows.Next() {
		var l JobLease
		var acquired, expires int64
		if err := rows.Scan(&l.Name, &l.Holder, &acquired, &expires); err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		l.Acquired, l.Expires = time.UnixMicro(acquired).UTC(), time.UnixMicro(expires).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}
