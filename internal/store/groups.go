package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Groups are API objects (user.openshift.io Group) in the objects table,
// served by the management API like any stored kind. The group_members
// table is their index, rewritten in the same transaction as the object,
// for the question the authenticator asks on every request it has not
// cached: which groups is a user in.

const userGroup = "user.openshift.io"

// GroupKey is the object key of a group.
func GroupKey(name string) ObjectKey {
	return ObjectKey{Group: userGroup, Resource: "groups", Name: name}
}

func isGroup(k ObjectKey) bool { return k.Group == userGroup && k.Resource == "groups" }

// groupUsers reads the members out of a group object's body.
func groupUsers(body []byte) ([]string, error) {
	var g struct {
		Users []string `json:"users"`
	}
	err := json.Unmarshal(body, &g)
	return g.Users, err
}

// indexGroup keeps group_members in step with the group object o.
func (s *Store) indexGroup(ctx context.Context, tx *sql.Tx, o Object, deleted bool) error {
	s.touchAccess(tx)
	if _, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_name = ?`, o.Name); err != nil {
		return fmt.Errorf("index %s: %w", o.ObjectKey, err)
	}
	if deleted {
		return nil
	}
	users, err := groupUsers(o.Body)
	if err != nil {
		return fmt.Errorf("index %s: %w", o.ObjectKey, err)
	}
	for _, u := range users {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO group_members (group_name, user_name) VALUES (?, ?) ON CONFLICT DO NOTHING`, o.Name, u); err != nil {
			return fmt.Errorf("index %s: %w", o.ObjectKey, err)
		}
	}
	return nil
}

// newGroupObject is the object of a group Berth writes itself.
func newGroupObject(name string, users []string, created time.Time) (Object, error) {
	if users == nil {
		users = []string{}
	}
	return newOwnObject(GroupKey(name), userGroup+"/v1", "Group", map[string]any{"users": users}, created)
}

// withUsers returns body (a group's JSON) with its users replaced.
func withUsers(body []byte, users []string) ([]byte, error) {
	if users == nil {
		users = []string{}
	}
	return withField(body, "users", users)
}

// Groups returns every group that has members, with its members, by name.
func (s *Store) Groups(ctx context.Context) (map[string][]string, error) {
	rows, err := s.query(ctx, `SELECT group_name, user_name FROM group_members ORDER BY group_name, user_name`)
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

// GroupMembers lists the members of group, sorted; a missing group is
// errdefs.ErrNotFound.
func (s *Store) GroupMembers(ctx context.Context, group string) ([]string, error) {
	o, err := s.GetObject(ctx, GroupKey(group))
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", group, err)
	}
	users, err := groupUsers(o.Body)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", group, err)
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// SetGroupMembers makes users exactly the members of group, in one
// transaction. With create, an existing group is
// errdefs.ErrAlreadyExists; without, a missing one is errdefs.ErrNotFound,
// and no users deletes the group.
func (s *Store) SetGroupMembers(ctx context.Context, group string, users []string, create bool) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if create {
			o, err := newGroupObject(group, users, s.now())
			if err != nil {
				return err
			}
			_, err = s.createObject(ctx, tx, o)
			return err
		}
		cur, err := getObject(ctx, tx, GroupKey(group))
		if err != nil {
			return fmt.Errorf("group %s: %w", group, err)
		}
		if len(users) == 0 {
			_, err = s.deleteObject(ctx, tx, cur.ObjectKey, 0, "")
			return err
		}
		if cur.Body, err = withUsers(cur.Body, users); err != nil {
			return err
		}
		_, err = s.updateObject(ctx, tx, cur, 0)
		return err
	})
}

// AddGroupMember puts user in group, creating the group if needed.
func (s *Store) AddGroupMember(ctx context.Context, group, user string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := getObject(ctx, tx, GroupKey(group))
		if errors.Is(err, errdefs.ErrNotFound) {
			o, err := newGroupObject(group, []string{user}, s.now())
			if err != nil {
				return err
			}
			_, err = s.createObject(ctx, tx, o)
			return err
		}
		if err != nil {
			return err
		}
		users, err := groupUsers(cur.Body)
		if err != nil {
			return fmt.Errorf("read %s: %w", cur.ObjectKey, err)
		}
		if slices.Contains(users, user) {
			return nil
		}
		if cur.Body, err = withUsers(cur.Body, append(users, user)); err != nil {
			return err
		}
		_, err = s.updateObject(ctx, tx, cur, cur.ResourceVersion)
		return err
	})
}

// scanMembers reads rows of (group, user): the groups in the order met,
// and each one's users. It closes rows.
func scanMembers(rows *sql.Rows) ([]string, map[string][]string, error) {
	defer rows.Close()
	members := map[string][]string{}
	var groups []string
	for rows.Next() {
		var g, u string
		if err := rows.Scan(&g, &u); err != nil {
			return nil, nil, err
		}
		if _, ok := members[g]; !ok {
			groups = append(groups, g)
		}
		members[g] = append(members[g], u)
	}
	return groups, members, rows.Err()
}

// dropMembers takes the users matching where (a condition on
// group_members.user_name, with args) out of every group they are in; a
// group keeps its object, with fewer or no members.
func (s *Store) dropMembers(ctx context.Context, tx *sql.Tx, where string, args ...any) error {
	rows, err := tx.QueryContext(ctx, `SELECT group_name, user_name FROM group_members WHERE `+where, args...)
	if err != nil {
		return fmt.Errorf("find group members: %w", err)
	}
	groups, drop, err := scanMembers(rows)
	if err != nil {
		return err
	}
	for _, g := range groups {
		cur, err := getObject(ctx, tx, GroupKey(g))
		if err != nil {
			return err
		}
		users, err := groupUsers(cur.Body)
		if err != nil {
			return fmt.Errorf("read %s: %w", cur.ObjectKey, err)
		}
		users = slices.DeleteFunc(users, func(u string) bool { return slices.Contains(drop[g], u) })
		if cur.Body, err = withUsers(cur.Body, users); err != nil {
			return err
		}
		if _, err := s.updateObject(ctx, tx, cur, 0); err != nil {
			return err
		}
	}
	return nil
}

// adoptLegacyGroups gives every group of the index without an object
// (written before groups were objects) its object.
func (s *Store) adoptLegacyGroups(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
SELECT m.group_name, m.user_name FROM group_members m
WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.api_group = ? AND o.resource = 'groups' AND o.namespace = '' AND o.name = m.group_name)
ORDER BY m.group_name, m.user_name`, userGroup)
		if err != nil {
			return fmt.Errorf("find groups without objects: %w", err)
		}
		names, members, err := scanMembers(rows)
		if err != nil {
			return err
		}
		for _, g := range names {
			o, err := newGroupObject(g, members[g], s.now())
			if err != nil {
				return err
			}
			if _, err := s.createObject(ctx, tx, o); err != nil {
				return fmt.Errorf("adopt group %s: %w", g, err)
			}
		}
		return nil
	})
}
