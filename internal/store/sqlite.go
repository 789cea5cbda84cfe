package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"modernc.org/sqlite" // pure Go; also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/berth-registry/berth/internal/gencache"
)

// cacheTTL bounds how long a cached manifest or blob size is used: within
// one instance every change invalidates what it touches at once; the bound
// is for changes another instance made.
const cacheTTL = 10 * time.Second

// Option is an option of OpenSQLite.
type Option func(*options)

type options struct {
	secretKeys [][]byte
	ephemeral  bool
	wait       time.Duration
	log        *slog.Logger
}

// WithLogger names where the store logs what happens outside any call
// (waiting for its database, losing its listener); default slog.Default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// applyOptions gathers opts, and the Secrets keys they name.
func applyOptions(opts []Option) (options, secretKeys, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	keys, err := newSecretKeys(o.secretKeys)
	return o, keys, err
}

// WaitForDatabase makes opening a database server's store (PostgreSQL)
// wait up to d for the server to answer, trying again every few seconds:
// instances started with their database, or while it restarts, come up
// when it does instead of failing at once.
func WaitForDatabase(d time.Duration) Option {
	return func(o *options) { o.wait = d }
}

// Ephemeral is for a database that does not outlive the process (the
// metadata of memory storage, whose blobs vanish at exit): commits are
// not synced to disk, since nothing would read them after a crash.
func Ephemeral() Option {
	return func(o *options) { o.ephemeral = true }
}

// OpenSQLite opens (creating and migrating as needed) the SQLite store at
// path. One process opens a database: its writes are serialized by SQLite
// and the writer's queue.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o, keys, err := applyOptions(opts)
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
	if err := migrate(ctx, write, sqliteDialect.migrations); err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	return newStore(ctx, &sqliteDialect, read, write, keys, func(s *Store) txRunner {
		return newGroupWriter(write, s.committing, s.committed, s.ended)
	})
}

// sqliteDialect is SQLite's: one writer at a time, so writes never race.
var sqliteDialect = dialect{
	name:       "sqlite",
	migrations: sqliteMigrations,
	uniqueViolation: func(err error) bool {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return false
		}
		code := se.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	retryable: func(error) bool { return false },
	nowMicros: `CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)`,
	compact: func(ctx context.Context, db *sql.DB) error {
		if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
			return fmt.Errorf("rebuild the database: %w", err)
		}
		if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return fmt.Errorf("empty the WAL: %w", err)
		}
		return nil
	},
}

// newStore assembles a Store on an opened, migrated database: read serves
// reads, write the write transactions that the runner newWriter makes
// runs.
func newStore(ctx context.Context, d *dialect, read, write *sql.DB, keys secretKeys, newWriter func(*Store) txRunner) (*Store, error) {
	s := &Store{dialect: d, read: read, write: write, prepared: statements{db: read}, now: time.Now, secretKeys: keys,
		// Up to 2048 manifests of up to 32 KiB (most are a few KiB): at
		// most 64 MiB.
		manifests: &gencache.Cache[repoRef, Manifest]{TTL: cacheTTL, Max: 2048,
			Keep: func(m Manifest) bool { return len(m.Payload) <= 32<<10 }},
		blobLocations: &gencache.Cache[blobRef, BlobLocation]{TTL: cacheTTL, Max: 100000},
	}
	s.writer = newWriter(s)
	if d.shared {
		s.leases = rowLeases{s}
	} else {
		s.leases = &memoryLeases{}
	}
	for _, adopt := range []func(context.Context) error{s.adoptLegacyBindings, s.adoptLegacyGroups, s.adoptLegacyServiceAccounts} {
		if err := adopt(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}
