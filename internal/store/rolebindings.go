package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Subject is who a binding names: a "User" or a "Group".
type Subject struct {
	Kind string
	Name string
}

// CreateRoleBinding grants role in project ("" for cluster-wide) to
// subjects, as one binding; if role is already granted to anyone there,
// it is errdefs.ErrAlreadyExists and nothing changes.
func (s *Store) CreateRoleBinding(ctx context.Context, project, role string, subjects []Subject) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := countBinding(ctx, tx, project, role)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("binding of %s in %q: %w", role, project, errdefs.ErrAlreadyExists)
		}
		return s.setSubjects(ctx, tx, project, role, subjects)
	})
}

// UpdateRoleBinding makes subjects exactly the holders of role in project:
// those missing are added, those not listed removed, in one transaction
// (no subjects deletes the binding). A role granted to nobody there is
// errdefs.ErrNotFound.
func (s *Store) UpdateRoleBinding(ctx context.Context, project, role string, subjects []Subject) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := countBinding(ctx, tx, project, role)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("binding of %s in %q: %w", role, project, errdefs.ErrNotFound)
		}
		return s.setSubjects(ctx, tx, project, role, subjects)
	})
}

// DeleteRoleBinding takes role from everyone in project; a role granted
// to nobody there is errdefs.ErrNotFound.
func (s *Store) DeleteRoleBinding(ctx context.Context, project, role string) error {
	return s.UpdateRoleBinding(ctx, project, role, nil)
}

func countBinding(ctx context.Context, tx *sql.Tx, project, role string) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM role_bindings WHERE project = ? AND role = ?`,
		project, role).Scan(&n); err != nil {
		return 0, fmt.Errorf("read binding of %s in %q: %w", role, project, err)
	}
	return n, nil
}

// setSubjects replaces the subjects of (project, role), appending an
// event per change.
func (s *Store) setSubjects(ctx context.Context, tx *sql.Tx, project, role string, subjects []Subject) error {
	want := map[Subject]bool{}
	for _, sub := range subjects {
		if sub.Kind != "User" && sub.Kind != "Group" {
			return fmt.Errorf("subject kind %q: %w", sub.Kind, errdefs.ErrInvalidArgument)
		}
		want[sub] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT subject_kind, subject FROM role_bindings WHERE project = ? AND role = ?`, project, role)
	if err != nil {
		return fmt.Errorf("read binding of %s in %q: %w", role, project, err)
	}
	var have []Subject
	for rows.Next() {
		var sub Subject
		if err := rows.Scan(&sub.Kind, &sub.Name); err != nil {
			rows.Close()
			return err
		}
		have = append(have, sub)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, sub := range have {
		if want[sub] {
			delete(want, sub)
			continue
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM role_bindings WHERE project = ? AND role = ? AND subject_kind = ? AND subject = ?`,
			project, role, sub.Kind, sub.Name); err != nil {
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
INSERT INTO role_bindings (project, role, subject_kind, subject, created_at) VALUES (?, ?, ?, ?, ?)`,
			project, role, sub.Kind, sub.Name, s.micros()); err != nil {
			return fmt.Errorf("bind %s to %s %s in %q: %w", role, sub.Kind, sub.Name, project, err)
		}
		if err := s.appendEvent(ctx, tx, "RoleBound", project, "", role+" "+sub.Kind+":"+sub.Name); err != nil {
			return err
		}
	}
	return nil
}
