// Package store is Berth's metadata store: repositories, blobs known to
// each repository, manifests and what they reference, tags as history,
// referrers, upload sessions, and the change sequence. It is SQL: embedded
// SQLite by default, PostgreSQL when several instances share it. Queries
// are written once, with ? placeholders, in the SQL both speak; what
// differs (types, placeholders, locks, errors) is the dialect's.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/gencache"
)

// Store is the metadata store.
type Store struct {
	dialect *dialect
	read    *sql.DB // many connections
	// write holds the connections of write transactions: SQLite's one
	// (queueing here beats SQLITE_BUSY), or PostgreSQL's pool.
	write *sql.DB
	// writer runs every write transaction on write.
	writer txRunner
	// prepared holds read's queries, parsed once.
	prepared statements
	now      func() time.Time

	// accessGen counts committed changes to who may do what (users,
	// groups, tokens, projects, bindings); caches of those are valid while
	// it stands still. accessTouched holds the open transactions that made
	// such a change.
	accessGen atomic.Int64
	// accessCommitting counts the commits of access changes under way:
	// between a commit and the move of accessGen after it, a reader could
	// see the new rows and still find what it cached from the old ones
	// under the old generation. Meanwhile AccessGeneration hands out
	// numbers no cache entry is ever stored under twice (uncacheable).
	accessCommitting atomic.Int64
	uncacheable      atomic.Int64
	// touched holds what the open transaction changed (a batch's writes
	// share one), for committed to move the generations that caches go by.
	touched sync.Map // *sql.Tx → *effects
	// changes wakes watchers after every commit; accessChanges after every
	// access change, once accessGen has moved.
	changes       changeNotifier
	accessChanges changeNotifier
	// secretKeys encrypt Secrets at rest (none: stored as they come).
	secretKeys secretKeys
	// leases are the writer leases of upload sessions (AcquireUpload).
	leases uploadLeaser

	// Pulls read the same rows over and over: manifests and blob sizes are
	// cached. contentGen moves after every commit that removed a blob or
	// manifest from a repository (what a digest names may change); tagGen
	// after every commit that changed a tag or removed anything (what a
	// tag names may change). Pushes only add, so a push leaves the digest
	// caches valid.
	contentGen, tagGen atomic.Int64
	// movedGen moves after every commit that moved a blob between
	// storages: only where blobs are changed, not what tags and digests
	// name, so a migration leaves the manifest caches warm.
	movedGen atomic.Int64
	// genReads share the reads of a shared store's generations.
	genReads generationReads
	// listener hears other instances' commits (PostgreSQL); nil for a
	// store of one process.
	listener  *listener
	manifests *gencache.Cache[repoRef, Manifest]
	// tagHistory bounds each tag's history (0: DefaultTagHistory).
	tagHistory    atomic.Int64
	blobLocations *gencache.Cache[blobRef, BlobLocation]
	// limits is what bounds each project's pushes (SetLimitsPolicy).
	limits atomic.Pointer[LimitsPolicy]
}

// repoRef is a repository and a reference in it (tag or digest).
type repoRef struct{ repo, ref string }

// effects are what a transaction changed that caches depend on.
type effects struct {
	access, tags, removals, moves bool
	// pending are the events tx appends at its commit (shared stores).
	pending []pendingEvent
	// committing: accessCommitting counts this transaction's commit.
	committing bool
	// limits are the projects' limits as tx read them (limitsOf).
	limits map[string]Limits
}

// AccessGeneration changes after every committed change to users,
// groups, tokens, projects, role bindings or ClusterRoles (on a shared
// store, made by any instance). Read it before reading those, and a
// cache of what was read stays valid while it does not change.
func (s *Store) AccessGeneration() int64 { return s.AccessGenerationAt(context.Background()) }

// AccessGenerationAt is AccessGeneration as of ctx's request (see
// WithGenerationMemo).
func (s *Store) AccessGenerationAt(ctx context.Context) int64 {
	if s.dialect.shared {
		return s.sharedGenerations(ctx).access
	}
	if s.accessCommitting.Load() > 0 {
		return s.uncacheableGeneration()
	}
	return s.accessGen.Load()
}

// uncacheableGeneration is a generation no cache entry is ever stored
// under twice: far above any a counter reaches, and never negative
// (callers keep -1 for "none yet").
func (s *Store) uncacheableGeneration() int64 { return 1<<62 + s.uncacheable.Add(1) }

// tagGeneration and contentGeneration are the generations of what tags
// and digests name.
func (s *Store) tagGeneration(ctx context.Context) int64 {
	if s.dialect.shared {
		return s.sharedGenerations(ctx).tags
	}
	return s.tagGen.Load()
}

func (s *Store) contentGeneration(ctx context.Context) int64 {
	if s.dialect.shared {
		return s.sharedGenerations(ctx).content
	}
	return s.contentGen.Load()
}

// AccessChanged returns a channel closed at the next access change, when
// AccessGeneration has already moved: an open watch waits on it to check
// its caller's access again even when nothing it shows changes. Take the
// channel before reading the generation, and no change is missed.
func (s *Store) AccessChanged() <-chan struct{} { return s.accessChanges.wait() }

// accessChanged is called after an access change was committed.
func (s *Store) accessChanged() {
	s.accessGen.Add(1)
	s.accessChanges.notify()
}

// touchAccess marks tx as changing access: once it commits, the access
// generation moves (on a shared store, the access counter moves with the
// commit: see countEffects).
func (s *Store) touchAccess(tx *sql.Tx) { s.effectsOf(tx).access = true }

// effectsOf returns what tx changed so far. Writes run on the writer's
// goroutine alone, so the flags need no lock.
func (s *Store) effectsOf(tx *sql.Tx) *effects {
	e, _ := s.touched.LoadOrStore(tx, &effects{})
	return e.(*effects)
}

// Close releases the database.
func (s *Store) Close() error {
	if s.listener != nil {
		s.listener.stop()
	}
	if s.writer != nil {
		s.writer.close()
	}
	s.prepared.close()
	if s.read == s.write {
		return s.read.Close()
	}
	return errors.Join(s.write.Close(), s.read.Close())
}

// Manifest is a manifest as stored.
type Manifest struct {
	Digest       digest.Digest
	MediaType    string
	ArtifactType string
	// Subject is the manifest this one refers to, "" when none.
	Subject     digest.Digest
	Annotations map[string]string
	Payload     []byte
	// References are the blobs (config, layers) and child manifests the
	// manifest names. They are recorded for garbage collection; those
	// marked Required must already be in the repository, and those the
	// repository holds must have the Size the manifest declares.
	References []Reference
}

// Reference is content a manifest names.
type Reference struct {
	Digest digest.Digest
	// Manifest is true for a child manifest, false for a blob.
	Manifest bool
	// Size is the size the manifest's descriptor declares: the blob's
	// length, or a child manifest's payload length.
	Size int64
	// Required refuses the manifest unless the repository holds Digest.
	Required bool
}

// Descriptor describes a manifest in a referrers answer.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// TagEvent is one entry of a tag's history. A deletion has an empty Digest.
type TagEvent struct {
	Tag        string
	Digest     digest.Digest
	Generation int64
	Created    time.Time
	// Actor is who made the change ("" when the registry did).
	Actor  string
	Reason TagReason
	// Source is the upstream image an import took (pull spec by digest),
	// "" for an image pushed here.
	Source string
}

// Upload is an upload session.
type Upload struct {
	ID         string
	Repository string
	// Owner is the user who opened the session.
	Owner string
	// Storage is the storage the session's bytes go to (see
	// DefaultStorage): the one in effect when it was opened.
	Storage string
	// Size is how many bytes the session has received.
	Size int64
	// HashState is the running sha256 after Size bytes.
	HashState []byte
	// Epoch is the blob driver's epoch when the bytes were written, for a
	// driver whose appends are durable only from commit on ("" for others;
	// see storage.Volatile).
	Epoch string
	// DriverState is what the blob driver keeps about the session between
	// requests (storage.Upload.State), as of Size.
	DriverState []byte
	// Lease is the holder of the session's writer lease that writes this
	// record (AdvanceUpload): a writer whose lease lapsed and passed to
	// another cannot move the session any more.
	Lease   string
	Created time.Time
	Updated time.Time
}

// MissingReferenceError reports a manifest that references content the
// repository does not hold. It wraps errdefs.ErrNotFound.
type MissingReferenceError struct {
	Digest digest.Digest
	// Manifest is true when the missing reference is a child manifest.
	Manifest bool
}

func (e *MissingReferenceError) Error() string {
	kind := "blob"
	if e.Manifest {
		kind = "manifest"
	}
	return fmt.Sprintf("referenced %s %s is not in the repository", kind, e.Digest)
}

func (e *MissingReferenceError) Unwrap() error { return errdefs.ErrNotFound }

// ReferenceSizeError reports a manifest whose descriptor declares another
// size than the referenced content the repository holds. It wraps
// errdefs.ErrSizeMismatch.
type ReferenceSizeError struct {
	Digest digest.Digest
	// Manifest is true when the reference is a child manifest.
	Manifest bool
	// Declared is the descriptor's size, Stored the held content's.
	Declared, Stored int64
}

func (e *ReferenceSizeError) Error() string {
	kind := "blob"
	if e.Manifest {
		kind = "manifest"
	}
	return fmt.Sprintf("referenced %s %s is declared with size %d but the stored %s is %d bytes", kind, e.Digest, e.Declared, kind, e.Stored)
}

func (e *ReferenceSizeError) Unwrap() error { return errdefs.ErrSizeMismatch }

func (s *Store) micros() int64 { return s.now().UnixMicro() }

// txRunner runs write transactions: the group writer on SQLite, one
// transaction per write on PostgreSQL.
// WriteRetries counts the write transactions run again since the store
// opened because the database broke a deadlock or a serialization
// conflict (PostgreSQL; SQLite's writes take turns, and never are).
func (s *Store) WriteRetries() int64 {
	if w, ok := s.writer.(*concurrentWriter); ok {
		return w.retries.Load()
	}
	return 0
}

type txRunner interface {
	// do runs fn in a write transaction and returns once it committed
	// (nil) or failed, whether or not ctx ended meanwhile.
	do(ctx context.Context, fn func(*sql.Tx) error) error
	// close stops the runner; writes after it fail.
	close()
}

// tx runs fn in a write transaction, which it may share with other writes
// that arrive at the same time (group commit; see groupWriter): fn must not
// call tx itself. It returns once the transaction committed or fn failed;
// a duplicate key another writer committed first is
// errdefs.ErrAlreadyExists.
//
// With concurrent writers (PostgreSQL) it first takes the event sequence's
// lock (holdSequence), so these writes run one at a time, as on SQLite:
// they are the rare ones (API objects, access, projects, imports,
// settings), and many of them read before they write. The push path's
// writes, frequent and each made safe against concurrent ones, use pushTx.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.dialect.shared {
		inner := fn
		fn = func(tx *sql.Tx) error {
			if err := s.holdSequence(ctx, tx); err != nil {
				return err
			}
			return inner(tx)
		}
	}
	return s.pushTx(ctx, fn)
}

// pushTx is tx for the writes of pushes and pulls, which run concurrently
// with PostgreSQL: each is safe without the others waiting (inserts ON
// CONFLICT, updates conditional on what was read, row locks where a write
// reads what it changes, shared locks on what it relies on), and appends
// its events at its commit.
func (s *Store) pushTx(ctx context.Context, fn func(*sql.Tx) error) error {
	err := s.dialect.mapError(s.writer.do(ctx, fn))
	if err == nil {
		forgetGenerations(ctx)
	}
	return err
}

// committing runs right before every commit of the writer: an access
// change makes the generation uncacheable until it has moved.
func (s *Store) committing(tx *sql.Tx) {
	if v, ok := s.touched.Load(tx); ok {
		if e := v.(*effects); e.access {
			e.committing = true
			s.accessCommitting.Add(1)
		}
	}
}

// committed runs after every commit of the writer.
func (s *Store) committed(tx *sql.Tx) {
	// After the commit: a cache filled from now on reads the change. And
	// before the wake-up, so that whoever wakes sees the generation moved.
	if v, ok := s.touched.Load(tx); ok {
		e := v.(*effects)
		if e.removals {
			s.contentGen.Add(1)
		}
		if e.moves {
			s.movedGen.Add(1)
		}
		if e.tags || e.removals {
			s.tagGen.Add(1)
		}
		if e.access {
			s.accessChanged()
		}
		if e.committing {
			e.committing = false
			s.accessCommitting.Add(-1)
		}
	}
	s.changes.notify()
}

// ended runs after every transaction of the writer, committed or not.
func (s *Store) ended(tx *sql.Tx) {
	if v, ok := s.touched.Load(tx); ok && v.(*effects).committing {
		// The commit failed: nothing changed.
		s.accessCommitting.Add(-1)
	}
	s.touched.Delete(tx)
}

// projectOf returns the project of a repository name "<project>/<image>".
func projectOf(repo string) string {
	project, _, _ := strings.Cut(repo, "/")
	return project
}

// ensureRepository returns repo's ID, creating the repository when it is
// new. Two writers creating it at once both get the one ID.
func (s *Store) ensureRepository(ctx context.Context, tx *sql.Tx, repo string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM repositories WHERE name = ?`, repo).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("look up repository %s: %w", repo, err)
	}
	// Another writer may create it between the look and the insert: then
	// the insert does nothing (waiting for that writer's commit on
	// PostgreSQL), and the second look finds its row.
	err = tx.QueryRowContext(ctx,
		`INSERT INTO repositories (name, project, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id`,
		repo, projectOf(repo), s.micros()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return s.repositoryID(ctx, tx, repo)
	}
	if err != nil {
		return 0, fmt.Errorf("create repository %s: %w", repo, err)
	}
	if err := s.checkStreamQuota(ctx, tx, projectOf(repo)); err != nil {
		return 0, err
	}
	if err := s.appendEvent(ctx, tx, EventRepositoryCreated, repo, "", ""); err != nil {
		return 0, err
	}
	return id, nil
}

func (s *Store) repositoryID(ctx context.Context, q querier, repo string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM repositories WHERE name = ?`, repo).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("repository %s: %w", repo, errdefs.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("look up repository %s: %w", repo, err)
	}
	return id, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) appendEvent(ctx context.Context, tx *sql.Tx, kind EventKind, repo string, dgst digest.Digest, tag string) error {
	return s.appendEventWhy(ctx, tx, kind, repo, dgst, tag, "")
}

// appendEventWhy is appendEvent with the reason a tag moved.
func (s *Store) appendEventWhy(ctx context.Context, tx *sql.Tx, kind EventKind, repo string, dgst digest.Digest, tag string, why TagReason) error {
	ev := pendingEvent{kind: kind, repo: repo, digest: dgst, tag: tag, actor: ActorFrom(ctx), reason: why, created: s.micros()}
	e := s.effectsOf(tx)
	if s.dialect.shared {
		e.pending = append(e.pending, ev)
	} else if err := s.insertEvent(ctx, tx, ev); err != nil {
		return err
	}
	switch {
	case kind.ChangesAccess():
		s.touchAccess(tx)
	case kind.ChangesTags():
		e.tags = true
	}
	if kind.Removes() {
		e.removals = true
	}
	return nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// PutManifest stores m in repo and points tags at it, in one transaction.
// Every required reference must already be in repo (a blob in storage,
// the storage the caller serves from), else a *MissingReferenceError, and
// every reference repo holds must have the declared size, else a
// *ReferenceSizeError. Pointing a tag at the digest it already has appends
// no history.
func (s *Store) PutManifest(ctx context.Context, in Storages, repo string, m Manifest, tags []string) error {
	if err := in.check(); err != nil {
		return err
	}
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.repositoryForWrite(ctx, tx, repo)
		if err != nil {
			return err
		}
		if err := s.checkReferences(ctx, tx, in, repoID, m); err != nil {
			return err
		}
		if err := s.checkImageSize(ctx, tx, repo, m); err != nil {
			return err
		}
		linked, err := s.recordManifest(ctx, tx, repoID, repo, m)
		if err != nil {
			return err
		}
		if linked {
			// The event names the push's tag, if any: a push by digest is
			// told apart from one whose TagUpdated event follows.
			first := ""
			if len(tags) > 0 {
				first = tags[0]
			}
			if err := s.appendEvent(ctx, tx, EventManifestPushed, repo, m.Digest, first); err != nil {
				return err
			}
		}
		for _, tag := range tags {
			if err := s.setTag(ctx, tx, repoID, repo, tag, m.Digest, ReasonPushed); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkReferences compares every reference with what repoID holds (blobs
// in one of storages in; manifests are metadata, in no storage): an absent required
// one, or a present one of another size than its descriptor declares,
// refuses the manifest. An absent optional reference (a sparse mirror, a
// foreign layer) is not checked.
func (s *Store) checkReferences(ctx context.Context, tx *sql.Tx, in Storages, repoID int64, m Manifest) error {
	for _, ref := range m.References {
		var stored int64
		var err error
		if ref.Manifest {
			err = tx.QueryRowContext(ctx, `SELECT m.size FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
WHERE rm.repository_id = ? AND rm.digest = ?`+s.keepRowsOf("rm"), repoID, string(ref.Digest)).Scan(&stored)
		} else {
			err = tx.QueryRowContext(ctx, `SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
WHERE rb.repository_id = ? AND rb.digest = ?
AND EXISTS (SELECT 1 FROM blob_storages bs WHERE bs.digest = rb.digest AND bs.storage IN (`+placeholders(in.count())+`))`+s.keepRowsOf("rb"),
				append([]any{repoID, string(ref.Digest)}, in.args()...)...).Scan(&stored)
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if ref.Required {
				return &MissingReferenceError{Digest: ref.Digest, Manifest: ref.Manifest}
			}
		case err != nil:
			return fmt.Errorf("check reference %s: %w", ref.Digest, err)
		case stored != ref.Size:
			return &ReferenceSizeError{Digest: ref.Digest, Manifest: ref.Manifest, Declared: ref.Size, Stored: stored}
		}
	}
	return nil
}

// recordManifest stores m (once per digest, with its references) and
// links it into repoID; linked says the link is new.
func (s *Store) recordManifest(ctx context.Context, tx *sql.Tx, repoID int64, repo string, m Manifest) (linked bool, err error) {
	annotations := ""
	if len(m.Annotations) > 0 {
		b, err := json.Marshal(m.Annotations)
		if err != nil {
			return false, fmt.Errorf("encode annotations: %w", err)
		}
		annotations = string(b)
	}
	now := s.micros()
	// One statement stores the manifest or touches the stored one: the
	// touch waits for a collector holding its row (and keeps the next one
	// away for the grace period), and a row the collector deleted
	// meanwhile is stored again, with its references. The row is new when
	// it carries this write's time; two writers storing one digest in the
	// same microsecond both record its references, which is idempotent.
	var created int64
	err = tx.QueryRowContext(ctx, `
INSERT INTO manifests (digest, media_type, artifact_type, subject, annotations, size, payload, created_at, touched_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at
RETURNING created_at`,
		string(m.Digest), m.MediaType, m.ArtifactType, string(m.Subject), annotations,
		len(m.Payload), m.Payload, now, now).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("record manifest %s: %w", m.Digest, err)
	}
	if created == now {
		if err := insertReferences(ctx, tx, m); err != nil {
			return false, err
		}
		if err := recordImageSize(ctx, tx, m.Digest); err != nil {
			return false, err
		}
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO repository_manifests (repository_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		repoID, string(m.Digest), now)
	if err != nil {
		return false, fmt.Errorf("link manifest %s to %s: %w", m.Digest, repo, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, s.checkStorageQuota(ctx, tx, repo, m.Digest, true)
}

func insertReferences(ctx context.Context, tx *sql.Tx, m Manifest) error {
	for _, ref := range m.References {
		isManifest := 0
		if ref.Manifest {
			isManifest = 1
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO manifest_references (manifest_digest, reference, is_manifest, size) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			string(m.Digest), string(ref.Digest), isManifest, ref.Size); err != nil {
			return fmt.Errorf("record reference %s -> %s: %w", m.Digest, ref.Digest, err)
		}
	}
	return nil
}

// Manifest returns the manifest that reference (a tag or a digest) names
// in repo. Only Digest, MediaType and Payload are filled; the Payload may
// be shared with other callers and must not be modified.
func (s *Store) Manifest(ctx context.Context, repo, reference string) (Manifest, error) {
	generation := func() int64 { return s.tagGeneration(ctx) }
	if strings.Contains(reference, ":") {
		generation = func() int64 { return s.contentGeneration(ctx) }
	}
	return s.manifests.Fetch(repoRef{repo, reference}, generation, func() (Manifest, error) {
		return s.manifest(ctx, repo, reference)
	})
}

func (s *Store) manifest(ctx context.Context, repo, reference string) (Manifest, error) {
	var query string
	if strings.Contains(reference, ":") {
		query = `
SELECT m.digest, m.media_type, m.payload FROM repositories r
JOIN repository_manifests rm ON rm.repository_id = r.id
JOIN manifests m ON m.digest = rm.digest
WHERE r.name = ? AND rm.digest = ?`
	} else {
		query = `
SELECT m.digest, m.media_type, m.payload FROM repositories r
JOIN tag_heads t ON t.repository_id = r.id
JOIN manifests m ON m.digest = t.digest
WHERE r.name = ? AND t.tag = ?`
	}
	var m Manifest
	var dgst string
	err := s.queryRow(ctx, query, repo, reference).Scan(&dgst, &m.MediaType, &m.Payload)
	if errors.Is(err, sql.ErrNoRows) {
		return Manifest{}, fmt.Errorf("manifest %s:%s: %w", repo, reference, errdefs.ErrNotFound)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s:%s: %w", repo, reference, err)
	}
	m.Digest = digest.Digest(dgst)
	return m, nil
}

// DeleteManifest removes dgst from repo and deletes every tag pointing at
// it (appending deletion events to their history).
func (s *Store) DeleteManifest(ctx context.Context, repo string, dgst digest.Digest) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.repositoryID(ctx, tx, repo)
		if err != nil {
			return err
		}
		if err := s.lockRepository(ctx, tx, repoID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM repository_manifests WHERE repository_id = ? AND digest = ?`, repoID, string(dgst))
		if err != nil {
			return fmt.Errorf("delete manifest %s from %s: %w", dgst, repo, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("manifest %s in %s: %w", dgst, repo, errdefs.ErrNotFound)
		}
		rows, err := tx.QueryContext(ctx, `SELECT tag FROM tag_heads WHERE repository_id = ? AND digest = ?`, repoID, string(dgst))
		if err != nil {
			return fmt.Errorf("find tags of %s: %w", dgst, err)
		}
		tags, err := scanStrings(rows)
		if err != nil {
			return fmt.Errorf("find tags of %s: %w", dgst, err)
		}
		for _, tag := range tags {
			if err := s.deleteTag(ctx, tx, repoID, repo, tag); err != nil {
				return err
			}
		}
		return s.appendEvent(ctx, tx, EventManifestDeleted, repo, dgst, "")
	})
}

// DeleteTag removes tag from repo, appending a deletion to its history.
func (s *Store) DeleteTag(ctx context.Context, repo, tag string) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.repositoryID(ctx, tx, repo)
		if err != nil {
			return err
		}
		return s.deleteTag(ctx, tx, repoID, repo, tag)
	})
}

// Tags lists up to n tags of repo after last, in byte order, and whether
// more follow. An unknown repository is errdefs.ErrNotFound.
func (s *Store) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	repoID, err := s.repositoryID(ctx, s.read, repo)
	if err != nil {
		return nil, false, err
	}
	rows, err := s.query(ctx,
		`SELECT tag FROM tag_heads WHERE repository_id = ? AND tag > ? ORDER BY tag LIMIT ?`, repoID, last, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("list tags of %s: %w", repo, err)
	}
	return page(rows, n)
}

// Repositories lists up to n repository names after last, in byte order,
// and whether more follow.
func (s *Store) Repositories(ctx context.Context, last string, n int) ([]string, bool, error) {
	rows, err := s.query(ctx,
		`SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?`, last, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("list repositories: %w", err)
	}
	return page(rows, n)
}

func page(rows *sql.Rows, n int) ([]string, bool, error) {
	items, err := scanStrings(rows)
	if err != nil {
		return nil, false, err
	}
	if len(items) > n {
		return items[:n], true, nil
	}
	return items, false, nil
}

// TagHistory returns the history of tag in repo, newest first.
func (s *Store) TagHistory(ctx context.Context, repo, tag string) ([]TagEvent, error) {
	rows, err := s.query(ctx, `
SELECT e.tag, COALESCE(e.digest, ''), e.generation, e.created_at, e.actor, e.reason, e.source FROM tag_events e
JOIN repositories r ON r.id = e.repository_id
WHERE r.name = ? AND e.tag = ? ORDER BY e.id DESC`, repo, tag)
	if err != nil {
		return nil, fmt.Errorf("tag history %s:%s: %w", repo, tag, err)
	}
	defer rows.Close()
	var out []TagEvent
	for rows.Next() {
		var ev TagEvent
		var dgst string
		var created int64
		if err := rows.Scan(&ev.Tag, &dgst, &ev.Generation, &created, &ev.Actor, &ev.Reason, &ev.Source); err != nil {
			return nil, err
		}
		ev.Digest = digest.Digest(dgst)
		ev.Created = time.UnixMicro(created).UTC()
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Referrers lists up to n manifests in repo whose subject is dgst, in
// digest order after last, filtered by artifactType when it is not "", and
// whether more follow.
func (s *Store) Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType, last string, n int) ([]Descriptor, bool, error) {
	rows, err := s.query(ctx, `
SELECT m.media_type, m.digest, m.size, m.artifact_type, m.annotations FROM manifests m
JOIN repository_manifests rm ON rm.digest = m.digest
JOIN repositories r ON r.id = rm.repository_id
WHERE m.subject = ? AND m.subject <> '' AND r.name = ? AND (? = '' OR m.artifact_type = ?) AND m.digest > ?
ORDER BY m.digest LIMIT ?`, string(dgst), repo, artifactType, artifactType, last, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("referrers of %s in %s: %w", dgst, repo, err)
	}
	defer rows.Close()
	out := []Descriptor{}
	for rows.Next() {
		var d Descriptor
		var dg, annotations string
		if err := rows.Scan(&d.MediaType, &dg, &d.Size, &d.ArtifactType, &annotations); err != nil {
			return nil, false, err
		}
		d.Digest = digest.Digest(dg)
		if annotations != "" {
			if err := json.Unmarshal([]byte(annotations), &d.Annotations); err != nil {
				return nil, false, fmt.Errorf("decode annotations of %s: %w", dg, err)
			}
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(out) > n {
		return out[:n], true, nil
	}
	return out, false, nil
}

// Event is one entry of the change sequence.
type Event struct {
	Seq        int64
	Kind       string
	Repository string
	Digest     digest.Digest
	Tag        string
	// Actor is who caused it ("" when the registry did).
	Actor string
	// Reason is why a tag moved (TagUpdated).
	Reason  TagReason
	Created time.Time
}

// Events returns up to limit events after seq, oldest first.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	rows, err := s.query(ctx,
		`SELECT seq, kind, repository, digest, tag, actor, reason, created_at FROM events WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var dgst string
		var created int64
		if err := rows.Scan(&e.Seq, &e.Kind, &e.Repository, &dgst, &e.Tag, &e.Actor, &e.Reason, &created); err != nil {
			return nil, err
		}
		e.Digest, e.Created = digest.Digest(dgst), time.UnixMicro(created).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
