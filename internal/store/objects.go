package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/berth-registry/berth/internal/errdefs"
)

// ObjectKey names an object of the management API.
type ObjectKey struct {
	Group     string // "" for the core group
	Resource  string // the plural: configmaps
	Namespace string // "" for cluster-scoped kinds
	Name      string
}

// APIResource is "group/resource", how events name a kind.
func (k ObjectKey) APIResource() string { return k.Group + "/" + k.Resource }

func (k ObjectKey) String() string {
	if k.Namespace == "" {
		return k.APIResource() + " " + k.Name
	}
	return k.APIResource() + " " + k.Namespace + "/" + k.Name
}

// Object is a stored API object. Body is the object's JSON as the API
// layer wrote it; the store owns ResourceVersion (the sequence number of
// the object's last change) and keeps UID, Created and Labels beside the
// body for lookups.
type Object struct {
	ObjectKey
	UID             string
	ResourceVersion int64
	Created         time.Time
	Labels          map[string]string
	Body            []byte
}

// ObjectEvent is a change to an object: Type is ADDED, MODIFIED or
// DELETED, and Object is the object as it was after the change (for a
// deletion, as it was last), with ResourceVersion the event's sequence.
type ObjectEvent struct {
	Type   string
	Object Object
}

// Event kinds of API objects, in the one event sequence.
const (
	eventAdded    = "ObjectAdded"
	eventModified = "ObjectModified"
	eventDeleted  = "ObjectDeleted"
)

var watchTypes = map[string]string{eventAdded: "ADDED", eventModified: "MODIFIED", eventDeleted: "DELETED"}

const objectColumns = `api_group, resource, namespace, name, uid, resource_version, created_at, labels, body`

// CreateObject stores a new object and returns it with its
// resourceVersion; an existing one is errdefs.ErrAlreadyExists.
func (s *Store) CreateObject(ctx context.Context, o Object) (Object, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		o, err = s.createObject(ctx, tx, o)
		return err
	})
	return o, err
}

func (s *Store) createObject(ctx context.Context, tx *sql.Tx, o Object) (Object, error) {
	if err := s.holdSequence(ctx, tx); err != nil {
		return Object{}, err
	}
	labels, err := json.Marshal(nonNilLabels(o.Labels))
	if err != nil {
		return Object{}, err
	}
	if o.Created.IsZero() {
		o.Created = s.now()
	}
	var exists int
	// The namespace (a project) is checked in the writing transaction: a
	// project deleted after a handler looked would otherwise keep this
	// object, and hand it (a Secret, a role binding) to whoever creates a
	// project of that name next.
	if o.Namespace != "" {
		ok, err := projectExists(ctx, tx, o.Namespace)
		if err != nil {
			return Object{}, fmt.Errorf("create %s: %w", o.ObjectKey, err)
		}
		if !ok {
			return Object{}, &MissingNamespaceError{Namespace: o.Namespace}
		}
	}
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM objects WHERE api_group = ? AND resource = ? AND namespace = ? AND name = ?`,
		o.Group, o.Resource, o.Namespace, o.Name).Scan(&exists)
	if err == nil {
		return Object{}, fmt.Errorf("%s: %w", o.ObjectKey, errdefs.ErrAlreadyExists)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Object{}, fmt.Errorf("create %s: %w", o.ObjectKey, err)
	}
	if o.ResourceVersion, err = s.appendObjectEvent(ctx, tx, eventAdded, o); err != nil {
		return Object{}, err
	}
	stored, err := s.sealBody(o.ObjectKey, o.Body)
	if err != nil {
		return Object{}, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO objects (`+objectColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		o.Group, o.Resource, o.Namespace, o.Name, o.UID, o.ResourceVersion, o.Created.UnixMicro(), string(labels), stored)
	if err != nil {
		return Object{}, fmt.Errorf("create %s: %w", o.ObjectKey, err)
	}
	return o, s.indexObject(ctx, tx, o, false)
}

// lockObject holds k's row until tx ends: what tx reads of it next stays
// true until it commits.
func (s *Store) lockObject(ctx context.Context, tx *sql.Tx, k ObjectKey) error {
	return s.lockRows(ctx, tx, `SELECT 1 FROM objects WHERE api_group = ? AND resource = ? AND namespace = ? AND name = ?`,
		k.Group, k.Resource, k.Namespace, k.Name)
}

// projectExists reports whether project exists, as tx sees it.
func projectExists(ctx context.Context, tx *sql.Tx, project string) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM projects WHERE name = ?`, project).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// newOwnObject is an object Berth writes itself (a project's admin
// binding, a group or service account adopted from an older version): its
// metadata, and fields besides.
func newOwnObject(k ObjectKey, apiVersion, kind string, fields map[string]any, created time.Time) (Object, error) {
	uid := uuid.NewString()
	meta := map[string]any{"name": k.Name, "uid": uid, "creationTimestamp": created.UTC().Format(time.RFC3339)}
	if k.Namespace != "" {
		meta["namespace"] = k.Namespace
	}
	doc := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta}
	for key, v := range fields {
		doc[key] = v
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return Object{}, err
	}
	return Object{ObjectKey: k, UID: uid, Created: created, Body: body}, nil
}

// withField returns body (an object's JSON) with one top-level field
// replaced, every other field (labels, annotations) as it was.
func withField(body []byte, key string, value any) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	doc[key] = value
	return json.Marshal(doc)
}

// MissingNamespaceError is an object created in a project that does not
// exist (errdefs.ErrNotFound).
type MissingNamespaceError struct{ Namespace string }

func (e *MissingNamespaceError) Error() string { return "namespace " + e.Namespace + " not found" }
func (e *MissingNamespaceError) Unwrap() error { return errdefs.ErrNotFound }

// GetObject returns one object.
func (s *Store) GetObject(ctx context.Context, k ObjectKey) (Object, error) {
	return s.getOpenObject(ctx, s.read, k)
}

// getOpenObject is getObject with the body decrypted.
func (s *Store) getOpenObject(ctx context.Context, q queryer, k ObjectKey) (Object, error) {
	o, err := getObject(ctx, q, k)
	if err != nil {
		return Object{}, err
	}
	o.Body, err = s.openBody(k, o.Body)
	return o, err
}

// getObject returns an object as stored: a Secret's body encrypted
// (getOpenObject decrypts it). The store's own kinds (bindings, groups,
// service accounts) are stored as they are.
func getObject(ctx context.Context, q queryer, k ObjectKey) (Object, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+objectColumns+` FROM objects
WHERE api_group = ? AND resource = ? AND namespace = ? AND name = ?`, k.Group, k.Resource, k.Namespace, k.Name)
	if err != nil {
		return Object{}, fmt.Errorf("read %s: %w", k, err)
	}
	objs, err := scanObjects(rows)
	if err != nil {
		return Object{}, fmt.Errorf("read %s: %w", k, err)
	}
	if len(objs) == 0 {
		return Object{}, fmt.Errorf("%s: %w", k, errdefs.ErrNotFound)
	}
	return objs[0], nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ObjectQuery selects objects of one kind: in one namespace, or in all
// when Namespace is "" (for a cluster-scoped kind, all there are); by name
// after After (a continue token), up to Limit (0: all).
type ObjectQuery struct {
	Group, Resource string
	Namespace       string
	After           ObjectCursor
	Limit           int
}

// ObjectCursor is where a page of a list ended.
type ObjectCursor struct {
	Namespace, Name string
}

// ListObjects returns the objects q selects in (namespace, name) order,
// whether more follow, and the resourceVersion the list is consistent with.
func (s *Store) ListObjects(ctx context.Context, q ObjectQuery) ([]Object, bool, int64, error) {
	// One read transaction: the list and its resourceVersion are one
	// snapshot.
	tx, err := s.snapshot(ctx)
	if err != nil {
		return nil, false, 0, fmt.Errorf("list %s/%s: %w", q.Group, q.Resource, err)
	}
	defer tx.Rollback()
	var rv int64
	if err := tx.QueryRowContext(ctx, latestSeqQuery).Scan(&rv); err != nil {
		return nil, false, 0, fmt.Errorf("list %s/%s: %w", q.Group, q.Resource, err)
	}
	query := `SELECT ` + objectColumns + ` FROM objects WHERE api_group = ? AND resource = ?`
	args := []any{q.Group, q.Resource}
	if q.Namespace != "" {
		query += ` AND namespace = ?`
		args = append(args, q.Namespace)
	}
	if q.After != (ObjectCursor{}) {
		query += ` AND (namespace > ? OR (namespace = ? AND name > ?))`
		args = append(args, q.After.Namespace, q.After.Namespace, q.After.Name)
	}
	query += ` ORDER BY namespace, name`
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit+1)
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, false, 0, fmt.Errorf("list %s/%s: %w", q.Group, q.Resource, err)
	}
	objs, err := scanObjects(rows)
	if err != nil {
		return nil, false, 0, fmt.Errorf("list %s/%s: %w", q.Group, q.Resource, err)
	}
	more := q.Limit > 0 && len(objs) > q.Limit
	if more {
		objs = objs[:q.Limit]
	}
	if err := s.openObjects(objs); err != nil {
		return nil, false, 0, err
	}
	return objs, more, rv, nil
}

// UpdateObject replaces an object's body and labels. With expect > 0 the
// write happens only if the object is still at that resourceVersion, and
// with o.UID set only if it is still that object (not one deleted and
// created again under the name): errdefs.ErrConflict otherwise. A body and labels equal to the stored
// ones change nothing: no new resourceVersion, no event.
func (s *Store) UpdateObject(ctx context.Context, o Object, expect int64) (Object, error) {
	var out Object
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = s.updateObject(ctx, tx, o, expect)
		return err
	})
	return out, err
}

func (s *Store) updateObject(ctx context.Context, tx *sql.Tx, o Object, expect int64) (Object, error) {
	if err := s.holdSequence(ctx, tx); err != nil {
		return Object{}, err
	}
	labels, err := json.Marshal(nonNilLabels(o.Labels))
	if err != nil {
		return Object{}, err
	}
	if err := s.lockObject(ctx, tx, o.ObjectKey); err != nil {
		return Object{}, err
	}
	cur, err := s.getOpenObject(ctx, tx, o.ObjectKey)
	if err != nil {
		return Object{}, err
	}
	if expect > 0 && cur.ResourceVersion != expect {
		return Object{}, fmt.Errorf("%s is at resourceVersion %d, not %d: %w", o.ObjectKey, cur.ResourceVersion, expect, errdefs.ErrConflict)
	}
	if o.UID != "" && o.UID != cur.UID {
		return Object{}, fmt.Errorf("%s is now another object (uid %s, not %s): %w", o.ObjectKey, cur.UID, o.UID, errdefs.ErrConflict)
	}
	curLabels, _ := json.Marshal(nonNilLabels(cur.Labels))
	if string(cur.Body) == string(o.Body) && string(curLabels) == string(labels) {
		return cur, nil
	}
	o.UID, o.Created = cur.UID, cur.Created
	if o.ResourceVersion, err = s.appendObjectEvent(ctx, tx, eventModified, o); err != nil {
		return Object{}, err
	}
	stored, err := s.sealBody(o.ObjectKey, o.Body)
	if err != nil {
		return Object{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE objects SET resource_version = ?, labels = ?, body = ?
WHERE api_group = ? AND resource = ? AND namespace = ? AND name = ?`,
		o.ResourceVersion, string(labels), stored, o.Group, o.Resource, o.Namespace, o.Name); err != nil {
		return Object{}, fmt.Errorf("update %s: %w", o.ObjectKey, err)
	}
	return o, s.indexObject(ctx, tx, o, false)
}

// DeleteObject removes an object (only at resourceVersion expect, when
// expect > 0, and only if its uid is uid, when uid is set) and returns it
// as it was, with the deletion's resourceVersion.
func (s *Store) DeleteObject(ctx context.Context, k ObjectKey, expect int64, uid string) (Object, error) {
	var out Object
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = s.deleteObject(ctx, tx, k, expect, uid)
		return err
	})
	return out, err
}

func (s *Store) deleteObject(ctx context.Context, tx *sql.Tx, k ObjectKey, expect int64, uid string) (Object, error) {
	if err := s.holdSequence(ctx, tx); err != nil {
		return Object{}, err
	}
	if err := s.lockObject(ctx, tx, k); err != nil {
		return Object{}, err
	}
	cur, err := getObject(ctx, tx, k)
	if err != nil {
		return Object{}, err
	}
	var keyErr *SecretKeyError
	if cur.Body, err = s.openBody(k, cur.Body); errors.As(err, &keyErr) {
		// A Secret whose key is lost can still be deleted; its deletion
		// event tells only who it was.
		cur.Body = secretIdentity(cur)
	} else if err != nil {
		return Object{}, err
	}
	if expect > 0 && cur.ResourceVersion != expect {
		return Object{}, fmt.Errorf("%s is at resourceVersion %d, not %d: %w", k, cur.ResourceVersion, expect, errdefs.ErrConflict)
	}
	if uid != "" && uid != cur.UID {
		return Object{}, fmt.Errorf("precondition failed: uid in precondition %s, uid of the object %s: %w", uid, cur.UID, errdefs.ErrConflict)
	}
	if cur.ResourceVersion, err = s.appendObjectEvent(ctx, tx, eventDeleted, cur); err != nil {
		return Object{}, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM objects WHERE api_group = ? AND resource = ? AND namespace = ? AND name = ?`,
		k.Group, k.Resource, k.Namespace, k.Name); err != nil {
		return Object{}, fmt.Errorf("delete %s: %w", k, err)
	}
	return cur, s.indexObject(ctx, tx, cur, true)
}

func (s *Store) appendObjectEvent(ctx context.Context, tx *sql.Tx, kind string, o Object) (int64, error) {
	stored, err := s.sealBody(o.ObjectKey, o.Body)
	if err != nil {
		return 0, err
	}
	s.effectsOf(tx) // the commit is heard of (flushEvents)
	seq, err := s.nextSeq(ctx, tx)
	if err == nil {
		_, err = tx.ExecContext(ctx, `
INSERT INTO events (seq, kind, api_resource, namespace, name, object, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			seq, kind, o.APIResource(), o.Namespace, o.Name, stored, s.micros())
	}
	if err != nil {
		return 0, fmt.Errorf("append %s event for %s: %w", kind, o.ObjectKey, err)
	}
	if a, ok := auditOfObject(ctx, kind, o, s.micros()); ok {
		if err := s.insertAudit(ctx, tx, a); err != nil {
			return 0, err
		}
	}
	return seq, nil
}

// ObjectEvents returns up to limit changes to objects of apiResource
// ("group/resource") after resourceVersion after, oldest first. When
// events after it are no longer kept, it is errdefs.ErrGone: the watcher
// must list again.
func (s *Store) ObjectEvents(ctx context.Context, apiResource string, after int64, limit int) ([]ObjectEvent, error) {
	events, _, _, err := s.ObjectEventsIn(ctx, apiResource, "", after, limit)
	return events, err
}

// ObjectEventsIn is ObjectEvents for the objects of one namespace ("" for
// all): it reads up to limit events of the kind and returns those of
// namespace, the sequence number it read up to, and whether it read limit
// events (more may follow). Events of other namespaces are not decoded: a
// Secret elsewhere that cannot be decrypted does not fail this watch.
func (s *Store) ObjectEventsIn(ctx context.Context, apiResource, namespace string, after int64, limit int) ([]ObjectEvent, int64, bool, error) {
	rows, err := s.query(ctx, `
SELECT seq, kind, namespace, name, object, created_at FROM events
WHERE api_resource = ? AND seq > ? ORDER BY seq LIMIT ?`, apiResource, after, limit)
	if err != nil {
		return nil, after, false, fmt.Errorf("read events of %s: %w", apiResource, err)
	}
	defer rows.Close()
	group, resource, _ := cutLast(apiResource)
	var out []ObjectEvent
	upTo, read := after, 0
	for rows.Next() {
		var e ObjectEvent
		var kind string
		var created int64
		o := &e.Object
		o.Group, o.Resource = group, resource
		if err := rows.Scan(&o.ResourceVersion, &kind, &o.Namespace, &o.Name, &o.Body, &created); err != nil {
			return nil, after, false, err
		}
		upTo, read = o.ResourceVersion, read+1
		if namespace != "" && o.Namespace != namespace {
			continue
		}
		body, err := s.openBody(o.ObjectKey, o.Body)
		if err != nil {
			return nil, after, false, err
		}
		o.Body = body
		e.Type = watchTypes[kind]
		// Selectors match on labels, which events carry in the body.
		var meta struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
				UID    string            `json:"uid"`
			} `json:"metadata"`
		}
		if json.Unmarshal(o.Body, &meta) == nil {
			o.Labels, o.UID = meta.Metadata.Labels, meta.Metadata.UID
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, after, false, err
	}
	// The horizon is read after the events: a prune that committed in
	// between moved it past after, and the answer is Gone rather than a
	// history with a hole.
	if err := s.checkHorizon(ctx, after); err != nil {
		return nil, after, false, err
	}
	return out, upTo, read == limit, nil
}

// deleteNamespaceObjects removes every object of namespace, in tx. Their
// history goes too, and each gets a DELETED event that keeps only the
// object's identity: a namespace created later under the same name must
// not be able to replay the old one's Secrets.
func (s *Store) deleteNamespaceObjects(ctx context.Context, tx *sql.Tx, namespace string) error {
	rows, err := tx.QueryContext(ctx, `SELECT `+objectColumns+` FROM objects WHERE namespace = ? ORDER BY api_group, resource, name`, namespace)
	if err != nil {
		return fmt.Errorf("objects of %s: %w", namespace, err)
	}
	objs, err := scanObjects(rows)
	if err != nil {
		return fmt.Errorf("objects of %s: %w", namespace, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE namespace = ? AND api_resource <> ''`, namespace); err != nil {
		return fmt.Errorf("forget the history of %s: %w", namespace, err)
	}
	for _, o := range objs {
		var keyErr *SecretKeyError
		if o.Body, err = s.openBody(o.ObjectKey, o.Body); errors.As(err, &keyErr) {
			// A Secret whose key is lost goes with its project.
			o.Body = secretIdentity(o)
		} else if err != nil {
			return err
		}
		var whole map[string]json.RawMessage
		if err := json.Unmarshal(o.Body, &whole); err != nil {
			return fmt.Errorf("decode %s: %w", o.ObjectKey, err)
		}
		identity := map[string]json.RawMessage{"apiVersion": whole["apiVersion"], "kind": whole["kind"], "metadata": whole["metadata"]}
		var meta map[string]any
		_ = json.Unmarshal(whole["metadata"], &meta)
		delete(meta, "annotations") // kubectl apply keeps the whole object there
		identity["metadata"], _ = json.Marshal(meta)
		o.Body, _ = json.Marshal(identity)
		if _, err := s.appendObjectEvent(ctx, tx, eventDeleted, o); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM objects WHERE namespace = ?`, namespace); err != nil {
		return fmt.Errorf("delete the objects of %s: %w", namespace, err)
	}
	return nil
}

func cutLast(s string) (before, after string, ok bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

const settingEventHorizon = "event_horizon"

// checkHorizon is errdefs.ErrGone when events after after are no longer
// all kept.
func (s *Store) checkHorizon(ctx context.Context, after int64) error {
	h, err := s.eventHorizon(ctx)
	if err != nil {
		return err
	}
	if after < h {
		return fmt.Errorf("resourceVersion %d is older than the kept history (from %d): %w", after, h, errdefs.ErrGone)
	}
	return nil
}

// eventHorizon is the oldest resourceVersion a watch may start from.
func (s *Store) eventHorizon(ctx context.Context) (int64, error) {
	v, err := s.Setting(ctx, settingEventHorizon)
	if errors.Is(err, errdefs.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// PruneEvents keeps the newest keep events and forgets older ones; a watch
// from before what is kept gets errdefs.ErrGone.
func (s *Store) PruneEvents(ctx context.Context, keep int64) (int64, error) {
	var pruned int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var maxSeq int64
		if err := tx.QueryRowContext(ctx, latestSeqQuery).Scan(&maxSeq); err != nil {
			return err
		}
		horizon := maxSeq - keep
		// Events webhooks have not been queued for yet stay, unless the
		// dispatcher is so far behind (ten times what is kept) that it
		// must be stuck: then they go, and it counts them as lost.
		var cursor sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM webhook_cursor`).Scan(&cursor); err != nil {
			return fmt.Errorf("read webhook cursor: %w", err)
		}
		if cursor.Valid && cursor.Int64 < horizon {
			horizon = max(cursor.Int64, maxSeq-10*keep)
		}
		// The horizon never moves back: what is before it is gone.
		var was string
		err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, settingEventHorizon).Scan(&was)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read event horizon: %w", err)
		}
		if prev, _ := strconv.ParseInt(was, 10, 64); horizon <= prev || horizon <= 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq <= ?`, horizon)
		if err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		pruned, _ = res.RowsAffected()
		_, err = tx.ExecContext(ctx, `
INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			settingEventHorizon, strconv.FormatInt(horizon, 10), s.micros())
		return err
	})
	return pruned, err
}

// LatestResourceVersion is the sequence number of the newest change.
func (s *Store) LatestResourceVersion(ctx context.Context) (int64, error) {
	var rv int64
	err := s.queryRow(ctx, latestSeqQuery).Scan(&rv)
	return rv, err
}

// Changed returns a channel closed at the next committed write: a
// watcher waits on it, then reads the events after the last it saw.
func (s *Store) Changed() <-chan struct{} { return s.changes.wait() }

// changeNotifier is the in-process fan-out of commits (one process; with
// PostgreSQL, LISTEN/NOTIFY will carry it across instances).
type changeNotifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *changeNotifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *changeNotifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

func scanObjects(rows *sql.Rows) ([]Object, error) {
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var o Object
		var created int64
		var labels string
		if err := rows.Scan(&o.Group, &o.Resource, &o.Namespace, &o.Name, &o.UID, &o.ResourceVersion, &created, &labels, &o.Body); err != nil {
			return nil, err
		}
		o.Created = time.UnixMicro(created).UTC()
		if err := json.Unmarshal([]byte(labels), &o.Labels); err != nil {
			return nil, fmt.Errorf("labels of %s: %w", o.ObjectKey, err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

func nonNilLabels(l map[string]string) map[string]string {
	if l == nil {
		return map[string]string{}
	}
	return l
}
