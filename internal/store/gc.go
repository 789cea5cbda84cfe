package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Online garbage collection: what the store decides (internal/gc runs
// it, and deletes bytes). docs/GC.md has the whole argument; in short:
//
//   - A manifest row is kept while a repository links it, a tag's history
//     names it, a stored manifest (an index) references it, or it was
//     touched (pushed, linked) within the grace period.
//   - A blob row is kept while a stored manifest references it, or it was
//     touched within the grace period: claimed by an upload about to write
//     its bytes, or linked into a repository (a commit, a mount).
//   - Whatever may add a reference to a blob first touches its row
//     (UPDATE … WHERE deleting = 0), and the collector takes the row FOR
//     UPDATE before it decides: the two wait for each other, and the one
//     that comes second sees what the first committed (a manifest push
//     locks only the links it relies on). Taken blobs are marked deleting
//     with their collection's owner token, their links removed, in one
//     transaction; their bytes go after it, and the row last, by that
//     collection alone (another takes over a hold gone stale).
//   - Bytes are written only after a claim (ClaimBlob), and recorded only
//     if the row claimed is still the same (created_at) and not deleting:
//     bytes the collector may have removed are never recorded as present.

// BlobClaim is a blob an upload is about to write. Its row exists from the
// claim on (created with it if new), touched, so the collector leaves it
// alone for the grace period; recording the bytes later (LinkClaimed,
// CommitUpload) checks that the collector did not take the row meanwhile.
type BlobClaim struct {
	Digest digest.Digest
	Size   int64
	// created identifies the row claimed: a row collected and created
	// again by another claim has another.
	created int64
}

// Unclaimed is a claim for a record made without writing bytes (a test,
// a copy of records): recording it creates the blob's row if needed
// instead of requiring the claimed one.
func Unclaimed(dgst digest.Digest, size int64) BlobClaim {
	return BlobClaim{Digest: dgst, Size: size}
}

// BlobCollectedError is a claimed blob whose row the collector took
// before its bytes were recorded: they may be gone, and the upload must
// be pushed again. It wraps errdefs.ErrNotFound.
type BlobCollectedError struct{ Digest digest.Digest }

func (e *BlobCollectedError) Error() string {
	return fmt.Sprintf("blob %s was garbage-collected while it was being written; push it again", e.Digest)
}

func (e *BlobCollectedError) Unwrap() error { return errdefs.ErrNotFound }

// claimPoll and claimWait pace a claim that finds its blob being
// collected: the collector deletes its bytes (each storage's delete
// bounded) and then the row, after which the claim creates it afresh.
const (
	claimPoll = 50 * time.Millisecond
	claimWait = 15 * time.Second
)

// ClaimBlob claims dgst, of size, for an upload about to write its bytes
// into storage (see BlobClaim). A blob the collector is deleting is waited for; one
// still being deleted after a while is errdefs.ErrUnavailable (the client
// retries).
func (s *Store) ClaimBlob(ctx context.Context, storage string, dgst digest.Digest, size int64) (BlobClaim, error) {
	if err := Only(storage).check(); err != nil {
		return BlobClaim{}, err
	}
	deadline := time.Now().Add(claimWait)
	for {
		c, taken, err := s.claimBlob(ctx, storage, dgst, size)
		if err != nil || !taken {
			return c, err
		}
		if time.Now().After(deadline) {
			return BlobClaim{}, fmt.Errorf("blob %s is being garbage-collected; retry: %w", dgst, errdefs.ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return BlobClaim{}, ctx.Err()
		case <-time.After(claimPoll):
		}
	}
}

// claimBlob creates or touches the row of dgst; taken says the collector
// holds it.
func (s *Store) claimBlob(ctx context.Context, storage string, dgst digest.Digest, size int64) (c BlobClaim, taken bool, err error) {
	c = BlobClaim{Digest: dgst, Size: size}
	err = s.pushTx(ctx, func(tx *sql.Tx) error {
		// A claim need not be durable on its own: the record of the
		// bytes (LinkClaimed, CommitUpload) is, and the log makes the
		// claim durable before it. A claim lost in a crash only fails
		// that record, which finds no row it claimed.
		if s.dialect.lazyCommit != "" {
			if _, err := tx.ExecContext(ctx, s.dialect.lazyCommit); err != nil {
				return fmt.Errorf("claim blob %s: %w", dgst, err)
			}
		}
		now := s.micros()
		// Waits for a collector that holds the row; then either creates
		// it, or touches it unless it is being deleted.
		err := tx.QueryRowContext(ctx, `
INSERT INTO blobs (digest, size, storage, created_at, touched_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at WHERE blobs.deleting = 0
RETURNING created_at`, string(dgst), size, storage, now, now).Scan(&c.created)
		if errors.Is(err, sql.ErrNoRows) {
			taken = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim blob %s: %w", dgst, err)
		}
		return nil
	})
	return c, taken, err
}

// touchClaimed touches the row c claimed, which must not have been
// collected since (see BlobClaim); an Unclaimed c creates the row if
// needed.
func (s *Store) touchClaimed(ctx context.Context, tx *sql.Tx, storage string, c BlobClaim) error {
	now := s.micros()
	if c.created == 0 {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO blobs (digest, size, storage, created_at, touched_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING`,
			string(c.Digest), c.Size, storage, now, now); err != nil {
			return fmt.Errorf("record blob %s: %w", c.Digest, err)
		}
		return s.touchBlob(ctx, tx, c.Digest)
	}
	res, err := tx.ExecContext(ctx, `UPDATE blobs SET touched_at = ? WHERE digest = ? AND created_at = ? AND deleting = 0`,
		now, string(c.Digest), c.created)
	if err != nil {
		return fmt.Errorf("record blob %s: %w", c.Digest, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &BlobCollectedError{Digest: c.Digest}
	}
	return nil
}

// touchBlob touches the row of dgst before something new relies on it (a
// link); a blob without a row, or one the collector is deleting, is
// errdefs.ErrNotFound.
func (s *Store) touchBlob(ctx context.Context, tx *sql.Tx, dgst digest.Digest) error {
	res, err := tx.ExecContext(ctx, `UPDATE blobs SET touched_at = ? WHERE digest = ? AND deleting = 0`, s.micros(), string(dgst))
	if err != nil {
		return fmt.Errorf("touch blob %s: %w", dgst, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return nil
}

// GCCandidate is something the collector may delete: a manifest with no
// link, history or parent, or a blob no stored manifest references, each
// untouched for the grace period.
type GCCandidate struct {
	Digest digest.Digest
	// Size is the manifest's, or the blob's bytes.
	Size int64
	// Touched is when it was last pushed, linked or claimed.
	Touched time.Time
	// Linked counts the repositories that link a candidate blob (an
	// upload never referenced by a manifest, a layer of deleted images);
	// collecting it unlinks them.
	Linked int
	// Deleting says a collection took it already and has not finished
	// deleting its bytes for a while (it died, or could not): it is
	// finished.
	Deleting bool
}

// GCManifestCandidates lists up to n manifests after after (by digest)
// that no repository links, no tag history names and no stored manifest
// references, untouched since before.
func (s *Store) GCManifestCandidates(ctx context.Context, before time.Time, after digest.Digest, n int) ([]GCCandidate, error) {
	rows, err := s.read.QueryContext(ctx, `
SELECT m.digest, m.size, m.touched_at, 0, 0 FROM manifests m
WHERE m.digest > ? AND m.touched_at < ?`+manifestUnreferenced+`
ORDER BY m.digest LIMIT ?`, string(after), before.UnixMicro(), n)
	if err != nil {
		return nil, fmt.Errorf("find unreferenced manifests: %w", err)
	}
	return scanCandidates(rows)
}

// manifestUnreferenced is what keeps a manifest m, as conditions.
const manifestUnreferenced = `
AND NOT EXISTS (SELECT 1 FROM repository_manifests rm WHERE rm.digest = m.digest)
AND NOT EXISTS (SELECT 1 FROM tag_events te WHERE te.digest = m.digest)
AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.reference = m.digest)`

// GCBlobCandidates lists up to n blobs after after (by digest) that no
// stored manifest references, untouched since before; and, whatever their
// age, blobs a collection took and has held since before staleSince (it
// died, or could not delete their bytes), to be finished.
func (s *Store) GCBlobCandidates(ctx context.Context, before, staleSince time.Time, after digest.Digest, n int) ([]GCCandidate, error) {
	rows, err := s.read.QueryContext(ctx, `
SELECT b.digest, b.size, b.touched_at,
	(SELECT COUNT(*) FROM repository_blobs rb WHERE rb.digest = b.digest), b.deleting FROM blobs b
WHERE b.digest > ? AND ((b.deleting <> 0 AND b.deleting_since < ?) OR (b.deleting = 0 AND b.touched_at < ?`+blobUnreferenced+`))
ORDER BY b.digest LIMIT ?`, string(after), staleSince.UnixMicro(), before.UnixMicro(), n)
	if err != nil {
		return nil, fmt.Errorf("find unreferenced blobs: %w", err)
	}
	return scanCandidates(rows)
}

// blobUnreferenced is what keeps a blob b, as conditions: a reference
// from a stored manifest (its references go with it, by cascade).
const blobUnreferenced = `
AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.reference = b.digest)`

func scanCandidates(rows *sql.Rows) ([]GCCandidate, error) {
	defer rows.Close()
	var out []GCCandidate
	for rows.Next() {
		var c GCCandidate
		var d string
		var touched, deleting int64
		if err := rows.Scan(&d, &c.Size, &touched, &c.Linked, &deleting); err != nil {
			return nil, fmt.Errorf("read candidates: %w", err)
		}
		c.Digest, c.Touched, c.Deleting = digest.Digest(d), time.UnixMicro(touched).UTC(), deleting != 0
		out = append(out, c)
	}
	return out, rows.Err()
}

// GCPending counts what is unreferenced but still within the grace period
// (touched since before): the collector's queue of what may go next.
func (s *Store) GCPending(ctx context.Context, before time.Time) (manifests, blobs int64, err error) {
	cutoff := before.UnixMicro()
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM manifests m WHERE m.touched_at >= ?`+manifestUnreferenced, cutoff).Scan(&manifests); err != nil {
		return 0, 0, fmt.Errorf("count unreferenced manifests: %w", err)
	}
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM blobs b WHERE b.deleting = 0 AND b.touched_at >= ?`+blobUnreferenced, cutoff).Scan(&blobs); err != nil {
		return 0, 0, fmt.Errorf("count unreferenced blobs: %w", err)
	}
	return manifests, blobs, nil
}

// CollectManifest deletes manifest dgst if it is still a candidate
// (GCManifestCandidates) under its row's lock, and says whether it did.
// Its references go with it; what they kept may be collected next.
func (s *Store) CollectManifest(ctx context.Context, dgst digest.Digest, before time.Time) (bool, error) {
	collected := false
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		// The row's lock first: a push of the same manifest touches it
		// (recordManifest) and waits, or is waited for and seen.
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM manifests WHERE digest = ?`+s.dialect.gcLock, string(dgst)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("lock manifest %s: %w", dgst, err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM manifests AS m WHERE m.digest = ? AND m.touched_at < ?`+manifestUnreferenced,
			string(dgst), before.UnixMicro())
		if err != nil {
			return fmt.Errorf("collect manifest %s: %w", dgst, err)
		}
		n, _ := res.RowsAffected()
		collected = n > 0
		return nil
	})
	return collected, err
}

// TakenBlob is a blob a collection took: unlinked from every repository
// and marked deleting, its bytes still in Storages.
type TakenBlob struct {
	Digest digest.Digest
	Size   int64
	// Storages hold its bytes.
	Storages []string
	// Unlinked are the repositories it was taken from.
	Unlinked []string
}

// TakeBlob takes blob dgst for deletion by the collection owner (a
// random non-zero number) if it is still a candidate under its row's lock:
// it removes the blob from every repository that links it (each sees a
// BlobUnlinked event) and marks it deleting, so nothing links or claims it
// any more. A blob another collection took is taken over only when that
// one has held it since before staleSince. ok is false when the blob is no
// longer a candidate, or is another's.
func (s *Store) TakeBlob(ctx context.Context, dgst digest.Digest, before, staleSince time.Time, owner int64) (t TakenBlob, ok bool, err error) {
	if owner == 0 {
		return TakenBlob{}, false, fmt.Errorf("take blob %s: no owner: %w", dgst, errdefs.ErrInvalidArgument)
	}
	err = s.pushTx(ctx, func(tx *sql.Tx) error {
		t, ok = TakenBlob{Digest: dgst}, false
		var touched, deleting, since int64
		err := tx.QueryRowContext(ctx, `SELECT size, touched_at, deleting, deleting_since FROM blobs WHERE digest = ?`+s.dialect.gcLock,
			string(dgst)).Scan(&t.Size, &touched, &deleting, &since)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("lock blob %s: %w", dgst, err)
		}
		switch {
		case deleting == owner:
		case deleting != 0:
			if since >= staleSince.UnixMicro() {
				return nil // another collection's, and alive
			}
		case touched >= before.UnixMicro():
			return nil
		default:
			// The links first: a manifest push that relies on one holds
			// it (checkReferences) and is waited for; its references are
			// then seen below, in a statement that starts after it.
			rows, err := tx.QueryContext(ctx, `
DELETE FROM repository_blobs WHERE digest = ?
RETURNING (SELECT name FROM repositories r WHERE r.id = repository_id)`, string(dgst))
			if err != nil {
				return fmt.Errorf("unlink blob %s: %w", dgst, err)
			}
			if t.Unlinked, err = scanStrings(rows); err != nil {
				return fmt.Errorf("unlink blob %s: %w", dgst, err)
			}
			var referenced bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.reference = ?)`,
				string(dgst)).Scan(&referenced); err != nil {
				return fmt.Errorf("check the references of blob %s: %w", dgst, err)
			}
			if referenced {
				return errStillReferenced
			}
			for _, repo := range t.Unlinked {
				if err := s.appendEvent(ctx, tx, EventBlobUnlinked, repo, dgst, ""); err != nil {
					return err
				}
			}
			if len(t.Unlinked) == 0 {
				// No event says so: cached locations must go all the same.
				s.effectsOf(tx).removals = true
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE blobs SET deleting = ?, deleting_since = ? WHERE digest = ?`, owner, s.micros(), string(dgst)); err != nil {
			return fmt.Errorf("take blob %s: %w", dgst, err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT storage FROM blob_storages WHERE digest = ? ORDER BY storage`, string(dgst))
		if err != nil {
			return fmt.Errorf("storages of blob %s: %w", dgst, err)
		}
		if t.Storages, err = scanStrings(rows); err != nil {
			return fmt.Errorf("storages of blob %s: %w", dgst, err)
		}
		ok = true
		return nil
	})
	if errors.Is(err, errStillReferenced) {
		return TakenBlob{}, false, nil
	}
	return t, ok, err
}

// errStillReferenced rolls back the taking of a blob a manifest came to
// reference meanwhile.
var errStillReferenced = errors.New("still referenced")

// ForgetBlobBytes records that storage no longer holds the bytes of dgst,
// a blob the collection owner took.
func (s *Store) ForgetBlobBytes(ctx context.Context, dgst digest.Digest, storage string, owner int64) error {
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
DELETE FROM blob_storages WHERE digest = ? AND storage = ?
AND EXISTS (SELECT 1 FROM blobs WHERE digest = ? AND deleting = ?)`, string(dgst), storage, string(dgst), owner); err != nil {
			return fmt.Errorf("forget blob %s in %s: %w", dgst, storage, err)
		}
		return nil
	})
}

// FinishBlob deletes the row of dgst, a blob the collection owner took,
// once no storage holds its bytes, and says whether it did. Otherwise,
// with release, the blob is let go (no longer deleting, still unlinked):
// claims may use it again, and a later collection takes it again; without,
// it stays taken, for a collection to finish once its hold is stale (a
// deletion whose outcome is unknown must not race a new upload's bytes).
func (s *Store) FinishBlob(ctx context.Context, dgst digest.Digest, owner int64, release bool) (bool, error) {
	deleted := false
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
DELETE FROM blobs WHERE digest = ? AND deleting = ?
AND NOT EXISTS (SELECT 1 FROM blob_storages bs WHERE bs.digest = ?)`, string(dgst), owner, string(dgst))
		if err != nil {
			return fmt.Errorf("delete blob %s: %w", dgst, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			deleted = true
			return nil
		}
		if !release {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE blobs SET deleting = 0, deleting_since = 0 WHERE digest = ? AND deleting = ?`, string(dgst), owner); err != nil {
			return fmt.Errorf("let go of blob %s: %w", dgst, err)
		}
		return nil
	})
	return deleted, err
}

// GCCascade says what collecting the manifests in gone would leave
// unreferenced, and so collected in the same run (a dry run's forecast):
// references of theirs, untouched since before, that only manifests in
// gone reference, and (for manifests) that no repository links and no
// tag history names; then theirs in turn. gone gains the manifests found.
func (s *Store) GCCascade(ctx context.Context, gone map[digest.Digest]bool, before time.Time) (manifests, blobs []GCCandidate, err error) {
	queue := make([]digest.Digest, 0, len(gone))
	for d := range gone {
		queue = append(queue, d)
	}
	seen := map[digest.Digest]bool{}
	parentsOf := map[digest.Digest][]string{}
	cutoff := before.UnixMicro()
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		rows, err := s.read.QueryContext(ctx, `SELECT reference, is_manifest FROM manifest_references WHERE manifest_digest = ?`, string(m))
		if err != nil {
			return nil, nil, fmt.Errorf("references of %s: %w", m, err)
		}
		refs, err := scanDigestRefs(rows)
		if err != nil {
			return nil, nil, fmt.Errorf("references of %s: %w", m, err)
		}
		for _, r := range refs {
			if seen[r.digest] || gone[r.digest] {
				continue
			}
			// Asked once per reference: a base layer many manifests
			// share is met again with each of them.
			parents, ok := parentsOf[r.digest]
			if !ok {
				rows, err := s.read.QueryContext(ctx, `SELECT manifest_digest FROM manifest_references WHERE reference = ?`, string(r.digest))
				if err != nil {
					return nil, nil, fmt.Errorf("manifests referencing %s: %w", r.digest, err)
				}
				if parents, err = scanStrings(rows); err != nil {
					return nil, nil, fmt.Errorf("manifests referencing %s: %w", r.digest, err)
				}
				parentsOf[r.digest] = parents
			}
			if !slices.ContainsFunc(parents, func(p string) bool { return !gone[digest.Digest(p)] }) {
				seen[r.digest] = true
				var found []GCCandidate
				var rows *sql.Rows
				var err error
				if r.manifest {
					rows, err = s.read.QueryContext(ctx, `SELECT m.digest, m.size, m.touched_at, 0, 0 FROM manifests m
WHERE m.digest = ? AND m.touched_at < ?
AND NOT EXISTS (SELECT 1 FROM repository_manifests rm WHERE rm.digest = m.digest)
AND NOT EXISTS (SELECT 1 FROM tag_events te WHERE te.digest = m.digest)`, string(r.digest), cutoff)
				} else {
					rows, err = s.read.QueryContext(ctx, `SELECT b.digest, b.size, b.touched_at,
	(SELECT COUNT(*) FROM repository_blobs rb WHERE rb.digest = b.digest), 0 FROM blobs b
WHERE b.digest = ? AND b.deleting = 0 AND b.touched_at < ?`, string(r.digest), cutoff)
				}
				if err != nil {
					return nil, nil, fmt.Errorf("look at %s: %w", r.digest, err)
				}
				if found, err = scanCandidates(rows); err != nil {
					return nil, nil, err
				}
				if len(found) == 1 && r.manifest {
					manifests = append(manifests, found[0])
					gone[r.digest] = true
					queue = append(queue, r.digest)
				} else if len(found) == 1 {
					blobs = append(blobs, found[0])
				}
			}
		}
	}
	return manifests, blobs, nil
}

// digestRef is a digest, and whether it names a manifest (else a blob).
type digestRef struct {
	digest   digest.Digest
	manifest bool
}

// scanDigestRefs reads rows of (digest, is-manifest) and closes them.
func scanDigestRefs(rows *sql.Rows) ([]digestRef, error) {
	defer rows.Close()
	var out []digestRef
	for rows.Next() {
		var d string
		var manifest int64
		if err := rows.Scan(&d, &manifest); err != nil {
			return nil, err
		}
		out = append(out, digestRef{digest.Digest(d), manifest != 0})
	}
	return out, rows.Err()
}
