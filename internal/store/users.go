package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
)

// User is a known user: one Berth authenticates itself (PasswordHash set),
// one an identity provider vouched for, or a service account.
type User struct {
	Name         string
	PasswordHash string
	Created      time.Time
}

// CreateUser records a user; an existing name is errdefs.ErrAlreadyExists.
// A service account's user (system:serviceaccount:<project>:<name>) is
// created as its ServiceAccount object, in a project that exists.
func (s *Store) CreateUser(ctx context.Context, u User) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if project, name, ok := auth.ServiceAccountOf(u.Name); ok {
			o, err := newServiceAccountObject(project, name, s.now())
			if err == nil {
				_, err = s.createObject(ctx, tx, o)
			}
			return err
		}
		return s.insertUser(ctx, tx, u)
	})
}

func (s *Store) insertUser(ctx context.Context, tx *sql.Tx, u User) error {
	res, err := tx.ExecContext(ctx,
		`INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		u.Name, u.PasswordHash, s.micros())
	if err != nil {
		return fmt.Errorf("create user %s: %w", u.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", u.Name, errdefs.ErrAlreadyExists)
	}
	return s.appendEvent(ctx, tx, EventUserCreated, "", "", u.Name)
}

// User returns one user.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	var u User
	var created int64
	err := s.queryRow(ctx, `SELECT name, password_hash, created_at FROM users WHERE name = ?`, name).
		Scan(&u.Name, &u.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("read user %s: %w", name, err)
	}
	u.Created = time.UnixMicro(created).UTC()
	return u, nil
}

// UsersWithPrefix lists users whose names start with prefix, by name.
func (s *Store) UsersWithPrefix(ctx context.Context, prefix string) ([]User, error) {
	rows, err := s.query(ctx,
		`SELECT name, password_hash, created_at FROM users WHERE substr(name, 1, ?) = ? ORDER BY name`,
		len(prefix), prefix)
	if err != nil {
		return nil, fmt.Errorf("list users %q*: %w", prefix, err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created int64
		if err := rows.Scan(&u.Name, &u.PasswordHash, &created); err != nil {
			return nil, err
		}
		u.Created = time.UnixMicro(created).UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteUser removes a user, its tokens, group memberships and bindings;
// a service account's user goes with its ServiceAccount object.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if project, sa, ok := auth.ServiceAccountOf(name); ok {
			_, err := s.deleteObject(ctx, tx, ServiceAccountKey(project, sa), 0, "")
			return err
		}
		return s.forgetUser(ctx, tx, name)
	})
}

// forgetUser removes the user row of name and everything that names it.
func (s *Store) forgetUser(ctx context.Context, tx *sql.Tx, name string) error {
	res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, errdefs.ErrNotFound)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_name = ?`, name); err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	if err := s.dropMembers(ctx, tx, `user_name = ?`, name); err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	if _, err := s.dropSubjects(ctx, tx, `subject_kind = 'User' AND subject = ?`, name); err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	return s.appendEvent(ctx, tx, EventUserDeleted, "", "", name)
}

// Setting returns a cluster-wide setting; an unset one is
// errdefs.ErrNotFound.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.queryRow(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("setting %s: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	return v, nil
}

// InitSetting sets name to value unless it is already set, and returns the
// value in force: the first of several instances to start wins.
func (s *Store) InitSetting(ctx context.Context, name, value string) (string, error) {
	var v string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			name, value, s.micros()); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	})
	return v, err
}

// DeleteSetting unsets a cluster-wide setting; unsetting one that is not
// set is no error.
func (s *Store) DeleteSetting(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE name = ?`, name); err != nil {
			return fmt.Errorf("delete setting %s: %w", name, err)
		}
		return nil
	})
}

// DeleteExpiredTokens removes tokens that expired or were revoked before
// before, and returns how many went.
func (s *Store) DeleteExpiredTokens(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`DELETE FROM tokens WHERE expires_at < ? OR (revoked_at IS NOT NULL AND revoked_at < ?)`,
			before.UnixMicro(), before.UnixMicro())
		if err != nil {
			return fmt.Errorf("delete expired tokens: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// SetUserPassword replaces a user's password hash.
func (s *Store) SetUserPassword(ctx context.Context, name, hash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name)
		if err != nil {
			return fmt.Errorf("set password of %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %s: %w", name, errdefs.ErrNotFound)
		}
		s.touchAccess(tx)
		return nil
	})
}
