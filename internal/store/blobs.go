package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Blobs known to repositories, and upload sessions.

// BlobSize returns the size of dgst if repo holds it.
func (s *Store) BlobSize(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	return s.blobSizes.Fetch(repoRef{repo, string(dgst)}, s.contentGen.Load, func() (int64, error) {
		return s.blobSize(ctx, repo, dgst)
	})
}

func (s *Store) blobSize(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	var size int64
	err := s.queryRow(ctx, `
SELECT b.size FROM repositories r
JOIN repository_blobs rb ON rb.repository_id = r.id
JOIN blobs b ON b.digest = rb.digest
WHERE r.name = ? AND rb.digest = ?`, repo, string(dgst)).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("blob %s in %s: %w", dgst, repo, errdefs.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("look up blob %s in %s: %w", dgst, repo, err)
	}
	return size, nil
}

// MountBlob links dgst into repo from a repository that holds it: from,
// or, when from is "", any repository. It reports whether a source held
// the blob. The lookup and the link are one transaction, so a blob cannot
// vanish between them.
func (s *Store) MountBlob(ctx context.Context, repo, from string, dgst digest.Digest) (bool, error) {
	mounted := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var size int64
		err := tx.QueryRowContext(ctx, `
SELECT b.size FROM repository_blobs rb
JOIN repositories r ON r.id = rb.repository_id
JOIN blobs b ON b.digest = rb.digest
WHERE rb.digest = ? AND (? = '' OR r.name = ?) LIMIT 1`, string(dgst), from, from).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find %s to mount: %w", dgst, err)
		}
		mounted = true
		return s.linkBlob(ctx, tx, repo, dgst, size)
	})
	return mounted, err
}

// LinkBlob records that repo holds blob dgst of size, creating the
// repository when needed. Linking again is a no-op.
func (s *Store) LinkBlob(ctx context.Context, repo string, dgst digest.Digest, size int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return s.linkBlob(ctx, tx, repo, dgst, size) })
}

func (s *Store) linkBlob(ctx context.Context, tx *sql.Tx, repo string, dgst digest.Digest, size int64) error {
	repoID, err := s.ensureRepository(ctx, tx, repo)
	if err != nil {
		return err
	}
	now := s.micros()
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING`,
		string(dgst), size, now); err != nil {
		return fmt.Errorf("record blob %s: %w", dgst, err)
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		repoID, string(dgst), now)
	if err != nil {
		return fmt.Errorf("link blob %s to %s: %w", dgst, repo, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return s.appendEvent(ctx, tx, "BlobLinked", repo, dgst, "")
	}
	return nil
}

// CommitUpload links the blob an upload produced and ends the session, in
// one transaction. A session that ended meanwhile (cancelled, expired, its
// project deleted) is errdefs.ErrNotFound, and nothing is linked: the
// repository must not come back after its project went.
func (s *Store) CommitUpload(ctx context.Context, uploadID, repo string, dgst digest.Digest, size int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM uploads WHERE id = ? AND repository = ?`, uploadID, repo)
		if err != nil {
			return fmt.Errorf("end upload %s: %w", uploadID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("upload %s ended before its commit: %w", uploadID, errdefs.ErrNotFound)
		}
		return s.linkBlob(ctx, tx, repo, dgst, size)
	})
}

// UnlinkBlob removes blob dgst from repo. The bytes stay until garbage
// collection finds no repository holding them.
func (s *Store) UnlinkBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
DELETE FROM repository_blobs WHERE digest = ?
AND repository_id = (SELECT id FROM repositories WHERE name = ?)`, string(dgst), repo)
		if err != nil {
			return fmt.Errorf("unlink blob %s from %s: %w", dgst, repo, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("blob %s in %s: %w", dgst, repo, errdefs.ErrNotFound)
		}
		return s.appendEvent(ctx, tx, "BlobUnlinked", repo, dgst, "")
	})
}

// UploadLimits cap the open upload sessions of one user and of one
// project; 0 is no cap.
type UploadLimits struct {
	PerUser, PerProject int
}

// UploadLimitError refuses a session beyond a cap. It wraps
// errdefs.ErrLimitExceeded.
type UploadLimitError struct {
	// Scope is "user" or "project"; Name names the one at its Limit.
	Scope, Name string
	Limit       int
}

func (e *UploadLimitError) Error() string {
	return fmt.Sprintf("%s %s has %d open upload sessions, the most allowed", e.Scope, e.Name, e.Limit)
}

func (e *UploadLimitError) Unwrap() error { return errdefs.ErrLimitExceeded }

// CreateUpload records a new upload session of u.Owner, unless that user
// or the repository's project already has as many open as limits allow.
func (s *Store) CreateUpload(ctx context.Context, u Upload, limits UploadLimits) error {
	project := projectOf(u.Repository)
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, c := range []struct {
			scope, column, name string
			limit               int
		}{{"user", "owner", u.Owner, limits.PerUser}, {"project", "project", project, limits.PerProject}} {
			if c.limit <= 0 {
				continue
			}
			var open int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM uploads WHERE `+c.column+` = ?`, c.name).Scan(&open); err != nil {
				return fmt.Errorf("count upload sessions of %s %s: %w", c.scope, c.name, err)
			}
			if open >= c.limit {
				return &UploadLimitError{Scope: c.scope, Name: c.name, Limit: c.limit}
			}
		}
		now := s.micros()
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO uploads (id, repository, owner, project, size, hash_state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Repository, u.Owner, project, u.Size, u.HashState, now, now); err != nil {
			return fmt.Errorf("create upload %s: %w", u.ID, err)
		}
		return nil
	})
}

// Upload returns session id if it belongs to repo; a session of another
// repository is errdefs.ErrNotFound, exactly like one that never existed.
func (s *Store) Upload(ctx context.Context, repo, id string) (Upload, error) {
	u := Upload{ID: id}
	var created, updated int64
	err := s.queryRow(ctx,
		`SELECT repository, owner, size, hash_state, epoch, created_at, updated_at FROM uploads WHERE id = ?`, id).
		Scan(&u.Repository, &u.Owner, &u.Size, &u.HashState, &u.Epoch, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && u.Repository != repo) {
		return Upload{}, fmt.Errorf("upload %s in %s: %w", id, repo, errdefs.ErrNotFound)
	}
	if err != nil {
		return Upload{}, fmt.Errorf("read upload %s: %w", id, err)
	}
	u.Created, u.Updated = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	return u, nil
}

// AdvanceUpload records that session id grew from size from to u.Size with
// hash state u.HashState, written in epoch u.Epoch. It fails with
// errdefs.ErrUnavailable if the session is no longer at from (another
// writer moved it).
func (s *Store) AdvanceUpload(ctx context.Context, u Upload, from int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE uploads SET size = ?, hash_state = ?, epoch = ?, updated_at = ? WHERE id = ? AND size = ?`,
			u.Size, u.HashState, u.Epoch, s.micros(), u.ID, from)
		if err != nil {
			return fmt.Errorf("advance upload %s: %w", u.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			if err := tx.QueryRowContext(ctx, `SELECT 1 FROM uploads WHERE id = ?`, u.ID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("upload %s ended (expired or cancelled): %w", u.ID, errdefs.ErrNotFound)
			}
			return fmt.Errorf("upload %s moved on from %d: %w", u.ID, from, errdefs.ErrUnavailable)
		}
		return nil
	})
}

// DeleteUpload ends session id.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM uploads WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete upload %s: %w", id, err)
		}
		return nil
	})
}

// UploadIDs returns the ids of all open sessions.
func (s *Store) UploadIDs(ctx context.Context) (map[string]bool, error) {
	rows, err := s.query(ctx, `SELECT id FROM uploads`)
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	ids, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("list uploads: %w", err)
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set, nil
}

// ExpireUploads deletes sessions untouched since before and returns their ids.
func (s *Store) ExpireUploads(ctx context.Context, before time.Time) ([]string, error) {
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM uploads WHERE updated_at < ? RETURNING id`, before.UnixMicro())
		if err != nil {
			return fmt.Errorf("expire uploads: %w", err)
		}
		ids, err = scanStrings(rows)
		return err
	})
	return ids, err
}
