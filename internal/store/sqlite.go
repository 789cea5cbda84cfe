package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"modernc.org/sqlite" // pure Go; also registers the "sqlite" driver

	"github.com/berth-registry/berth/internal/gencache"
)

// OpenSQLite opens (creating and migrating as needed) the SQLite store at
// path.
// cacheTTL bounds how long a cached manifest or blob size is used: within
// one instance every change invalidates what it touches at once; the bound
// is for changes another instance made.
const cacheTTL = 10 * time.Second

// Option is an option of OpenSQLite.
type Option func(*options)

type options struct {
	secretKeys [][]byte
	ephemeral  bool
}

// Ephemeral is for a database that does not outlive the process (the
// metadata of memory storage, whose blobs vanish at exit): commits are
// not synced to disk, since nothing would read them after a crash.
func Ephemeral() Option {
	return func(o *options) { o.ephemeral = true }
}

func OpenSQLite(ctx context.Context, path string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	keys, err := newSecretKeys(o.secretKeys)
	if err != nil {
		return nil, err
	}
	// FULL: a transaction that returned is on disk, so a 201 survives a
	// power cut, not only kill -9.
	synchronous := "synchronous(FULL)"
	if o.ephemeral {
		synchronous = "synchronous(OFF)"
	}
	pragmas := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"busy_timeout(10000)",
		"foreign_keys(1)",
		synchronous,
	} {
		pragmas.Add("_pragma", p)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite path %s: %w", path, err)
	}
	// SQLite would create the database 0644 less the umask, and it gives
	// the -wal and -shm files the database file's mode: created 0600 here
	// first (an empty file is a new database to SQLite), all three are
	// private. An existing file keeps its mode (the server tightens it).
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create sqlite %s: %w", path, err)
	}
	f.Close()
	// A URI, escaped, so that '#', '?' or '%' in a directory name stay
	// part of the path.
	uri := (&url.URL{Scheme: "file", Path: abs}).String()
	readDSN := uri + "?" + pragmas.Encode()
	pragmas.Set("_txlock", "immediate")
	writeDSN := uri + "?" + pragmas.Encode()

	connector, err := sqlite.NewConnector(writeDSN)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	write := sql.OpenDB(uninterrupted{connector})
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	read, err := sql.Open("sqlite", readDSN)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	read.SetMaxOpenConns(max(4, 2*runtime.GOMAXPROCS(0)))
	read.SetMaxIdleConns(max(4, 2*runtime.GOMAXPROCS(0)))
	s := &Store{read: read, write: write, prepared: statements{db: read}, now: time.Now, secretKeys: keys,
		// Up to 2048 manifests of up to 32 KiB (most are a few KiB): at
		// most 64 MiB.
		manifests: &gencache.Cache[repoRef, Manifest]{TTL: cacheTTL, Max: 2048,
			Keep: func(m Manifest) bool { return len(m.Payload) <= 32<<10 }},
		blobLocations: &gencache.Cache[blobRef, BlobLocation]{TTL: cacheTTL, Max: 100000},
	}
	if err := migrate(ctx, write, sqliteMigrations); err != nil {
		s.Close()
		return nil, err
	}
	s.writer = newGroupWriter(write, s.committing, s.committed, s.ended)
	if err := s.adoptLegacyBindings(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.adoptLegacyGroups(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.adoptLegacyServiceAccounts(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func migrate(ctx context.Context, db *sql.DB, migrations []string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this berth (%d)", current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().UnixMicro()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}
