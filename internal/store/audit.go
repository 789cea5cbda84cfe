package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
)

// The audit log says who pushed, pulled, tagged, deleted and changed
// access, and when. Its rows are written in the transaction of the change
// they record, so a change committed is audited and one rolled back is
// not. The event log cannot serve: it is trimmed to what watches need,
// while audit rows are kept for their own retention (PruneAudit).

// AuditEntry is a row of the audit log.
type AuditEntry struct {
	ID int64
	At time.Time
	// Actor is the user who made the change; "" for Berth itself (a
	// scheduled import, pruning).
	Actor string
	// Action is what was done: push, pull, tag, untag, delete, create,
	// update, prune.
	Action string
	// Project is the project the change was in, "" for cluster-wide
	// objects.
	Project string
	// Resource and Name say what changed: a manifest of repository
	// Name, the tag Name ("project/stream:tag"), or an API object.
	Resource string
	Name     string
	Digest   digest.Digest
	// Detail is what else there is to say: why a tag moved, the role
	// and subjects of a binding, how many pulls a pull row counts.
	Detail string
}

// The audit log's actions.
const (
	AuditPush   = "push"
	AuditPull   = "pull"
	AuditTag    = "tag"
	AuditUntag  = "untag"
	AuditDelete = "delete"
	AuditCreate = "create"
	AuditUpdate = "update"
	AuditPrune  = "prune"
)

// auditOfEvent is the audit row of a registry event, false for events
// that are not audited (a blob linked: part of a push that is).
func auditOfEvent(ev pendingEvent) (AuditEntry, bool) {
	project, _, _ := strings.Cut(ev.repo, "/")
	e := AuditEntry{At: time.UnixMicro(ev.created), Actor: ev.actor, Project: project, Name: ev.repo, Digest: ev.digest, Detail: string(ev.reason)}
	switch ev.kind {
	case EventManifestPushed:
		e.Action, e.Resource = AuditPush, "manifests"
	case EventManifestDeleted:
		e.Action, e.Resource = AuditDelete, "manifests"
	case EventTagUpdated:
		e.Action, e.Resource, e.Name = AuditTag, "tags", ev.repo+":"+ev.tag
		if ev.reason == ReasonPushed {
			e.Detail = "Pushed"
		}
	case EventTagDeleted:
		e.Action, e.Resource, e.Name = AuditUntag, "tags", ev.repo+":"+ev.tag
	case EventRepositoryDeleted:
		e.Action, e.Resource = AuditDelete, "imagestreams"
	case EventTagHistoryPruned:
		e.Action, e.Resource = AuditPrune, "imagestreams"
	case EventProjectCreated:
		e.Action, e.Resource, e.Project = AuditCreate, "projects", ev.repo
	case EventProjectDeleted:
		e.Action, e.Resource, e.Project = AuditDelete, "projects", ev.repo
	default:
		// Pulls are audited by the pull log (with their counts); users
		// appear with their first login or binding.
		return AuditEntry{}, false
	}
	return e, true
}

// objectAuditActions are the audit actions of object events, by event
// kind.
var objectAuditActions = map[string]string{eventAdded: AuditCreate, eventModified: AuditUpdate, eventDeleted: AuditDelete}

// auditOfObject is the audit row of a change to an API object, made by
// the actor of ctx. Changes Berth makes itself (the operator's status,
// an import's spec tags) are not audited: only users' requests are.
func auditOfObject(ctx context.Context, kind string, o Object, at int64) (AuditEntry, bool) {
	actor := ActorFrom(ctx)
	action, ok := objectAuditActions[kind]
	if actor == "" || !ok {
		return AuditEntry{}, false
	}
	e := AuditEntry{At: time.UnixMicro(at), Actor: actor, Action: action, Project: o.Namespace, Resource: o.Resource, Name: o.Name}
	if isBinding(o.ObjectKey) && kind != eventDeleted {
		var b bindingJSON
		if json.Unmarshal(o.Body, &b) == nil {
			subjects := make([]string, 0, len(b.Subjects))
			for _, sub := range b.Subjects {
				subjects = append(subjects, sub.Kind+":"+sub.Name)
			}
			e.Detail = "role " + b.RoleRef.Name + ": " + strings.Join(subjects, ", ")
		}
	}
	return e, true
}

// auditToken is the audit row of a token created for (or revoked of)
// user: a login, or a service account's token.
func auditToken(ctx context.Context, action, user, detail string, at int64) AuditEntry {
	project := ""
	if ns, _, ok := auth.ServiceAccountOf(user); ok {
		project = ns
	}
	return AuditEntry{At: time.UnixMicro(at), Actor: ActorFrom(ctx), Action: action, Project: project, Resource: "tokens", Name: user, Detail: detail}
}

func (s *Store) insertAudit(ctx context.Context, tx *sql.Tx, e AuditEntry) error {
	if _, err := tx.ExecContext(ctx, `
INSERT INTO audit_log (at, actor, action, project, resource, name, digest, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.At.UnixMicro(), e.Actor, e.Action, e.Project, e.Resource, e.Name, string(e.Digest), e.Detail); err != nil {
		return fmt.Errorf("audit %s %s %s: %w", e.Action, e.Resource, e.Name, err)
	}
	return nil
}

// AuditQuery selects rows of the audit log; zero fields select all.
type AuditQuery struct {
	Project, Actor, Action string
	// Since and Until bound the rows' times (Until excluded).
	Since, Until time.Time
	// Before pages: only rows older than the row of that ID.
	Before int64
	Limit  int
}

// AuditPage is a page of the audit log, newest first, with the number of
// rows the query selects from its page on (this page's and older ones).
type AuditPage struct {
	Entries []AuditEntry
	Total   int
}

// AuditLog reads the rows q selects, newest first.
func (s *Store) AuditLog(ctx context.Context, q AuditQuery) (AuditPage, error) {
	var where []string
	var args []any
	for _, f := range []struct{ col, v string }{{"project", q.Project}, {"actor", q.Actor}, {"action", q.Action}} {
		if f.v != "" {
			where = append(where, f.col+" = ?")
			args = append(args, f.v)
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, q.Since.UnixMicro())
	}
	if !q.Until.IsZero() {
		where = append(where, "at < ?")
		args = append(args, q.Until.UnixMicro())
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	if q.Before > 0 {
		if cond == "" {
			cond = " WHERE id < ?"
		} else {
			cond += " AND id < ?"
		}
		args = append(args, q.Before)
	}
	tx, err := s.snapshot(ctx)
	if err != nil {
		return AuditPage{}, err
	}
	defer tx.Rollback()
	var page AuditPage
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_log`+cond, args...).Scan(&page.Total); err != nil {
		return AuditPage{}, fmt.Errorf("count audit rows: %w", err)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := tx.QueryContext(ctx, `
SELECT id, at, actor, action, project, resource, name, digest, detail FROM audit_log`+cond+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return AuditPage{}, fmt.Errorf("read audit rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e AuditEntry
		var at int64
		var dgst string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Project, &e.Resource, &e.Name, &dgst, &e.Detail); err != nil {
			return AuditPage{}, err
		}
		e.At, e.Digest = time.UnixMicro(at).UTC(), digest.Digest(dgst)
		page.Entries = append(page.Entries, e)
	}
	return page, rows.Err()
}

// PruneAudit deletes the audit rows older than before and says how many.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_log WHERE at < ?`, before.UnixMicro())
		if err != nil {
			return fmt.Errorf("prune the audit log: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
