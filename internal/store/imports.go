package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Imports from other registries. An import records the manifests it
// fetched (an index with its children, or one image) in the repository,
// without their blobs: each manifest says where it came from
// (remote_manifests), so that pull-through can fetch its blobs on the
// first pull. The tag's history entry names the upstream image. A failed
// import leaves the tag as it was and records why, as the tag's
// ImportSuccess condition; a successful one clears it.

// Imported is what an import of one image records.
type Imported struct {
	// Manifests are the manifests fetched, the one the tag points at
	// first (an index, then its children; or one image).
	Manifests []Manifest
	// Source is the upstream repository ("registry/namespace/name").
	Source string
	// Insecure says the upstream is reached without TLS verification.
	Insecure bool
}

// TagCondition is a condition of a tag (the reference's ImportSuccess).
type TagCondition struct {
	Type, Status, Reason, Message string
	Generation                    int64
	Changed                       time.Time
}

// ConditionImportSuccess is the one condition type tags have.
const ConditionImportSuccess = "ImportSuccess"

// RecordImport records im in repo (created if needed) and, when tag is
// not "", points tag at its first manifest with the upstream pull spec in
// the history entry, and clears the tag's ImportSuccess condition. An
// unchanged upstream digest adds no history.
func (s *Store) RecordImport(ctx context.Context, repo, tag string, im Imported) error {
	if len(im.Manifests) == 0 {
		return fmt.Errorf("import into %s: no manifest: %w", repo, errdefs.ErrInvalidArgument)
	}
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.repositoryForWrite(ctx, tx, repo)
		if err != nil {
			return err
		}
		// Linked in digest order, as pruning and tags link and unlink: the
		// rows counting what a project holds (project_contents) are shared
		// by its repositories, and writes that take several of them must
		// take them in one order.
		manifests := slices.SortedFunc(slices.Values(im.Manifests), func(a, b Manifest) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		for _, m := range manifests {
			if err := s.checkImageSize(ctx, tx, repo, m); err != nil {
				return err
			}
			linked, err := s.recordManifest(ctx, tx, repoID, repo, m)
			if err != nil {
				return err
			}
			if linked {
				if err := s.appendEventWhy(ctx, tx, EventManifestPushed, repo, m.Digest, "", ReasonImported); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `
INSERT INTO remote_manifests (repository_id, digest, source, insecure) VALUES (?, ?, ?, ?)
ON CONFLICT (repository_id, digest) DO UPDATE SET source = excluded.source, insecure = excluded.insecure`,
				repoID, string(m.Digest), im.Source, im.Insecure); err != nil {
				return fmt.Errorf("record the source of %s: %w", m.Digest, err)
			}
		}
		if tag == "" {
			return nil
		}
		top := im.Manifests[0].Digest
		if err := s.setTag(ctx, tx, repoID, repo, tag, top, ReasonImported); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `
UPDATE tag_events SET source = ? WHERE id = (SELECT event_id FROM tag_heads WHERE repository_id = ? AND tag = ?) AND reason = ?`,
			im.Source+"@"+string(top), repoID, tag, string(ReasonImported)); err != nil {
			return fmt.Errorf("record the source of %s:%s: %w", repo, tag, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tag_conditions WHERE repository_id = ? AND tag = ? AND type = ?`,
			repoID, tag, ConditionImportSuccess); err != nil {
			return fmt.Errorf("clear the conditions of %s:%s: %w", repo, tag, err)
		}
		return nil
	})
}

// SetTagCondition records c on tag of repo (created if needed), keeping
// the time it changed when status, reason and message are the same; the
// stream's watchers see it.
func (s *Store) SetTagCondition(ctx context.Context, repo, tag string, c TagCondition) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		repoID, err := s.repositoryForWrite(ctx, tx, repo)
		if err != nil {
			return err
		}
		var status, reason, message string
		err = tx.QueryRowContext(ctx, `SELECT status, reason, message FROM tag_conditions WHERE repository_id = ? AND tag = ? AND type = ?`,
			repoID, tag, c.Type).Scan(&status, &reason, &message)
		if err == nil && status == c.Status && reason == c.Reason && message == c.Message {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read the conditions of %s:%s: %w", repo, tag, err)
		}
		if _, err := tx.ExecContext(ctx, `
INSERT INTO tag_conditions (repository_id, tag, type, status, reason, message, generation, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (repository_id, tag, type) DO UPDATE SET status = excluded.status, reason = excluded.reason,
	message = excluded.message, generation = excluded.generation, changed_at = excluded.changed_at`,
			repoID, tag, c.Type, c.Status, c.Reason, c.Message, c.Generation, s.micros()); err != nil {
			return fmt.Errorf("record a condition of %s:%s: %w", repo, tag, err)
		}
		return s.appendEvent(ctx, tx, EventStreamSpecChanged, repo, "", tag)
	})
}

// TagConditions are the conditions of repo's tags, by tag.
func (s *Store) TagConditions(ctx context.Context, repo string) (map[string][]TagCondition, error) {
	rows, err := s.query(ctx, `
SELECT c.tag, c.type, c.status, c.reason, c.message, c.generation, c.changed_at FROM tag_conditions c
JOIN repositories r ON r.id = c.repository_id WHERE r.name = ? ORDER BY c.tag, c.type`, repo)
	if err != nil {
		return nil, fmt.Errorf("conditions of %s: %w", repo, err)
	}
	defer rows.Close()
	out := map[string][]TagCondition{}
	for rows.Next() {
		var tag string
		var c TagCondition
		var changed int64
		if err := rows.Scan(&tag, &c.Type, &c.Status, &c.Reason, &c.Message, &c.Generation, &changed); err != nil {
			return nil, fmt.Errorf("conditions of %s: %w", repo, err)
		}
		c.Changed = time.UnixMicro(changed).UTC()
		out[tag] = append(out[tag], c)
	}
	return out, rows.Err()
}

// RemoteSource is where a manifest recorded by an import can be fetched
// from, with its blobs.
type RemoteSource struct {
	Source   string // upstream repository
	Insecure bool
	// Size is the size the manifests declare for a blob (-1: unknown).
	Size int64
}

// ManifestSource is where manifest dgst of repo came from;
// errdefs.ErrNotFound when it was pushed here, not imported.
func (s *Store) ManifestSource(ctx context.Context, repo string, dgst digest.Digest) (RemoteSource, error) {
	var src RemoteSource
	err := s.queryRow(ctx, `
SELECT rm.source, rm.insecure FROM remote_manifests rm JOIN repositories r ON r.id = rm.repository_id
WHERE r.name = ? AND rm.digest = ?`, repo, string(dgst)).Scan(&src.Source, &src.Insecure)
	if errors.Is(err, sql.ErrNoRows) {
		return RemoteSource{}, fmt.Errorf("source of %s in %s: %w", dgst, repo, errdefs.ErrNotFound)
	}
	if err != nil {
		return RemoteSource{}, fmt.Errorf("source of %s in %s: %w", dgst, repo, err)
	}
	return src, nil
}

// BlobSources are where blob dgst can be fetched from for repo: the
// sources of the imported manifests of repo that reference it.
func (s *Store) BlobSources(ctx context.Context, repo string, dgst digest.Digest) ([]RemoteSource, error) {
	rows, err := s.query(ctx, `
SELECT rm.source, rm.insecure, MAX(mr.size) FROM remote_manifests rm
JOIN repositories r ON r.id = rm.repository_id
JOIN manifest_references mr ON mr.manifest_digest = rm.digest
WHERE r.name = ? AND mr.reference = ? AND mr.is_manifest = 0
GROUP BY rm.source, rm.insecure ORDER BY rm.insecure, rm.source`, repo, string(dgst))
	if err != nil {
		return nil, fmt.Errorf("sources of %s in %s: %w", dgst, repo, err)
	}
	defer rows.Close()
	var out []RemoteSource
	for rows.Next() {
		var src RemoteSource
		if err := rows.Scan(&src.Source, &src.Insecure, &src.Size); err != nil {
			return nil, fmt.Errorf("sources of %s in %s: %w", dgst, repo, err)
		}
		out = append(out, src)
	}
	return out, rows.Err()
}
