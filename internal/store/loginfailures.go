package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Failed logins count across the instances that share a store: a guesser
// spreading attempts over them is locked out as by one. The rules are the
// authenticator's throttle's (auth.Throttle): limit failures within window
// lock the key out for lockout, doubling with each lockout in a row (up
// to 16 times), and a success forgets the key.

// LoginLockout is when the lockout of key ends (zero: not locked out).
func (s *Store) LoginLockout(ctx context.Context, key string) (time.Time, error) {
	var until int64
	err := s.queryRow(ctx, `SELECT locked_until FROM login_failures WHERE key = ?`, key).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && until <= s.micros()) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read failed logins: %w", err)
	}
	return time.UnixMicro(until), nil
}

// RecordLoginFailure counts a failed login of key and returns when the
// lockout it caused ends (zero: none yet).
func (s *Store) RecordLoginFailure(ctx context.Context, key string, limit int, window, lockout time.Duration) (time.Time, error) {
	now := s.now()
	var until time.Time
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO login_failures (key, failures, first_at, strikes, locked_until) VALUES (?, 0, ?, 0, 0)
ON CONFLICT (key) DO NOTHING`, key, now.UnixMicro()); err != nil {
			return err
		}
		var failures, first, strikes, locked int64
		if err := tx.QueryRowContext(ctx, `SELECT failures, first_at, strikes, locked_until FROM login_failures WHERE key = ?`+s.dialect.forUpdate, key).
			Scan(&failures, &first, &strikes, &locked); err != nil {
			return err
		}
		if now.Sub(time.UnixMicro(first)) > window {
			failures, first = 0, now.UnixMicro()
		}
		failures++
		if failures >= int64(limit) {
			locked = now.Add(lockout << min(strikes, 4)).UnixMicro()
			strikes++
			failures, first = 0, now.UnixMicro()
		}
		if locked > now.UnixMicro() {
			until = time.UnixMicro(locked)
		}
		_, err := tx.ExecContext(ctx, `UPDATE login_failures SET failures = ?, first_at = ?, strikes = ?, locked_until = ? WHERE key = ?`,
			failures, first, strikes, locked, key)
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("count a failed login: %w", err)
	}
	return until, nil
}

// ForgetLoginFailures forgets key's failures and lockouts (it logged in).
func (s *Store) ForgetLoginFailures(ctx context.Context, key string) error {
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE key = ?`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget failed logins: %w", err)
	}
	return nil
}

// DeleteStaleLoginFailures forgets keys not locked out whose last count
// began before before, and reports how many went.
func (s *Store) DeleteStaleLoginFailures(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM login_failures WHERE first_at < ? AND locked_until < ?`, before.UnixMicro(), s.micros())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("forget old failed logins: %w", err)
	}
	return n, nil
}
