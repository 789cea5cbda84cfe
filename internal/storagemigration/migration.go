// Package storagemigration moves blobs out of the storages a registry was
// switched away from into the storage in effect, so that the older ones
// need not be read any more (berth adm migrate-storage).
//
// Each blob is read from its older storage, hashed as it is written into
// the storage in effect, committed there only when its digest and size
// match, and then its record moves to the new storage in one step of the
// store: at every moment the blob is present in one of them, so pulls go
// on while it runs. The old bytes are deleted last. A run interrupted at
// any point is resumed by running again: what moved is no longer recorded
// in the older storage, and what was written but not recorded is an
// upload no session records, which the driver's recovery removes.
package storagemigration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// Records is what a migration needs of the metadata store.
type Records interface {
	StorageBlobs(ctx context.Context, storage string, after digest.Digest, limit int) ([]store.StoredBlob, error)
	BlobIn(ctx context.Context, storage string, dgst digest.Digest) (bool, error)
	MoveBlob(ctx context.Context, dgst digest.Digest, from, to string) error
	// ClaimBlob keeps the garbage collector away from a blob whose bytes
	// are about to be written.
	ClaimBlob(ctx context.Context, storage string, dgst digest.Digest, size int64) (store.BlobClaim, error)
}

// Source is an older storage to empty.
type Source struct {
	settings.Storage
	// Name says what it is to a person ("S3 bucket b at http://…").
	Name string
	// Blobs and Bytes are what the store records it holds.
	Blobs, Bytes int64
}

// Progress is where a run is, after each blob.
type Progress struct {
	// Storage is the Name of the storage being emptied.
	Storage string `json:"storage"`
	// Blobs and Bytes are those handled so far (moved, or found to move in
	// a dry run, or failed), of TotalBlobs and TotalBytes.
	Blobs      int64 `json:"blobs"`
	Bytes      int64 `json:"bytes"`
	TotalBlobs int64 `json:"totalBlobs"`
	TotalBytes int64 `json:"totalBytes"`
}

// Failure is a blob left where it was, and why.
type Failure struct {
	Storage string        `json:"storage"`
	Digest  digest.Digest `json:"digest"`
	Error   string        `json:"error"`
}

// StorageReport is what a run did to one older storage.
type StorageReport struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Blobs and Bytes are what it held when the run began.
	Blobs int64 `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Copied were copied into the storage in effect; Deduplicated were
	// there already (pushed again after the switch): only their record
	// and old bytes went.
	Copied       int64 `json:"copied"`
	CopiedBytes  int64 `json:"copiedBytes"`
	Deduplicated int64 `json:"deduplicated"`
	// Emptied says the storage holds no blob any more: it is no longer
	// read, nor listed as pending.
	Emptied bool `json:"emptied"`
	// SamePlace says the storage keeps its bytes where the storage in
	// effect does (two configurations naming one bucket, a volume linked
	// to another): its blobs' records moved, and nothing was copied or
	// deleted.
	SamePlace bool `json:"samePlace,omitempty"`
	// KeptOldBytes says why its bytes were not deleted after their copy
	// ("" when they were): whether it is the same place as the storage in
	// effect could not be told, and deleting them then could delete the
	// only copy.
	KeptOldBytes string `json:"keptOldBytes,omitempty"`
	// Unreadable is why the storage could not be read ("" when it could).
	Unreadable string `json:"unreadable,omitempty"`
}

// Report is what a run did, or in a dry run would do.
type Report struct {
	DryRun   bool            `json:"dryRun"`
	To       string          `json:"to"`
	Storages []StorageReport `json:"storages"`
	// Failures are the first maxFailures blobs left behind;
	// MoreFailures counts the others (a storage where every blob fails
	// must not make a report of millions of lines).
	Failures     []Failure `json:"failures,omitempty"`
	MoreFailures int64     `json:"moreFailures,omitempty"`
}

// pageSize is how many blob records a run reads at once.
const pageSize = 200

// maxFailures is how many failures a report lists.
const maxFailures = 100

// Migrator runs migrations.
type Migrator struct {
	Records Records
	Log     *slog.Logger
	// InEffect, when set, names the storage in effect now: a run stops
	// when it is no longer the one the run moves blobs into.
	InEffect func() string
}

// errChanged: the storage in effect changed during a run.
var errChanged = errors.New("the storage in effect changed during the migration")

func (rep *Report) fail(f Failure) {
	if len(rep.Failures) < maxFailures {
		rep.Failures = append(rep.Failures, f)
		return
	}
	rep.MoreFailures++
}

// Run moves every blob of from into to, or, with dryRun, counts what it
// would move. progress, when set, is called after each blob. A blob that
// cannot be moved (unreadable, its bytes not matching its digest) is left
// where it was and reported; the run goes on with the next. A failure of
// the store, the storage in effect removed or switched (InEffect), or ctx
// ending ends a run early.
func (m *Migrator) Run(ctx context.Context, to settings.Storage, from []Source, dryRun bool, progress func(Progress)) (Report, error) {
	rep := Report{DryRun: dryRun, To: to.ID}
	p := Progress{}
	for _, src := range from {
		p.TotalBlobs += src.Blobs
		p.TotalBytes += src.Bytes
	}
	if to.Driver == nil {
		return rep, fmt.Errorf("no storage in effect to migrate to: %w", errdefs.ErrUnavailable)
	}
	for _, src := range from {
		if src.ID == to.ID {
			continue
		}
		sr, err := m.empty(ctx, to, src, dryRun, &rep, &p, progress)
		rep.Storages = append(rep.Storages, sr)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// empty moves every blob of src into to (or counts them, with dryRun).
func (m *Migrator) empty(ctx context.Context, to settings.Storage, src Source, dryRun bool, rep *Report, p *Progress, progress func(Progress)) (StorageReport, error) {
	sr := StorageReport{ID: src.ID, Name: src.Name, Blobs: src.Blobs, Bytes: src.Bytes}
	p.Storage = src.Name
	if src.Driver == nil {
		sr.Unreadable = "the storage could not be opened (see the registry's Degraded condition)"
		p.Blobs += src.Blobs
		p.Bytes += src.Bytes
		if progress != nil {
			progress(*p)
		}
		return sr, nil
	}
	keepOld := false
	if !dryRun {
		same, err := m.samePlace(ctx, to, src.Driver)
		switch {
		case ctx.Err() != nil:
			return sr, ctx.Err()
		case err != nil:
			keepOld = true
			sr.KeptOldBytes = "whether it is the same place as the storage in effect could not be told: " + err.Error()
			m.Log.WarnContext(ctx, "blobs are copied out of an older storage but their old bytes kept", "storage", src.ID, "err", err)
		case same:
			keepOld, sr.SamePlace = true, true
			m.Log.InfoContext(ctx, "an older storage keeps its bytes where the storage in effect does: only records move", "storage", src.ID, "inEffect", to.ID)
		}
	}
	var after digest.Digest
	for {
		page, err := m.Records.StorageBlobs(ctx, src.ID, after, pageSize)
		if err != nil {
			return sr, err
		}
		for _, b := range page {
			after = b.Digest
			if err := ctx.Err(); err != nil {
				return sr, err
			}
			if m.InEffect != nil && m.InEffect() != to.ID {
				return sr, fmt.Errorf("%w: run it again to move blobs into the storage in effect now: %w", errChanged, errdefs.ErrConflict)
			}
			if !dryRun {
				if err := m.move(ctx, to, src, b, keepOld, &sr); err != nil {
					if ctx.Err() != nil {
						return sr, ctx.Err()
					}
					if errors.Is(err, errFatal) {
						return sr, err
					}
					m.Log.WarnContext(ctx, "blob left in its older storage", "digest", b.Digest, "storage", src.ID, "err", err)
					rep.fail(Failure{Storage: src.Name, Digest: b.Digest, Error: err.Error()})
				}
			}
			p.Blobs++
			p.Bytes += b.Size
			if progress != nil {
				progress(*p)
			}
		}
		if len(page) < pageSize {
			break
		}
	}
	if !dryRun {
		left, err := m.Records.StorageBlobs(ctx, src.ID, "", 1)
		if err != nil {
			return sr, err
		}
		sr.Emptied = len(left) == 0
		if sr.Emptied {
			m.Log.InfoContext(ctx, "older storage emptied", "storage", src.ID)
		}
	}
	return sr, nil
}

// errDigest: the bytes read are not the blob's.
var errDigest = errors.New("digest mismatch")

// errFatal marks a failure that ends the run, since every blob after
// would fail the same way (the metadata store, the storage in effect
// removed).
var errFatal = errors.New("the migration cannot go on")

// move moves blob b from src into to; keepOld keeps its bytes in src (the
// same place as to's, or perhaps so).
//
// The commit into to and the record of it happen inside to's write gate,
// as every commit does (the copy before it does not) (a storage being removed does not gain records of
// bytes it no longer holds). The record's move and the deletion of the
// old bytes happen with src's gate to themselves: a request that began
// before the switch and commits into src now waits, so that it cannot
// record bytes there between the move and the deletion (its record would
// name bytes deleted; the next migration back would delete the last
// copy).
func (m *Migrator) move(ctx context.Context, to settings.Storage, src Source, b store.StoredBlob, keepOld bool, sr *StorageReport) error {
	recorded, err := m.Records.BlobIn(ctx, to.ID, b.Digest)
	if err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	// Recorded there: the bytes must really be there before the only
	// other copy goes (in the same place, they are the same bytes).
	there := sr.SamePlace || (recorded && present(ctx, to.Driver, b))
	var staged *storage.Upload
	if !there {
		// Copied and checked outside the gate: a removal of the storage
		// in effect waits for commits, not for copies.
		if staged, err = m.stage(ctx, to, src.Driver, b); err != nil {
			return err
		}
	}
	leave, ok := to.Writes.Enter()
	if !ok {
		if staged != nil {
			_ = to.Driver.Abort(context.WithoutCancel(ctx), *staged)
		}
		return fmt.Errorf("%w: the storage in effect was removed: %w", errFatal, errdefs.ErrUnavailable)
	}
	defer leave()
	// From the commit on, the record and the deletion finish even if the
	// client goes away.
	ctx = context.WithoutCancel(ctx)
	if staged != nil {
		if _, err := m.Records.ClaimBlob(ctx, to.ID, b.Digest, b.Size); err != nil {
			_ = to.Driver.Abort(ctx, *staged)
			return fmt.Errorf("claim the blob in the storage in effect: %w", err)
		}
		if err := to.Driver.Commit(ctx, *staged, b.Digest, b.Size); err != nil {
			_ = to.Driver.Abort(ctx, *staged)
			return fmt.Errorf("commit into the storage in effect: %w", err)
		}
	}
	moved := true
	err = src.Writes.Alone(func() error {
		switch err := m.Records.MoveBlob(ctx, b.Digest, src.ID, to.ID); {
		case errors.Is(err, errdefs.ErrNotFound):
			moved = false // moved meanwhile (another run): nothing of ours to delete
			return nil
		case err != nil:
			return fmt.Errorf("%w: %w", errFatal, err)
		}
		if keepOld {
			return nil
		}
		// The blob is now the new storage's alone; its old bytes are
		// garbage. Failing to delete them leaves garbage in a storage no
		// longer read, not a broken blob.
		if err := src.Driver.Delete(ctx, b.Digest); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			m.Log.WarnContext(ctx, "old bytes of a migrated blob left behind", "digest", b.Digest, "storage", src.ID, "err", err)
		}
		return nil
	})
	if err != nil || !moved {
		return err
	}
	if there {
		sr.Deduplicated++
	} else {
		sr.Copied++
		sr.CopiedBytes += b.Size
	}
	return nil
}

// present tells whether d holds the bytes of b (a first byte can be read).
func present(ctx context.Context, d storage.Driver, b store.StoredBlob) bool {
	length := int64(1)
	if b.Size == 0 {
		length = -1
	}
	r, err := d.Open(ctx, b.Digest, 0, length)
	if err != nil {
		return false
	}
	r.Close()
	return true
}

// samePlace tells whether from keeps its bytes where to does: two
// storage IDs can name one place (an endpoint spelt two ways, a volume
// linked to another), and deleting a blob's old bytes there would delete
// its only copy. A probe blob of random bytes is committed through to and
// looked for through from, then deleted. An error says it could not be
// told.
func (m *Migrator) samePlace(ctx context.Context, to settings.Storage, from storage.Driver) (bool, error) {
	probe := make([]byte, 64)
	_, _ = rand.Read(probe)
	probe = append([]byte("berth storage migration probe\n"), probe...)
	dgst := digest.FromBytes(probe)
	up := storage.Upload{ID: newUploadID()}
	n, state, err := to.Driver.Append(ctx, up, 0, bytes.NewReader(probe))
	up.State = state
	if err == nil && n != int64(len(probe)) {
		err = fmt.Errorf("the storage in effect kept %d of %d bytes", n, len(probe))
	}
	if err == nil {
		leave, ok := to.Writes.Enter()
		if !ok {
			err = fmt.Errorf("the storage in effect was removed: %w", errdefs.ErrUnavailable)
		} else {
			err = to.Driver.Commit(ctx, up, dgst, int64(len(probe)))
			leave()
		}
	}
	if err != nil {
		_ = to.Driver.Abort(context.WithoutCancel(ctx), up)
		return false, fmt.Errorf("write a probe into the storage in effect: %w", err)
	}
	defer func() {
		if err := to.Driver.Delete(context.WithoutCancel(ctx), dgst); err != nil {
			m.Log.WarnContext(ctx, "the storage migration's probe blob is left in the storage in effect", "digest", dgst, "err", err)
		}
	}()
	r, err := from.Open(ctx, dgst, 0, -1)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for the probe in the older storage: %w", err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.LimitReader(r, int64(len(probe))+1))
	if err != nil {
		return false, fmt.Errorf("read the probe in the older storage: %w", err)
	}
	if !bytes.Equal(got, probe) {
		return false, fmt.Errorf("the older storage holds other bytes under the probe's digest %s", dgst)
	}
	return true, nil
}

// stage writes blob b, read from from, into an upload of to, and returns
// it if what was read is b: its size and its digest (the caller commits
// it, or aborts it).
func (m *Migrator) stage(ctx context.Context, to settings.Storage, from storage.Driver, b store.StoredBlob) (*storage.Upload, error) {
	if err := b.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("recorded digest: %w", err)
	}
	r, err := from.Open(ctx, b.Digest, 0, -1)
	if err != nil {
		return nil, fmt.Errorf("read from the older storage: %w", err)
	}
	defer r.Close()
	up := storage.Upload{ID: newUploadID()}
	h := &storage.HashingReader{R: r, Hash: b.Digest.Algorithm().Hash()}
	n, state, err := to.Driver.Append(ctx, up, 0, h)
	up.State = state
	// An upload not to be committed is discarded, even if ctx ended.
	abort := func() { _ = to.Driver.Abort(context.WithoutCancel(ctx), up) }
	if err != nil {
		abort()
		return nil, fmt.Errorf("write into the storage in effect: %w", err)
	}
	if n != b.Size || h.N != b.Size {
		abort()
		return nil, fmt.Errorf("read %d bytes of a blob recorded as %d: %w", h.N, b.Size, errdefs.ErrSizeMismatch)
	}
	if got := digest.NewDigest(b.Digest.Algorithm(), h.Hash); got != b.Digest {
		abort()
		return nil, fmt.Errorf("the older storage's bytes have digest %s, not %s: %w", got, b.Digest, errDigest)
	}
	return &up, nil
}

func newUploadID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return "migrate" + hex.EncodeToString(b)
}

// Size is n bytes as people read sizes, in binary units ("1.5 MiB").
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
