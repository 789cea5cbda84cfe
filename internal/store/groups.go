package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Groups returns every group with its members, by name; a group exists
// while it has members.
func (s *Store) Groups(ctx context.Context) (map[string][]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT group_name, user_name FROM group_members ORDER BY group_name, user_name`)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var g, u string
		if err := rows.Scan(&g, &u); err != nil {
			return nil, err
		}
		out[g] = append(out[g], u)
	}
	return out, rows.Err()
}

// GroupMembers lists the members of group; a group without members is
// errdefs.ErrNotFound.
func (s *Store) GroupMembers(ctx context.Context, group string) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT user_name FROM group_members WHERE group_name = ? ORDER BY user_name`, group)
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", group, err)
	}
	users, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", group, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("group %s: %w", group, errdefs.ErrNotFound)
	}
	return users, nil
}

// SetGroupMembers makes users exactly the members of group, in one
// transaction. With create, a group that has members already is
// errdefs.ErrAlreadyExists; without, a group with none is
// errdefs.ErrNotFound.
func (s *Store) SetGroupMembers(ctx context.Context, group string, users []string, create bool) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM group_members WHERE group_name = ?`, group).Scan(&n); err != nil {
			return fmt.Errorf("read group %s: %w", group, err)
		}
		switch {
		case create && n > 0:
			return fmt.Errorf("group %s: %w", group, errdefs.ErrAlreadyExists)
		case !create && n == 0:
			return fmt.Errorf("group %s: %w", group, errdefs.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_name = ?`, group); err != nil {
			return fmt.Errorf("set members of %s: %w", group, err)
		}
		for _, u := range users {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO group_members (group_name, user_name) VALUES (?, ?) ON CONFLICT DO NOTHING`, group, u); err != nil {
				return fmt.Errorf("add %s to group %s: %w", u, group, err)
			}
		}
		return s.appendEvent(ctx, tx, "GroupChanged", "", "", group)
	})
}
