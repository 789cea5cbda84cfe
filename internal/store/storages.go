package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Storages names the storages a presence check counts: the one in effect,
// where new bytes go, and the older ones still holding blobs that have not
// been migrated to it (readable until they are), those preferred first.
type Storages struct {
	InEffect string
	Older    []string
}

// Only is the storage in effect alone.
func Only(id string) Storages { return Storages{InEffect: id} }

func (in Storages) check() error {
	if in.InEffect == "" {
		return fmt.Errorf("no storage named: %w", errdefs.ErrInvalidArgument)
	}
	for _, o := range in.Older {
		if o == "" {
			return fmt.Errorf("an older storage without a name: %w", errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (in Storages) count() int { return 1 + len(in.Older) }

func (in Storages) args() []any {
	a := make([]any, 0, in.count())
	a = append(a, in.InEffect)
	for _, o := range in.Older {
		a = append(a, o)
	}
	return a
}

// key is in as a cache key: storage IDs never hold a NUL. The storage in
// effect alone (no migration pending, every blob GET) is its own key,
// allocating nothing.
func (in Storages) key() string {
	if len(in.Older) == 0 {
		return in.InEffect
	}
	return in.InEffect + "\x00" + strings.Join(in.Older, "\x00")
}

// RecordedStorage is a storage the operator put in effect at some time,
// with what it holds.
type RecordedStorage struct {
	ID string
	// Config is what the storage was configured with (its spec.storage
	// section as JSON, never credentials): enough to open it again. Empty
	// for a storage that holds blobs but was put in effect before storages
	// were recorded.
	Config []byte
	// Blobs and Bytes are the blobs whose bytes it holds.
	Blobs, Bytes int64
}

// RecordStorage records that storage id, configured with config, is put
// in effect, so that any instance, after any restart, can open it again
// while it holds blobs. A later record replaces the configuration (new
// settings that do not move its bytes).
func (s *Store) RecordStorage(ctx context.Context, id string, config []byte) error {
	if err := Only(id).check(); err != nil {
		return err
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
INSERT INTO storages (id, config, recorded_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET config = excluded.config, recorded_at = excluded.recorded_at`, id, string(config), s.micros())
		if err != nil {
			return fmt.Errorf("record storage %s: %w", id, err)
		}
		return nil
	})
}

// OlderStorages lists the recorded storages other than current, by ID,
// with what each holds (a record stays when its storage is emptied: a
// request begun before a switch may still commit into it). It reads
// each one's blobs through an index: the storage in effect, which holds
// most, is never counted.
func (s *Store) OlderStorages(ctx context.Context, current string) ([]RecordedStorage, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, config FROM storages WHERE id <> ? ORDER BY id`, current)
	if err != nil {
		return nil, fmt.Errorf("list storages: %w", err)
	}
	var out []RecordedStorage
	for rows.Next() {
		var r RecordedStorage
		var config string
		if err := rows.Scan(&r.ID, &config); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list storages: %w", err)
		}
		if config != "" {
			r.Config = []byte(config)
		}
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list storages: %w", err)
	}
	for i := range out {
		if err := s.read.QueryRowContext(ctx, `
SELECT COUNT(*), COALESCE(SUM(b.size), 0) FROM blob_storages bs JOIN blobs b ON b.digest = bs.digest
WHERE bs.storage = ?`, out[i].ID).Scan(&out[i].Blobs, &out[i].Bytes); err != nil {
			return nil, fmt.Errorf("count the blobs of %s: %w", out[i].ID, err)
		}
	}
	return out, nil
}

// StoredBlob is a blob whose bytes a storage holds.
type StoredBlob struct {
	Digest digest.Digest
	Size   int64
}

// StorageBlobs lists up to limit blobs whose bytes storage holds, in
// digest order after the digest after ("" for the first page).
func (s *Store) StorageBlobs(ctx context.Context, storage string, after digest.Digest, limit int) ([]StoredBlob, error) {
	rows, err := s.read.QueryContext(ctx, `
SELECT bs.digest, b.size FROM blob_storages bs JOIN blobs b ON b.digest = bs.digest
WHERE bs.storage = ? AND bs.digest > ? ORDER BY bs.digest LIMIT ?`, storage, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("list the blobs of %s: %w", storage, err)
	}
	defer rows.Close()
	var out []StoredBlob
	for rows.Next() {
		var b StoredBlob
		var d string
		if err := rows.Scan(&d, &b.Size); err != nil {
			return nil, fmt.Errorf("list the blobs of %s: %w", storage, err)
		}
		b.Digest = digest.Digest(d)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the blobs of %s: %w", storage, err)
	}
	return out, nil
}

// BlobIn reports whether storage holds the bytes of dgst.
func (s *Store) BlobIn(ctx context.Context, storage string, dgst digest.Digest) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, `SELECT 1 FROM blob_storages WHERE digest = ? AND storage = ?`, string(dgst), storage).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up blob %s in %s: %w", dgst, storage, err)
	}
	return true, nil
}

// MoveBlob records that the bytes of dgst, copied from storage from, are
// in storage to, and no longer in from: one step, so that the blob is
// always present in one of them. It is errdefs.ErrNotFound when from does
// not hold dgst (moved meanwhile).
func (s *Store) MoveBlob(ctx context.Context, dgst digest.Digest, from, to string) error {
	if err := (Storages{InEffect: to, Older: []string{from}}).check(); err != nil {
		return err
	}
	return s.pushTx(ctx, func(tx *sql.Tx) error {
		// A blob the collector is taking is not moved: its bytes go.
		if err := s.touchBlob(ctx, tx, dgst); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM blob_storages WHERE digest = ? AND storage = ?`, string(dgst), from)
		if err != nil {
			return fmt.Errorf("move blob %s from %s: %w", dgst, from, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("blob %s in %s: %w", dgst, from, errdefs.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO blob_storages (digest, storage) VALUES (?, ?) ON CONFLICT DO NOTHING`, string(dgst), to); err != nil {
			return fmt.Errorf("record blob %s in %s: %w", dgst, to, err)
		}
		// A location cached as from must not be served any more.
		s.effectsOf(tx).moves = true
		return nil
	})
}
