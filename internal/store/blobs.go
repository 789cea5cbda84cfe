package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Blobs known to repositories, and upload sessions.
//
// Blob bytes live in storages (spec.storage of the registry Config: a
// volume, an emptyDir, later object storage), and switching storage moves
// nothing. So the store records, for each blob, every storage its bytes
// were committed to (blob_storages), and with each upload session the
// storage its bytes go to; a blob counts as present only in the storages
// the caller can read from (Storages: the one in effect, and older ones
// not yet migrated away from).
//
// The caller names those storages on every method that decides presence
// (BlobSize, LocateBlob, MountBlob, PutManifest), and the one storage
// bytes were written to on LinkBlob, rather than the store finding them
// in the context or in a handle scoped to one storage: a context value is
// invisible at the call site, and a call that forgot it would quietly
// answer for some default storage — a HEAD saying "exists" for bytes that
// are elsewhere, which is the failure this guards against. An explicit
// parameter is checked by the compiler at every call. An upload session
// carries its storage in its row, so committing it needs no parameter.

// DefaultStorage is the storage of blobs and sessions recorded before the
// storage could be switched: the data directory's blob store, which is the
// default volume claim's (migration 8 gives existing rows this value).
const DefaultStorage = "pvc:image-registry-storage"

// blobRef keys the location cache: the storages are part of the
// question, so an answer for one set is never given for another.
type blobRef struct {
	storages, repo string
	dgst           digest.Digest
}

// BlobLocation is where a repository's blob is: its size, and the storage
// that holds its bytes.
type BlobLocation struct {
	Size    int64
	Storage string
}

// BlobSize returns the size of dgst if repo holds it in one of in.
func (s *Store) BlobSize(ctx context.Context, in Storages, repo string, dgst digest.Digest) (int64, error) {
	loc, err := s.LocateBlob(ctx, in, repo, dgst)
	return loc.Size, err
}

// LocateBlob returns the size of dgst and the storage of in that holds
// its bytes, if repo holds it: the storage in effect when it does, else
// the first older one that does, in the order in names them.
func (s *Store) LocateBlob(ctx context.Context, in Storages, repo string, dgst digest.Digest) (BlobLocation, error) {
	if err := in.check(); err != nil {
		return BlobLocation{}, err
	}
	return s.blobLocations.Fetch(blobRef{in.key(), repo, dgst}, func() int64 { return s.locationGen(ctx) }, func() (BlobLocation, error) {
		return s.locateBlob(ctx, in, repo, dgst)
	})
}

func (s *Store) locateBlob(ctx context.Context, in Storages, repo string, dgst digest.Digest) (BlobLocation, error) {
	var loc BlobLocation
	err := s.queryRow(ctx, locateBlobQuery(in.count()),
		append(append([]any{repo, string(dgst)}, in.args()...), in.args()...)...).Scan(&loc.Size, &loc.Storage)
	if errors.Is(err, sql.ErrNoRows) {
		return BlobLocation{}, fmt.Errorf("blob %s in %s: %w", dgst, repo, errdefs.ErrNotFound)
	}
	if err != nil {
		return BlobLocation{}, fmt.Errorf("look up blob %s in %s: %w", dgst, repo, err)
	}
	return loc, nil
}

// locationGen moves when what a location answer depends on changed: a
// blob removed, or moved between storages.
func (s *Store) locationGen(ctx context.Context) int64 {
	if s.dialect.shared {
		g := s.sharedGenerations(ctx)
		return g.content + g.moves
	}
	return s.contentGen.Load() + s.movedGen.Load()
}

// locateBlobQuery finds a repository's blob in one of n storages, in the
// order they are named (a storage's place in the list, bound once more
// after the list). Its text differs by n only: with no migration pending
// (n = 1) it is one statement for every blob GET, prepared once, and
// there are as many more as older storages, a handful.
func locateBlobQuery(n int) string {
	return `
SELECT b.size, bs.storage FROM repositories r
JOIN repository_blobs rb ON rb.repository_id = r.id
JOIN blobs b ON b.digest = rb.digest
JOIN blob_storages bs ON bs.digest = rb.digest
WHERE r.name = ? AND rb.digest = ? AND bs.storage IN (` + placeholders(n) + `)
ORDER BY ` + preference(n) + ` LIMIT 1`
}

// preference orders rows by bs.storage's place among n storages bound in
// order: CASE bs.storage WHEN ? THEN 0 WHEN ? THEN 1 … END.
func preference(n int) string {
	var b strings.Builder
	b.WriteString("CASE bs.storage")
	for i := range n {
		fmt.Fprintf(&b, " WHEN ? THEN %d", i)
	}
	b.WriteString(" END")
	return b.String()
}

// MountBlob links dgst into repo from a repository that holds it in one of
// in: from, or, when from is "", any repository. It reports whether a
// source held the blob. The lookup and the link are one transaction, so a
// blob cannot vanish between them. The blob stays where its bytes are: a
// mount copies nothing.
func (s *Store) MountBlob(ctx context.Context, in Storages, repo, from string, dgst digest.Digest) (bool, error) {
	if err := in.check(); err != nil {
		return false, err
	}
	mounted := false
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		if err := s.quotaFirst(ctx, tx, repo); err != nil {
			return err
		}
		// The blob's row before its links, as the collector takes them: a
		// blob it is taking is not there to mount.
		if err := s.touchBlob(ctx, tx, dgst); errors.Is(err, errdefs.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `
SELECT 1 FROM repository_blobs rb
JOIN repositories r ON r.id = rb.repository_id
WHERE rb.digest = ? AND EXISTS (SELECT 1 FROM blob_storages bs WHERE bs.digest = rb.digest AND bs.storage IN (`+placeholders(in.count())+`))
AND (? = '' OR r.name = ?) LIMIT 1`+s.keepRowsOf("rb"), append(append([]any{string(dgst)}, in.args()...), from, from)...).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find %s to mount: %w", dgst, err)
		}
		mounted = true
		return s.linkRepository(ctx, tx, repo, dgst)
	})
	return mounted, err
}

// LinkBlob records that repo holds blob dgst of size, whose bytes are in
// storage, creating the repository when needed. Linking again is a no-op.
// It is for records made without writing bytes; an upload claims its blob
// first and records it with LinkClaimed.
func (s *Store) LinkBlob(ctx context.Context, storage, repo string, dgst digest.Digest, size int64) error {
	return s.LinkClaimed(ctx, storage, repo, Unclaimed(dgst, size))
}

// LinkClaimed records that repo holds the blob c claimed, whose bytes were
// written to storage, creating the repository when needed. A claim the
// collector took meanwhile is a *BlobCollectedError, and nothing is
// recorded.
func (s *Store) LinkClaimed(ctx context.Context, storage, repo string, c BlobClaim) error {
	if err := Only(storage).check(); err != nil {
		return err
	}
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		if err := s.quotaFirst(ctx, tx, repo); err != nil {
			return err
		}
		return s.linkBlob(ctx, tx, storage, repo, c)
	})
}

// linkBlob records the blob in storage and links it into repo. A blob
// recorded in other storages stays counted there too: each holds a copy
// (nothing is deleted on a storage switch).
func (s *Store) linkBlob(ctx context.Context, tx *sql.Tx, storage, repo string, c BlobClaim) error {
	// blobs.storage keeps the storage a blob was first recorded in; where
	// its bytes are now is blob_storages, a row per storage that holds
	// them, so a commit in one storage never takes the blob away from
	// another (a session that began before a switch commits in its own).
	if err := s.touchClaimed(ctx, tx, storage, c); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO blob_storages (digest, storage) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		string(c.Digest), storage); err != nil {
		return fmt.Errorf("record blob %s in %s: %w", c.Digest, storage, err)
	}
	return s.linkRepository(ctx, tx, repo, c.Digest)
}

// linkRepository links the recorded blob dgst into repo, creating the
// repository when needed. The caller touched the blob's row first
// (touchBlob, touchClaimed): the collector leaves it alone from then on,
// and row locks are taken in the collector's order, the blob's before its
// links'.
func (s *Store) linkRepository(ctx context.Context, tx *sql.Tx, repo string, dgst digest.Digest) error {
	repoID, err := s.ensureRepository(ctx, tx, repo)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		repoID, string(dgst), s.micros())
	if err != nil {
		return fmt.Errorf("link blob %s to %s: %w", dgst, repo, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		if err := s.checkStorageQuota(ctx, tx, repo, dgst, false); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, EventBlobLinked, repo, dgst, "")
	}
	return nil
}

// CommitUpload links the blob an upload produced, claimed by c, in the
// storage the session recorded, and ends the session, in one transaction.
// A session that ended meanwhile (cancelled, expired, its project deleted)
// is errdefs.ErrNotFound, and nothing is linked: the repository must not
// come back after its project went. So is a claim the collector took
// (*BlobCollectedError).
func (s *Store) CommitUpload(ctx context.Context, uploadID, repo string, c BlobClaim) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		if err := s.quotaFirst(ctx, tx, repo); err != nil {
			return err
		}
		var storage string
		err := tx.QueryRowContext(ctx, `DELETE FROM uploads WHERE id = ? AND repository = ? RETURNING storage`, uploadID, repo).Scan(&storage)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("upload %s ended before its commit: %w", uploadID, errdefs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("end upload %s: %w", uploadID, err)
		}
		return s.linkBlob(ctx, tx, storage, repo, c)
	})
}

// UnlinkBlob removes blob dgst from repo, whatever storage it is in: a
// blob deleted while another storage is in effect must not come back when
// its own storage does. The bytes stay until garbage collection finds no
// repository holding them.
func (s *Store) UnlinkBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
DELETE FROM repository_blobs WHERE digest = ?
AND repository_id = (SELECT id FROM repositories WHERE name = ?)`, string(dgst), repo)
		if err != nil {
			return fmt.Errorf("unlink blob %s from %s: %w", dgst, repo, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("blob %s in %s: %w", dgst, repo, errdefs.ErrNotFound)
		}
		return s.appendEvent(ctx, tx, EventBlobUnlinked, repo, dgst, "")
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

// CreateUpload records a new upload session of u.Owner, whose bytes go to
// u.Storage, unless that user or the repository's project already has as
// many open as limits allow.
func (s *Store) CreateUpload(ctx context.Context, u Upload, limits UploadLimits) error {
	if err := Only(u.Storage).check(); err != nil {
		return fmt.Errorf("create upload %s: %w", u.ID, err)
	}
	project := projectOf(u.Repository)
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		// A full project takes no more bytes: refused before they are
		// sent, not once they are written.
		if err := s.checkProjectFull(ctx, tx, project); err != nil {
			return err
		}
		for _, c := range []struct {
			scope, column, name string
			limit               int
		}{{"user", "owner", u.Owner, limits.PerUser}, {"project", "project", project, limits.PerProject}} {
			if c.limit <= 0 {
				continue
			}
			// Sessions opened at once by one user (or in one project)
			// count one after the other: the cap holds.
			if s.dialect.advisoryLock != "" {
				if _, err := tx.ExecContext(ctx, s.dialect.advisoryLock, "uploads:"+c.scope+":"+c.name); err != nil {
					return fmt.Errorf("count upload sessions of %s %s: %w", c.scope, c.name, err)
				}
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
			`INSERT INTO uploads (id, repository, owner, project, storage, size, hash_state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, u.Repository, u.Owner, project, u.Storage, u.Size, u.HashState, now, now); err != nil {
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
		`SELECT repository, owner, storage, size, hash_state, epoch, driver_state, created_at, updated_at FROM uploads WHERE id = ?`, id).
		Scan(&u.Repository, &u.Owner, &u.Storage, &u.Size, &u.HashState, &u.Epoch, &u.DriverState, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && u.Repository != repo) {
		return Upload{}, fmt.Errorf("upload %s in %s: %w", id, repo, errdefs.ErrNotFound)
	}
	if err != nil {
		return Upload{}, fmt.Errorf("read upload %s: %w", id, err)
	}
	u.Created, u.Updated = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	return u, nil
}

// DeleteUpload ends session id.
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
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

// EndedUpload is an upload session that ended without a commit: its bytes
// in Storage are the caller's to discard.
type EndedUpload struct {
	ID, Storage string
	// DriverState is what the driver kept about it (storage.Upload.State).
	DriverState []byte
}

// ExpireUploads deletes sessions untouched since before and returns them.
func (s *Store) ExpireUploads(ctx context.Context, before time.Time) ([]EndedUpload, error) {
	var ended []EndedUpload
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM uploads WHERE updated_at < ? RETURNING id, storage, driver_state`, before.UnixMicro())
		if err != nil {
			return fmt.Errorf("expire uploads: %w", err)
		}
		if ended, err = scanEndedUploads(rows); err != nil {
			return fmt.Errorf("expire uploads: %w", err)
		}
		return nil
	})
	return ended, err
}

// scanEndedUploads reads rows of (id, storage, driver_state) and closes
// them.
func scanEndedUploads(rows *sql.Rows) ([]EndedUpload, error) {
	defer rows.Close()
	var ended []EndedUpload
	for rows.Next() {
		var u EndedUpload
		if err := rows.Scan(&u.ID, &u.Storage, &u.DriverState); err != nil {
			return nil, err
		}
		ended = append(ended, u)
	}
	return ended, rows.Err()
}

// ForgetStorage records that storage's bytes are gone (the registry was
// Removed and the storage with it): no blob counts as present there any
// more, and its upload sessions end. It returns how many blobs it held.
func (s *Store) ForgetStorage(ctx context.Context, storage string) (int64, error) {
	if err := Only(storage).check(); err != nil {
		return 0, err
	}
	var n int64
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM blob_storages WHERE storage = ?`, storage)
		if err != nil {
			return fmt.Errorf("forget the blobs of %s: %w", storage, err)
		}
		n, _ = res.RowsAffected()
		if _, err := tx.ExecContext(ctx, `DELETE FROM uploads WHERE storage = ?`, storage); err != nil {
			return fmt.Errorf("end the upload sessions of %s: %w", storage, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM storages WHERE id = ?`, storage); err != nil {
			return fmt.Errorf("forget storage %s: %w", storage, err)
		}
		// Cached sizes of blobs in this storage must not outlive it.
		s.effectsOf(tx).removals = true
		return nil
	})
	return n, err
}
