package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// The ImageStream view: a repository is an image stream, its tags'
// histories are the stream's status. These queries read the same rows
// /v2 writes, so the two cannot diverge.

// Repository is a repository as the API shows it.
type Repository struct {
	Name    string // project/image
	Project string
	Created time.Time
	// Version is the sequence number of the repository's last change.
	Version int64
}

const repositoryColumns = `r.name, r.project, r.created_at,
	COALESCE((SELECT MAX(seq) FROM events e WHERE e.repository = r.name), 0)`

// RepositoryByName returns one repository.
func (s *Store) RepositoryByName(ctx context.Context, name string) (Repository, error) {
	rows, err := s.query(ctx, `SELECT `+repositoryColumns+` FROM repositories r WHERE r.name = ?`, name)
	if err != nil {
		return Repository{}, fmt.Errorf("read repository %s: %w", name, err)
	}
	repos, err := scanRepositories(rows)
	if err != nil {
		return Repository{}, err
	}
	if len(repos) == 0 {
		return Repository{}, fmt.Errorf("repository %s: %w", name, errdefs.ErrNotFound)
	}
	return repos[0], nil
}

// RepositoriesOfProject lists a project's repositories (every project's
// when project is ""), by name.
func (s *Store) RepositoriesOfProject(ctx context.Context, project string) ([]Repository, error) {
	q, args := `SELECT `+repositoryColumns+` FROM repositories r`, []any{}
	if project != "" {
		q += ` WHERE r.project = ?`
		args = append(args, project)
	}
	rows, err := s.query(ctx, q+` ORDER BY r.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list repositories of %q: %w", project, err)
	}
	return scanRepositories(rows)
}

func scanRepositories(rows *sql.Rows) ([]Repository, error) {
	defer rows.Close()
	var out []Repository
	for rows.Next() {
		var r Repository
		var created int64
		if err := rows.Scan(&r.Name, &r.Project, &created, &r.Version); err != nil {
			return nil, err
		}
		r.Created = time.UnixMicro(created).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// StreamTag is a live tag with its history, newest first, back to the
// tag's last deletion.
type StreamTag struct {
	Tag   string
	Items []TagEvent
	// AliasOf is the tag this one follows (AliasTag) as "project/stream:tag",
	// "" when none.
	AliasOf string
	// Conditions are the tag's conditions (a failed import). A tag whose
	// only import failed has conditions and no history.
	Conditions []TagCondition
}

// StreamTags returns the live tags of repo, by name, with their
// histories.
func (s *Store) StreamTags(ctx context.Context, repo string) ([]StreamTag, error) {
	rows, err := s.query(ctx, `
SELECT e.tag, COALESCE(e.digest, ''), e.generation, e.created_at, e.actor, e.reason, e.source,
	COALESCE((SELECT sr.name || ':' || a.source_tag FROM tag_aliases a JOIN repositories sr ON sr.id = a.source_repository_id
	          WHERE a.repository_id = r.id AND a.tag = e.tag), '')
FROM tag_events e
JOIN repositories r ON r.id = e.repository_id
WHERE r.name = ? AND e.tag IN (SELECT h.tag FROM tag_heads h WHERE h.repository_id = r.id)
ORDER BY e.tag, e.id DESC`, repo)
	if err != nil {
		return nil, fmt.Errorf("tags of %s: %w", repo, err)
	}
	defer rows.Close()
	var out []StreamTag
	ended := false // the current tag's history reached a deletion
	for rows.Next() {
		var ev TagEvent
		var dgst, aliasOf string
		var created int64
		if err := rows.Scan(&ev.Tag, &dgst, &ev.Generation, &created, &ev.Actor, &ev.Reason, &ev.Source, &aliasOf); err != nil {
			return nil, err
		}
		ev.Digest, ev.Created = digest.Digest(dgst), time.UnixMicro(created).UTC()
		if len(out) == 0 || out[len(out)-1].Tag != ev.Tag {
			out = append(out, StreamTag{Tag: ev.Tag, AliasOf: aliasOf})
			ended = false
		}
		if ended {
			continue
		}
		if ev.Digest == "" {
			ended = true
			continue
		}
		out[len(out)-1].Items = append(out[len(out)-1].Items, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	conds, err := s.TagConditions(ctx, repo)
	if err != nil || len(conds) == 0 {
		return out, err
	}
	for i := range out {
		out[i].Conditions = conds[out[i].Tag]
		delete(conds, out[i].Tag)
	}
	for tag, cs := range conds {
		out = append(out, StreamTag{Tag: tag, Conditions: cs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
	return out, nil
}

// RepositoryEvent is a change to a repository, in the event sequence.
type RepositoryEvent struct {
	Seq        int64
	Kind       EventKind
	Repository string
	// Tag is the tag a tag event is about.
	Tag string
}

// RepositoryEvents returns up to limit changes to repositories of project
// (all when "") after seq, oldest first; errdefs.ErrGone when the history
// no longer reaches back there.
func (s *Store) RepositoryEvents(ctx context.Context, project string, after int64, limit int) ([]RepositoryEvent, error) {
	q, args := `SELECT seq, kind, repository, tag FROM events WHERE seq > ? AND repository <> ''`, []any{after}
	if project != "" {
		q += ` AND substr(repository, 1, ?) = ?`
		args = append(args, len(project)+1, project+"/")
	}
	rows, err := s.query(ctx, q+` ORDER BY seq LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("repository events of %q: %w", project, err)
	}
	defer rows.Close()
	var out []RepositoryEvent
	for rows.Next() {
		var e RepositoryEvent
		if err := rows.Scan(&e.Seq, &e.Kind, &e.Repository, &e.Tag); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The horizon is read after the events: a prune that committed in
	// between moved it past after, and the answer is Gone rather than a
	// history with a hole.
	if err := s.checkHorizon(ctx, after); err != nil {
		return nil, err
	}
	return out, nil
}

// StoredManifest is a manifest with what the Image view shows of it.
type StoredManifest struct {
	Manifest
	Size    int64
	Created time.Time
	// Repository is one repository that holds it ("" if none does any
	// more): where to pull it from.
	Repository string
}

// ManifestsPage lists stored manifests by digest after after, up to n,
// and whether more follow.
func (s *Store) ManifestsPage(ctx context.Context, after digest.Digest, n int) ([]StoredManifest, bool, error) {
	out, err := s.storedManifests(ctx, `m.digest > ? ORDER BY m.digest LIMIT ?`, string(after), n+1)
	if err != nil {
		return nil, false, err
	}
	more := len(out) > n
	if more {
		out = out[:n]
	}
	return out, more, nil
}

// StoredManifestByDigest returns one stored manifest.
func (s *Store) StoredManifestByDigest(ctx context.Context, dgst digest.Digest) (StoredManifest, error) {
	out, err := s.storedManifests(ctx, `m.digest = ?`, string(dgst))
	if err != nil {
		return StoredManifest{}, err
	}
	if len(out) == 0 {
		return StoredManifest{}, fmt.Errorf("manifest %s: %w", dgst, errdefs.ErrNotFound)
	}
	return out[0], nil
}

func (s *Store) storedManifests(ctx context.Context, where string, args ...any) ([]StoredManifest, error) {
	rows, err := s.query(ctx, `
SELECT m.digest, m.media_type, m.payload, m.size, m.created_at,
	COALESCE((SELECT r.name FROM repository_manifests rm JOIN repositories r ON r.id = rm.repository_id
	          WHERE rm.digest = m.digest ORDER BY r.name LIMIT 1), '')
FROM manifests m WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	defer rows.Close()
	var out []StoredManifest
	for rows.Next() {
		var m StoredManifest
		var d string
		var created int64
		if err := rows.Scan(&d, &m.MediaType, &m.Payload, &m.Size, &created, &m.Repository); err != nil {
			return nil, err
		}
		m.Digest, m.Created = digest.Digest(d), time.UnixMicro(created).UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// TouchRepository records that the image stream of repo changed without a
// tag moving (its spec object was written), creating the repository when
// it does not exist: watchers of streams see the change.
func (s *Store) TouchRepository(ctx context.Context, repo string) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		if err := s.quotaFirst(ctx, tx, repo); err != nil {
			return err
		}
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM repositories WHERE name = ?`, repo).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			_, err = s.ensureRepository(ctx, tx, repo)
			return err
		}
		if err != nil {
			return fmt.Errorf("look up repository %s: %w", repo, err)
		}
		return s.appendEvent(ctx, tx, EventStreamSpecChanged, repo, "", "")
	})
}
