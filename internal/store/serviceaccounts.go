package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/auth"
)

// Service accounts are API objects (core ServiceAccount) in the objects
// table, served by the management API like any stored kind. Their user
// (system:serviceaccount:<project>:<name>, which tokens are issued to) is
// their index in the users table, created and removed in the same
// transaction as the object; removing it takes the account's tokens,
// group memberships and grants anywhere with it.

// ServiceAccountKey is the object key of a service account.
func ServiceAccountKey(project, name string) ObjectKey {
	return ObjectKey{Resource: "serviceaccounts", Namespace: project, Name: name}
}

func isServiceAccount(k ObjectKey) bool { return k.Group == "" && k.Resource == "serviceaccounts" }

func (s *Store) indexServiceAccount(ctx context.Context, tx *sql.Tx, o Object, deleted bool) error {
	s.touchAccess(tx)
	user := auth.ServiceAccountUser(o.Namespace, o.Name)
	if deleted {
		return s.forgetUser(ctx, tx, user)
	}
	var exists int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = ?`, user).Scan(&exists)
	if errors.Is(err, sql.ErrNoRows) {
		return s.insertUser(ctx, tx, User{Name: user})
	}
	return err
}

func newServiceAccountObject(project, name string, created time.Time) (Object, error) {
	return newOwnObject(ServiceAccountKey(project, name), "v1", "ServiceAccount", nil, created)
}

// adoptLegacyServiceAccounts gives every service account user without an
// object (written before accounts were objects) its object; one of a
// project that no longer exists is removed instead.
func (s *Store) adoptLegacyServiceAccounts(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		const prefix = "system:serviceaccount:"
		rows, err := tx.QueryContext(ctx, `SELECT name, created_at FROM users WHERE substr(name, 1, ?) = ?`, len(prefix), prefix)
		if err != nil {
			return fmt.Errorf("find service accounts: %w", err)
		}
		type legacy struct {
			user    string
			created int64
		}
		var found []legacy
		for rows.Next() {
			var l legacy
			if err := rows.Scan(&l.user, &l.created); err != nil {
				rows.Close()
				return err
			}
			found = append(found, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range found {
			project, name, ok := auth.ServiceAccountOf(l.user)
			if !ok {
				continue
			}
			if _, err := getObject(ctx, tx, ServiceAccountKey(project, name)); err == nil {
				continue
			}
			exists, err := projectExists(ctx, tx, project)
			if err != nil {
				return err
			}
			if !exists {
				if err := s.forgetUser(ctx, tx, l.user); err != nil {
					return err
				}
				continue
			}
			o, err := newServiceAccountObject(project, name, time.UnixMicro(l.created))
			if err != nil {
				return err
			}
			if _, err := s.createObject(ctx, tx, o); err != nil {
				return fmt.Errorf("adopt service account %s: %w", l.user, err)
			}
		}
		return nil
	})
}
