package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Tags are history: every change appends a tag event, and tag_heads
// indexes the newest live one. Besides a push, a tag moves when a user
// tags an image that is already in the registry (from this repository or
// another), when the tag an alias follows moves, and on a rollback. The
// history of each tag is bounded (SetTagHistoryLimit); trimming drops
// entries only, never an image: garbage collection decides about those.

// TagReason says why a tag moved, recorded with the history entry.
type TagReason string

// The reasons a tag moves.
const (
	ReasonPushed   TagReason = ""         // a manifest was pushed with the tag
	ReasonTagged   TagReason = "Tagged"   // a user tagged an image already stored
	ReasonAlias    TagReason = "Alias"    // the tag an alias follows moved
	ReasonRollback TagReason = "Rollback" // a user went back to an earlier entry
	ReasonImported TagReason = "Imported" // an import from another registry
	ReasonDeleted  TagReason = "Deleted"  // the tag was deleted
	ReasonPruned   TagReason = "Pruned"   // pruning unlinked the image (ManifestDeleted)
)

// DefaultTagHistory is how many entries each tag's history keeps unless
// SetTagHistoryLimit says otherwise.
const DefaultTagHistory = 25

// maxAliasChain bounds how far a move propagates through aliases of
// aliases (they are refused from forming a cycle, so this is a backstop).
const maxAliasChain = 16

type actorKey struct{}

// WithActor returns ctx naming who acts: the events and tag history
// entries the store appends within it record the name.
func WithActor(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, actorKey{}, name)
}

// ActorFrom is the name WithActor put in ctx ("" when none: the registry
// itself acts).
func ActorFrom(ctx context.Context) string {
	name, _ := ctx.Value(actorKey{}).(string)
	return name
}

// SetTagHistoryLimit bounds each tag's history to n entries from the next
// change of the tag on (n < 1: DefaultTagHistory).
func (s *Store) SetTagHistoryLimit(n int) {
	if n < 1 {
		n = DefaultTagHistory
	}
	s.tagHistory.Store(int64(n))
}

func (s *Store) tagHistoryLimit() int64 {
	if n := s.tagHistory.Load(); n > 0 {
		return n
	}
	return DefaultTagHistory
}

// lockRepository holds repoID's row until tx ends (where writes run at
// once): the row is the lock of the repository's tags and manifest links,
// so two writers that read a head or a link and then change it take
// turns, each reading what the other left.
func (s *Store) lockRepository(ctx context.Context, tx *sql.Tx, repoID int64) error {
	return s.lockRows(ctx, tx, `SELECT 1 FROM repositories WHERE id = ?`, repoID)
}

// repositoryForWrite returns the ID of repo, created if needed, holding
// what a write into it holds, in the order every write takes it: the
// project's quota lock (quotaFirst), then the repository's row. Under the
// row, what the repository links and where its tags point are decided: a
// prune's plan does not unlink what the write links, and a manifest
// deleted meanwhile (DeleteManifest holds the row) is linked again, not
// left behind a tag.
func (s *Store) repositoryForWrite(ctx context.Context, tx *sql.Tx, repo string) (int64, error) {
	if err := s.quotaFirst(ctx, tx, repo); err != nil {
		return 0, err
	}
	repoID, err := s.ensureRepository(ctx, tx, repo)
	if err != nil {
		return 0, err
	}
	return repoID, s.lockRepository(ctx, tx, repoID)
}

// setTag points tag at dgst unless it already points there. A tag set
// directly (anything but ReasonAlias) stops following the tag it was an
// alias of; the aliases of tag follow it.
func (s *Store) setTag(ctx context.Context, tx *sql.Tx, repoID int64, repo, tag string, dgst digest.Digest, why TagReason) error {
	if why != ReasonAlias {
		if _, err := tx.ExecContext(ctx, `DELETE FROM tag_aliases WHERE repository_id = ? AND tag = ?`, repoID, tag); err != nil {
			return fmt.Errorf("end alias %s:%s: %w", repo, tag, err)
		}
	}
	return s.moveTag(ctx, tx, repoID, repo, tag, dgst, why, 0)
}

func (s *Store) moveTag(ctx context.Context, tx *sql.Tx, repoID int64, repo, tag string, dgst digest.Digest, why TagReason, depth int) error {
	if err := s.lockRepository(ctx, tx, repoID); err != nil {
		return err
	}
	var current string
	err := tx.QueryRowContext(ctx, `SELECT digest FROM tag_heads WHERE repository_id = ? AND tag = ?`, repoID, tag).Scan(&current)
	if err == nil && current == string(dgst) {
		return nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read tag %s:%s: %w", repo, tag, err)
	}
	eventID, err := s.appendTagEvent(ctx, tx, repoID, tag, string(dgst), why)
	if err != nil {
		return fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	if _, err := tx.ExecContext(ctx, `
INSERT INTO tag_heads (repository_id, tag, digest, event_id) VALUES (?, ?, ?, ?)
ON CONFLICT (repository_id, tag) DO UPDATE SET digest = excluded.digest, event_id = excluded.event_id`,
		repoID, tag, string(dgst), eventID); err != nil {
		return fmt.Errorf("move tag %s:%s: %w", repo, tag, err)
	}
	if err := s.appendEventWhy(ctx, tx, EventTagUpdated, repo, dgst, tag, why); err != nil {
		return err
	}
	if depth >= maxAliasChain {
		return nil
	}
	aliases, err := s.aliasesOf(ctx, tx, repoID, tag)
	if err != nil {
		return err
	}
	for _, a := range aliases {
		if a.repoID != repoID {
			if err := s.lockRepository(ctx, tx, a.repoID); err != nil {
				return err
			}
			if err := s.linkManifestTree(ctx, tx, repoID, a.repoID, a.repo, dgst); err != nil {
				return err
			}
		}
		if err := s.moveTag(ctx, tx, a.repoID, a.repo, a.tag, dgst, ReasonAlias, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// alias is a tag that follows another.
type alias struct {
	repoID int64
	repo   string
	tag    string
}

func (s *Store) aliasesOf(ctx context.Context, tx *sql.Tx, repoID int64, tag string) ([]alias, error) {
	rows, err := tx.QueryContext(ctx, `
SELECT a.repository_id, r.name, a.tag FROM tag_aliases a JOIN repositories r ON r.id = a.repository_id
WHERE a.source_repository_id = ? AND a.source_tag = ? ORDER BY r.name, a.tag`, repoID, tag)
	if err != nil {
		return nil, fmt.Errorf("aliases of %s: %w", tag, err)
	}
	defer rows.Close()
	var out []alias
	for rows.Next() {
		var a alias
		if err := rows.Scan(&a.repoID, &a.repo, &a.tag); err != nil {
			return nil, fmt.Errorf("aliases of %s: %w", tag, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// appendTagEvent appends to a tag's history (digest "" records a
// deletion) and trims it to the limit. The generation counts tag changes
// in the repository.
func (s *Store) appendTagEvent(ctx context.Context, tx *sql.Tx, repoID int64, tag, dgst string, why TagReason) (int64, error) {
	var nullable any
	if dgst != "" {
		nullable = dgst
	}
	var generation, id int64
	if err := tx.QueryRowContext(ctx,
		`UPDATE repositories SET tag_generation = tag_generation + 1 WHERE id = ? RETURNING tag_generation`,
		repoID).Scan(&generation); err != nil {
		return 0, fmt.Errorf("next tag generation: %w", err)
	}
	err := tx.QueryRowContext(ctx, `
INSERT INTO tag_events (repository_id, tag, digest, generation, actor, reason, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, repoID, tag, nullable, generation, ActorFrom(ctx), string(why), s.micros()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append tag event: %w", err)
	}
	// The entries older than the limit's oldest go; the index on
	// (repository_id, tag, id) makes this a short range delete.
	if _, err := tx.ExecContext(ctx, `
DELETE FROM tag_events WHERE repository_id = ? AND tag = ? AND id < (
	SELECT id FROM tag_events WHERE repository_id = ? AND tag = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		repoID, tag, repoID, tag, s.tagHistoryLimit()-1); err != nil {
		return 0, fmt.Errorf("trim history of %s: %w", tag, err)
	}
	return id, nil
}

func (s *Store) deleteTag(ctx context.Context, tx *sql.Tx, repoID int64, repo, tag string) error {
	if err := s.lockRepository(ctx, tx, repoID); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM tag_heads WHERE repository_id = ? AND tag = ?`, repoID, tag)
	if err != nil {
		return fmt.Errorf("delete tag %s:%s: %w", repo, tag, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("tag %s:%s: %w", repo, tag, errdefs.ErrNotFound)
	}
	for _, q := range []string{`DELETE FROM tag_aliases WHERE repository_id = ? AND tag = ?`,
		`DELETE FROM tag_conditions WHERE repository_id = ? AND tag = ?`} {
		if _, err := tx.ExecContext(ctx, q, repoID, tag); err != nil {
			return fmt.Errorf("delete tag %s:%s: %w", repo, tag, err)
		}
	}
	if _, err := s.appendTagEvent(ctx, tx, repoID, tag, "", ReasonDeleted); err != nil {
		return fmt.Errorf("delete tag %s:%s: %w", repo, tag, err)
	}
	return s.appendEvent(ctx, tx, EventTagDeleted, repo, "", tag)
}

// TagImage points tag of repo at manifest dgst, which repository from
// holds (repo itself, or another the caller may read), and records why.
// The manifest and everything it references (an index's children and
// their blobs) are linked into repo in the same transaction, so the tag
// can be pulled from repo at once; repo is created if needed. A manifest
// from does not hold is errdefs.ErrNotFound.
func (s *Store) TagImage(ctx context.Context, repo, tag, from string, dgst digest.Digest, why TagReason) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.repositoryForWrite(ctx, tx, repo)
		if err != nil {
			return err
		}
		fromID, err := s.repositoryID(ctx, tx, from)
		if err != nil {
			return err
		}
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM repository_manifests WHERE repository_id = ? AND digest = ?`+s.dialect.keepRows, fromID, string(dgst)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("manifest %s in %s: %w", dgst, from, errdefs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("find manifest %s in %s: %w", dgst, from, err)
		}
		if repoID != fromID {
			if err := s.linkManifestTree(ctx, tx, fromID, repoID, repo, dgst); err != nil {
				return err
			}
		}
		return s.setTag(ctx, tx, repoID, repo, tag, dgst, why)
	})
}

// linkManifestTree links manifest dgst, its child manifests and the blobs
// they reference into repoID (blobs, then manifests, each in digest order:
// the order every write that links or unlinks several takes the rows
// counting what the project holds), appending an event for each new link as a
// push would; only what repository fromID holds is linked (a manifest may
// name blobs its repository does not hold: a foreign layer, an imported
// image's layers), with where fromID's imported manifests came from, so
// that pull-through serves the copy as it serves the original.
func (s *Store) linkManifestTree(ctx context.Context, tx *sql.Tx, fromID, repoID int64, repo string, dgst digest.Digest) error {
	rows, err := tx.QueryContext(ctx, `
WITH RECURSIVE tree(digest) AS (
	SELECT digest FROM manifests WHERE digest = ?
	UNION SELECT mr.reference FROM manifest_references mr JOIN tree t ON mr.manifest_digest = t.digest WHERE mr.is_manifest = 1
)
SELECT t.digest, 1 FROM tree t
WHERE EXISTS (SELECT 1 FROM repository_manifests rm WHERE rm.repository_id = ? AND rm.digest = t.digest)
UNION
SELECT mr.reference, 0 FROM manifest_references mr JOIN tree t ON mr.manifest_digest = t.digest
WHERE mr.is_manifest = 0 AND EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = ? AND rb.digest = mr.reference)
ORDER BY 2, 1`,
		string(dgst), fromID, fromID)
	if err != nil {
		return fmt.Errorf("references of %s: %w", dgst, err)
	}
	links, err := scanDigestRefs(rows)
	if err != nil {
		return fmt.Errorf("references of %s: %w", dgst, err)
	}
	now := s.micros()
	for _, l := range links {
		if !l.manifest {
			if err := s.touchBlob(ctx, tx, l.digest); err != nil {
				return err
			}
			if err := s.linkRepository(ctx, tx, repo, l.digest); err != nil {
				return err
			}
			continue
		}
		res, err := tx.ExecContext(ctx,
			`INSERT INTO repository_manifests (repository_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			repoID, string(l.digest), now)
		if err != nil {
			return fmt.Errorf("link manifest %s to %s: %w", l.digest, repo, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			if err := s.checkStoredImageSize(ctx, tx, repo, l.digest); err != nil {
				return err
			}
			if err := s.checkStorageQuota(ctx, tx, repo, l.digest, true); err != nil {
				return err
			}
			// Linked by a tag, not pushed: the reason tells them apart.
			if err := s.appendEventWhy(ctx, tx, EventManifestPushed, repo, l.digest, "", ReasonTagged); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `
INSERT INTO remote_manifests (repository_id, digest, source, insecure)
SELECT ?, digest, source, insecure FROM remote_manifests WHERE repository_id = ? AND digest = ?
ON CONFLICT (repository_id, digest) DO NOTHING`, repoID, fromID, string(l.digest)); err != nil {
			return fmt.Errorf("copy the source of %s: %w", l.digest, err)
		}
	}
	return nil
}

// AliasTag makes tag of repo follow sourceTag of the same repository
// (sourceRepo must be repo): it points at sourceTag's image now, and
// moves whenever sourceTag moves, until it is set directly or deleted. An
// absent sourceTag is errdefs.ErrNotFound; an alias of another
// repository, one that would follow itself (through other aliases), or
// one that would end a chain longer than maxAliasChain is
// errdefs.ErrInvalidArgument.
func (s *Store) AliasTag(ctx context.Context, repo, tag, sourceRepo, sourceTag string) error {
	if repo == sourceRepo && tag == sourceTag {
		return fmt.Errorf("tag %s:%s cannot follow itself: %w", repo, tag, errdefs.ErrInvalidArgument)
	}
	// Within one stream, as the reference's oc tag --alias: an alias in
	// another project would go on copying the source's images after its
	// author lost access to them, in the source's pushes' transactions.
	if repo != sourceRepo {
		return fmt.Errorf("tag %s:%s cannot follow a tag of another stream (%s): an alias follows a tag of its own stream: %w",
			repo, tag, sourceRepo, errdefs.ErrInvalidArgument)
	}
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		if err := s.quotaFirst(ctx, tx, repo); err != nil {
			return err
		}
		sourceID, err := s.repositoryID(ctx, tx, sourceRepo)
		if err != nil {
			return err
		}
		if err := s.lockRepository(ctx, tx, sourceID); err != nil {
			return err
		}
		var head string
		err = tx.QueryRowContext(ctx, `SELECT digest FROM tag_heads WHERE repository_id = ? AND tag = ?`, sourceID, sourceTag).Scan(&head)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("tag %s:%s: %w", sourceRepo, sourceTag, errdefs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read tag %s:%s: %w", sourceRepo, sourceTag, err)
		}
		repoID, err := s.ensureRepository(ctx, tx, repo)
		if err != nil {
			return err
		}
		// sourceTag may itself follow another: refuse when the chain leads
		// back to tag.
		nextID, next := sourceID, sourceTag
		for depth := 0; ; depth++ {
			if depth >= maxAliasChain {
				return fmt.Errorf("tag %s:%s would end a chain of more than %d aliases: %w", repo, tag, maxAliasChain, errdefs.ErrInvalidArgument)
			}
			var upID int64
			var up string
			err := tx.QueryRowContext(ctx, `SELECT source_repository_id, source_tag FROM tag_aliases WHERE repository_id = ? AND tag = ?`, nextID, next).Scan(&upID, &up)
			if errors.Is(err, sql.ErrNoRows) {
				break
			}
			if err != nil {
				return fmt.Errorf("read alias %s: %w", next, err)
			}
			if upID == repoID && up == tag {
				return fmt.Errorf("tag %s:%s would follow itself through %s:%s: %w", repo, tag, sourceRepo, sourceTag, errdefs.ErrInvalidArgument)
			}
			nextID, next = upID, up
		}
		if repoID != sourceID {
			if err := s.linkManifestTree(ctx, tx, sourceID, repoID, repo, digest.Digest(head)); err != nil {
				return err
			}
		}
		if err := s.setTag(ctx, tx, repoID, repo, tag, digest.Digest(head), ReasonAlias); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
INSERT INTO tag_aliases (repository_id, tag, source_repository_id, source_tag) VALUES (?, ?, ?, ?)
ON CONFLICT (repository_id, tag) DO UPDATE SET source_repository_id = excluded.source_repository_id, source_tag = excluded.source_tag`,
			repoID, tag, sourceID, sourceTag); err != nil {
			return fmt.Errorf("alias %s:%s to %s:%s: %w", repo, tag, sourceRepo, sourceTag, err)
		}
		// A new alias changes the stream's spec even when the image stays
		// (an alias, not a push, for webhooks).
		return s.appendEventWhy(ctx, tx, EventTagUpdated, repo, digest.Digest(head), tag, ReasonAlias)
	})
}
