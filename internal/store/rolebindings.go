package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
)

// Role bindings are API objects (rbac.authorization.k8s.io RoleBinding and
// ClusterRoleBinding) in the objects table, like any stored kind: the
// management API serves them with watch, patch and resourceVersions. The
// role_bindings table is their index, rewritten in the same transaction
// as the object, for the two questions the authorizer asks often: which
// roles does a subject hold in a project, and in which projects is it
// bound. A service account subject is indexed as its user name
// (system:serviceaccount:<project>:<name>).

// Subject is who a binding names, as the index keeps it: a "User" or a
// "Group".
type Subject struct {
	Kind string
	Name string
}

const rbacGroup = "rbac.authorization.k8s.io"

// BindingKey is the object key of the binding name in project ("" for a
// cluster-wide binding).
func BindingKey(project, name string) ObjectKey {
	if project == "" {
		return ObjectKey{Group: rbacGroup, Resource: "clusterrolebindings", Name: name}
	}
	return ObjectKey{Group: rbacGroup, Resource: "rolebindings", Namespace: project, Name: name}
}

func isBinding(k ObjectKey) bool {
	return k.Group == rbacGroup && (k.Resource == "rolebindings" || k.Resource == "clusterrolebindings")
}

// bindingJSON is the part of a binding object the index needs.
type bindingJSON struct {
	RoleRef struct {
		Name string `json:"name"`
	} `json:"roleRef"`
	Subjects []bindingSubject `json:"subjects"`
}

type bindingSubject struct {
	Kind      string `json:"kind"`
	APIGroup  string `json:"apiGroup,omitempty"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

// indexed is how the index names s, a subject of a binding in project.
func (b bindingSubject) indexed(project string) (Subject, bool) {
	switch b.Kind {
	case "User", "Group":
		return Subject{Kind: b.Kind, Name: b.Name}, true
	case "ServiceAccount":
		ns := b.Namespace
		if ns == "" {
			ns = project
		}
		return Subject{Kind: "User", Name: auth.ServiceAccountUser(ns, b.Name)}, true
	}
	return Subject{}, false
}

// subjectJSON is the object form of an indexed subject.
func subjectJSON(s Subject) bindingSubject {
	if s.Kind == "User" {
		if project, name, ok := auth.ServiceAccountOf(s.Name); ok {
			return bindingSubject{Kind: "ServiceAccount", Name: name, Namespace: project}
		}
	}
	return bindingSubject{Kind: s.Kind, APIGroup: rbacGroup, Name: s.Name}
}

// indexObject keeps the index of o, when o is a binding, a group or a
// service account, in step with its object (deleted: o is gone), and marks
// the transaction as an access change (as a ClusterRole's is, which has no
// index).
func (s *Store) indexObject(ctx context.Context, tx *sql.Tx, o Object, deleted bool) error {
	if isClusterRole(o.ObjectKey) {
		s.touchAccess(tx)
		return nil
	}
	if isGroup(o.ObjectKey) {
		return s.indexGroup(ctx, tx, o, deleted)
	}
	if isServiceAccount(o.ObjectKey) {
		return s.indexServiceAccount(ctx, tx, o, deleted)
	}
	if !isBinding(o.ObjectKey) {
		return nil
	}
	s.touchAccess(tx)
	if _, err := tx.ExecContext(ctx, `DELETE FROM role_bindings WHERE project = ? AND name = ?`, o.Namespace, o.Name); err != nil {
		return fmt.Errorf("index %s: %w", o.ObjectKey, err)
	}
	if deleted {
		return nil
	}
	var b bindingJSON
	if err := json.Unmarshal(o.Body, &b); err != nil {
		return fmt.Errorf("index %s: %w", o.ObjectKey, err)
	}
	for _, sub := range b.Subjects {
		idx, ok := sub.indexed(o.Namespace)
		if !ok {
			return fmt.Errorf("index %s: subject kind %q: %w", o.ObjectKey, sub.Kind, errdefs.ErrInvalidArgument)
		}
		if _, err := tx.ExecContext(ctx, `
INSERT INTO role_bindings (project, name, role, subject_kind, subject, created_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING`, o.Namespace, o.Name, b.RoleRef.Name, idx.Kind, idx.Name, o.Created.UnixMicro()); err != nil {
			return fmt.Errorf("index %s: %w", o.ObjectKey, err)
		}
	}
	return nil
}

// newBindingObject is the object of a binding Berth creates itself (a
// project's admin, the bootstrap grants).
func newBindingObject(project, name, role string, subjects []Subject, created time.Time) (Object, error) {
	kind := "RoleBinding"
	if project == "" {
		kind = "ClusterRoleBinding"
	}
	list := []bindingSubject{}
	for _, sub := range subjects {
		list = append(list, subjectJSON(sub))
	}
	return newOwnObject(BindingKey(project, name), rbacGroup+"/v1", kind, map[string]any{
		"subjects": list,
		"roleRef":  map[string]string{"apiGroup": rbacGroup, "kind": "ClusterRole", "name": role},
	}, created)
}

// AddBinding grants role to a user or group ("User" or "Group") in project
// ("" for cluster-wide), in the binding named after the role. Granting
// again is a no-op; a binding of that name that grants another role is
// errdefs.ErrAlreadyExists.
func (s *Store) AddBinding(ctx context.Context, project, role, kind, subject string) error {
	if kind != "User" && kind != "Group" {
		return fmt.Errorf("subject kind %q: %w", kind, errdefs.ErrInvalidArgument)
	}
	add := Subject{Kind: kind, Name: subject}
	return s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := getObject(ctx, tx, BindingKey(project, role))
		if errors.Is(err, errdefs.ErrNotFound) {
			o, err := newBindingObject(project, role, role, []Subject{add}, s.now())
			if err != nil {
				return err
			}
			_, err = s.createObject(ctx, tx, o)
			return err
		}
		if err != nil {
			return err
		}
		var b bindingJSON
		if err := json.Unmarshal(cur.Body, &b); err != nil {
			return fmt.Errorf("read %s: %w", cur.ObjectKey, err)
		}
		if b.RoleRef.Name != role {
			return fmt.Errorf("binding %s in %q grants %s, not %s: %w", role, project, b.RoleRef.Name, role, errdefs.ErrAlreadyExists)
		}
		for _, sub := range b.Subjects {
			if idx, _ := sub.indexed(project); idx == add {
				return nil
			}
		}
		if cur.Body, err = withField(cur.Body, "subjects", append(b.Subjects, subjectJSON(add))); err != nil {
			return err
		}
		_, err = s.updateObject(ctx, tx, cur, cur.ResourceVersion)
		return err
	})
}

// RemoveBinding takes role from a subject in project, in every binding
// that grants it; if none does, it is errdefs.ErrNotFound.
func (s *Store) RemoveBinding(ctx context.Context, project, role, kind, subject string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := s.dropSubjects(ctx, tx, `project = ? AND role = ? AND subject_kind = ? AND subject = ?`, project, role, kind, subject)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("binding of %s to %s %s in %q: %w", role, kind, subject, project, errdefs.ErrNotFound)
		}
		return nil
	})
}

// dropSubjects takes the index rows matching where (a condition on
// role_bindings with args) out of their bindings' objects: each binding
// keeps its other subjects, and one left with none is deleted. It returns
// how many rows matched.
func (s *Store) dropSubjects(ctx context.Context, tx *sql.Tx, where string, args ...any) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT project, name, subject_kind, subject FROM role_bindings WHERE `+where, args...)
	if err != nil {
		return 0, fmt.Errorf("find bindings: %w", err)
	}
	drop := map[ObjectKey][]Subject{}
	var keys []ObjectKey
	n := 0
	for rows.Next() {
		var project, name string
		var sub Subject
		if err := rows.Scan(&project, &name, &sub.Kind, &sub.Name); err != nil {
			rows.Close()
			return 0, err
		}
		k := BindingKey(project, name)
		if _, ok := drop[k]; !ok {
			keys = append(keys, k)
		}
		drop[k] = append(drop[k], sub)
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, k := range keys {
		cur, err := getObject(ctx, tx, k)
		if err != nil {
			return 0, err
		}
		var b bindingJSON
		if err := json.Unmarshal(cur.Body, &b); err != nil {
			return 0, fmt.Errorf("read %s: %w", k, err)
		}
		kept := []bindingSubject{}
		for _, sub := range b.Subjects {
			if idx, _ := sub.indexed(k.Namespace); !slices.Contains(drop[k], idx) {
				kept = append(kept, sub)
			}
		}
		if len(kept) == 0 {
			_, err = s.deleteObject(ctx, tx, k, 0, "")
		} else if cur.Body, err = withField(cur.Body, "subjects", kept); err == nil {
			_, err = s.updateObject(ctx, tx, cur, 0)
		}
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// adoptLegacyBindings gives every binding of the index without an object
// (written before bindings were objects) its object, so that the two agree
// from the first start of this version on; grants left in projects that no
// longer exist go.
func (s *Store) adoptLegacyBindings(ctx context.Context) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
SELECT b.project, b.name, b.role, b.subject_kind, b.subject, b.created_at FROM role_bindings b
WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.api_group = ? AND o.resource = (CASE WHEN b.project = '' THEN 'clusterrolebindings' ELSE 'rolebindings' END)
	AND o.namespace = b.project AND o.name = b.name)
ORDER BY b.project, b.name, b.subject_kind, b.subject`, rbacGroup)
		if err != nil {
			return fmt.Errorf("find bindings without objects: %w", err)
		}
		type legacy struct {
			project, name, role string
			subjects            []Subject
			created             int64
		}
		var found []*legacy
		for rows.Next() {
			var l legacy
			var sub Subject
			if err := rows.Scan(&l.project, &l.name, &l.role, &sub.Kind, &sub.Name, &l.created); err != nil {
				rows.Close()
				return err
			}
			if n := len(found); n > 0 && found[n-1].project == l.project && found[n-1].name == l.name {
				found[n-1].subjects = append(found[n-1].subjects, sub)
				found[n-1].created = min(found[n-1].created, l.created)
				continue
			}
			l.subjects = []Subject{sub}
			found = append(found, &l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range found {
			if l.project != "" {
				// A grant in a project that no longer exists is dropped, not
				// adopted: it would pass to the next project of that name.
				ok, err := projectExists(ctx, tx, l.project)
				if err != nil {
					return err
				}
				if !ok {
					if _, err := tx.ExecContext(ctx, `DELETE FROM role_bindings WHERE project = ?`, l.project); err != nil {
						return fmt.Errorf("drop the bindings of the missing project %s: %w", l.project, err)
					}
					continue
				}
			}
			o, err := newBindingObject(l.project, l.name, l.role, l.subjects, time.UnixMicro(l.created))
			if err != nil {
				return err
			}
			if _, err := s.createObject(ctx, tx, o); err != nil {
				return fmt.Errorf("adopt binding %s in %q: %w", l.name, l.project, err)
			}
		}
		return nil
	})
}
