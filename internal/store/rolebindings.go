package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Subject is who a binding names: a "User" or a "Group".
type Subject struct {
	Kind string
	Name string
}

// CreateRoleBinding creates the binding name in project ("" for
// cluster-wide), granting role to subjects; an existing binding of that
// name is errdefs.ErrAlreadyExists and nothing changes.
func (s *Store) CreateRoleBinding(ctx context.Context, project, name, role string, subjects []Subject) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		have, err := bindingRole(ctx, tx, project, name)
		if err != nil {
			return err
		}
		if have != "" {
			return fmt.Errorf("binding %s in %q: %w", name, project, errdefs.ErrAlreadyExists)
		}
		return s.setSubjects(ctx, tx, project, name, role, subjects)
	})
}

// UpdateRoleBinding makes subjects exactly the holders of the binding name
// in project: those missing are added, those not listed removed, in one
// transaction (no subjects deletes the binding). A missing binding is
// errdefs.ErrNotFound; a binding's role never changes
// (errdefs.ErrInvalidArgument), as in Kubernetes, where roleRef is
// immutable.
//
// expect, when not "", is the binding's version as the writer read it
// (BindingVersion): a binding changed since is errdefs.ErrConflict and
// nothing changes, so two read-modify-write grants cannot lose one.
func (s *Store) UpdateRoleBinding(ctx context.Context, project, name, role string, subjects []Subject, expect string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		have, err := bindingRole(ctx, tx, project, name)
		if err != nil {
			return err
		}
		if have == "" {
			return fmt.Errorf("binding %s in %q: %w", name, project, errdefs.ErrNotFound)
		}
		if have != role {
			return fmt.Errorf("binding %s in %q grants %s, not %s: its role cannot change: %w", name, project, have, role, errdefs.ErrInvalidArgument)
		}
		if expect != "" {
			have, err := bindingSubjects(ctx, tx, project, name)
			if err != nil {
				return err
			}
			if BindingVersion(role, have) != expect {
				return fmt.Errorf("binding %s in %q changed since it was read: %w", name, project, errdefs.ErrConflict)
			}
		}
		return s.setSubjects(ctx, tx, project, name, role, subjects)
	})
}

// BindingVersion is a binding's resourceVersion: a digest of its role and
// subjects, so any change to them changes it. (Bindings are rows per
// subject with no change counter of their own; a digest serves the only
// purpose a version has here, refusing a write based on a stale read.)
func BindingVersion(role string, subjects []Subject) string {
	lines := []string{role}
	for _, sub := range subjects {
		lines = append(lines, sub.Kind+":"+sub.Name)
	}
	slices.Sort(lines[1:])
	lines = slices.Compact(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return "b" + hex.EncodeToString(sum[:8])
}

func bindingSubjects(ctx context.Context, tx *sql.Tx, project, name string) ([]Subject, error) {
	rows, err := tx.QueryContext(ctx, `SELECT subject_kind, subject FROM role_bindings WHERE project = ? AND name = ?`, project, name)
	if err != nil {
		return nil, fmt.Errorf("read binding %s in %q: %w", name, project, err)
	}
	defer rows.Close()
	var have []Subject
	for rows.Next() {
		var sub Subject
		if err := rows.Scan(&sub.Kind, &sub.Name); err != nil {
			return nil, err
		}
		have = append(have, sub)
	}
	return have, rows.Err()
}

// DeleteRoleBinding deletes the binding name in project; a missing one is
// errdefs.ErrNotFound.
func (s *Store) DeleteRoleBinding(ctx context.Context, project, name string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		role, err := bindingRole(ctx, tx, project, name)
		if err != nil {
			return err
		}
		if role == "" {
			return fmt.Errorf("binding %s in %q: %w", name, project, errdefs.ErrNotFound)
		}
		return s.setSubjects(ctx, tx, project, name, role, nil)
	})
}

// bindingRole is the role the binding name in project grants, "" when
// there is no such binding.
func bindingRole(ctx context.Context, tx *sql.Tx, project, name string) (string, error) {
	var role string
	err := tx.QueryRowContext(ctx, `SELECT role FROM role_bindings WHERE project = ? AND name = ? LIMIT 1`,
		project, name).Scan(&role)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read binding %s in %q: %w", name, project, err)
	}
	return role, nil
}

// setSubjects replaces the subjects of the binding (project, name) of
// role, appending an event per change.
func (s *Store) setSubjects(ctx context.Context, tx *sql.Tx, project, name, role string, subjects []Subject) error {
	want := map[Subject]bool{}
	for _, sub := range subjects {
		if sub.Kind != "User" && sub.Kind != "Group" {
			return fmt.Errorf("subject kind %q: %w", sub.Kind, errdefs.ErrInvalidArgument)
		}
		want[sub] = true
	}
	have, err := bindingSubjects(ctx, tx, project, name)
	if err != nil {
		return err
	}
	for _, sub := range have {
		if want[sub] {
			delete(want, sub)
			continue
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM role_bindings WHERE project = ? AND name = ? AND subject_kind = ? AND subject = ?`,
			project, name, sub.Kind, sub.Name); err != nil {
			return fmt.Errorf("unbind %s from %s %s in %q: %w", role, sub.Kind, sub.Name, project, err)
		}
		if err := s.appendEvent(ctx, tx, "RoleUnbound", project, "", role+" "+sub.Kind+":"+sub.Name); err != nil {
			return err
		}
	}
	for _, sub := range subjects {
		if !want[sub] {
			continue // already held, or listed twice
		}
		delete(want, sub)
		if _, err := tx.ExecContext(ctx, `
INSERT INTO role_bindings (project, name, role, subject_kind, subject, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			project, name, role, sub.Kind, sub.Name, s.micros()); err != nil {
			return fmt.Errorf("bind %s to %s %s in %q: %w", role, sub.Kind, sub.Name, project, err)
		}
		if err := s.appendEvent(ctx, tx, "RoleBound", project, "", role+" "+sub.Kind+":"+sub.Name); err != nil {
			return err
		}
	}
	return nil
}
