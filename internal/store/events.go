package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// EventKind names what an event of the registry's log records. The kinds
// say themselves what they change, so that the caches, the access
// generation and the image-stream watch read one definition instead of
// each keeping its own list of strings.
type EventKind string

// The registry's event kinds (the log's kind column).
const (
	EventProjectCreated    EventKind = "ProjectCreated"
	EventProjectDeleted    EventKind = "ProjectDeleted"
	EventUserCreated       EventKind = "UserCreated"
	EventUserDeleted       EventKind = "UserDeleted"
	EventRepositoryCreated EventKind = "RepositoryCreated"
	EventRepositoryDeleted EventKind = "RepositoryDeleted"
	EventBlobLinked        EventKind = "BlobLinked"
	EventBlobUnlinked      EventKind = "BlobUnlinked"
	EventManifestPushed    EventKind = "ManifestPushed"
	EventManifestDeleted   EventKind = "ManifestDeleted"
	EventTagUpdated        EventKind = "TagUpdated"
	EventTagDeleted        EventKind = "TagDeleted"
	// EventStreamSpecChanged records a change of an image stream's spec
	// object (labels, annotations, spec tags) that moved no tag.
	EventStreamSpecChanged EventKind = "StreamSpecChanged"
	// EventTagHistoryPruned records that pruning trimmed a repository's
	// tag histories (its stream's status changed; no tag moved).
	EventTagHistoryPruned EventKind = "TagHistoryPruned"
	// EventImagePulled records that an image was pulled, at most once a
	// minute per repository and image (PullLog): for webhooks, not a
	// change of anything.
	EventImagePulled EventKind = "ImagePulled"
)

// Removes says that the event takes a blob or a manifest away from a
// repository: lookups by digest may answer differently after it. Every
// removal (a delete, garbage collection, pruning) appends one.
func (k EventKind) Removes() bool {
	switch k {
	case EventBlobUnlinked, EventManifestDeleted, EventRepositoryDeleted, EventProjectDeleted:
		return true
	}
	return false
}

// ChangesAccess says that the event changes who may do what.
func (k EventKind) ChangesAccess() bool {
	switch k {
	case EventProjectCreated, EventProjectDeleted, EventUserCreated, EventUserDeleted:
		return true
	}
	return false
}

// ChangesTags says that the event changes what a tag names.
func (k EventKind) ChangesTags() bool {
	return k == EventTagUpdated || k == EventTagDeleted
}

// ChangesStream says that the event changes a repository's ImageStream:
// the stream itself, its tags, or the images they name.
func (k EventKind) ChangesStream() bool {
	switch k {
	case EventRepositoryCreated, EventRepositoryDeleted, EventTagUpdated, EventTagDeleted, EventManifestPushed, EventManifestDeleted,
		EventStreamSpecChanged, EventTagHistoryPruned:
		return true
	}
	return false
}

// The event log's order is the order of commits. Its sequence numbers are
// not the database's own (an AUTOINCREMENT or a sequence hands numbers out
// at insert, and with concurrent writers one that commits later may hold
// the lower number: a reader that saw seq 7 and asks for seq > 7 would
// never see the 6 committed after it). Instead the newest number is a row
// of sequences, moved inside the writing transaction: its row lock is held
// to the commit, so the next writer takes the next number only once this
// one committed (or rolled back, and the number is taken again). A reader
// of seq > n never skips an event.

// With concurrent writers (PostgreSQL) that lock serializes commits, so
// it is held as briefly as can be: the registry's writes (pushTx: blobs,
// uploads, manifests, tags, imports) append their events at the end
// (flushEvents), right before they commit, and take no
// other lock after it. The other writes (tx: API objects, access,
// projects, settings) take it first (holdSequence), before any other
// lock, and keep it to the commit: an object's resourceVersion is its
// event's number, needed at once. Those touch rows the registry's writes
// lock only when a project is created or deleted; a deadlock then (a
// push into the project at that moment) is detected by PostgreSQL and
// the write retried.

// pendingEvent is an event of the registry's log that a transaction
// appends when it commits.
type pendingEvent struct {
	kind      EventKind
	repo, tag string
	digest    digest.Digest
	actor     string
	reason    TagReason
	created   int64
}

func (s *Store) insertEvent(ctx context.Context, tx *sql.Tx, ev pendingEvent) error {
	seq, err := s.nextSeq(ctx, tx)
	if err != nil {
		return fmt.Errorf("append %s event: %w", ev.kind, err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO events (seq, kind, repository, digest, tag, actor, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		seq, string(ev.kind), ev.repo, string(ev.digest), ev.tag, ev.actor, string(ev.reason), ev.created); err != nil {
		return fmt.Errorf("append %s event: %w", ev.kind, err)
	}
	if a, ok := auditOfEvent(ev); ok {
		return s.insertAudit(ctx, tx, a)
	}
	return nil
}

// flushEvents appends the events tx deferred and counts its access
// change, right before it commits.
func (s *Store) flushEvents(ctx context.Context, tx *sql.Tx) error {
	v, ok := s.touched.Load(tx)
	if !ok {
		return nil
	}
	e := v.(*effects)
	for _, ev := range e.pending {
		if err := s.insertEvent(ctx, tx, ev); err != nil {
			return err
		}
	}
	e.pending = nil
	if err := s.countEffects(ctx, tx, e); err != nil {
		return err
	}
	return s.notifyCommit(ctx, tx, e)
}

// holdSequence takes the event sequence's lock for the rest of tx (see
// above): a write that numbers an event before its end calls it first.
func (s *Store) holdSequence(ctx context.Context, tx *sql.Tx) error {
	return s.lockRows(ctx, tx, `SELECT 1 FROM sequences WHERE name = 'events'`)
}

// latestSeqQuery reads the newest event's sequence number (as a
// transaction or snapshot sees it).
const latestSeqQuery = `SELECT value FROM sequences WHERE name = 'events'`

// nextSeq takes the next event sequence number in tx.
func (s *Store) nextSeq(ctx context.Context, tx *sql.Tx) (int64, error) {
	var seq int64
	if err := tx.QueryRowContext(ctx, `UPDATE sequences SET value = value + 1 WHERE name = 'events' RETURNING value`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("take an event number: %w", err)
	}
	return seq, nil
}
