package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
)

// dialect is what differs between the SQL engines the store runs on. The
// queries are shared: written once with ? placeholders in the SQL that
// SQLite and PostgreSQL both speak, and rebound for the engine by its
// connection (see rebind). What cannot be shared is here.
type dialect struct {
	name string
	// migrations are the engine's schema versions, applied in order.
	migrations []string
	// snapshot starts a read transaction that sees one snapshot of the
	// database (SQLite's deferred transactions do; PostgreSQL's default
	// READ COMMITTED takes a snapshot per statement).
	snapshot *sql.TxOptions
	// shared: instances share the store, and write transactions run at
	// once: what they must agree on (upload leases, cache generations)
	// lives in rows, a write reads what it changes under a row lock
	// (forUpdate), and appends its events right before it commits
	// (flushEvents).
	shared bool
	// forUpdate ends a SELECT of rows a write is about to change: locked
	// until it commits where writes run at once (shared).
	forUpdate string
	// advisoryLock is a statement that takes a lock named by its one
	// argument until the transaction ends, where writes run at once
	// ("" on SQLite, whose writes never do).
	advisoryLock string
	// keepRows ends a SELECT whose rows a write relies on without
	// changing them: until it commits, no other may delete or change
	// their keys (PostgreSQL: FOR KEY SHARE).
	keepRows string
	// gcLock ends the collector's SELECT of the row of a blob or manifest
	// it may delete: until it commits, every write that would add a
	// reference to it (which touches the row, or inserts a row naming it)
	// waits, and the collector, the other way round, waits for those
	// (PostgreSQL: FOR UPDATE, which conflicts with FOR KEY SHARE).
	gcLock string
	// lazyCommit, run first in a transaction, lets its commit return
	// before it is durable (PostgreSQL: synchronous_commit off): for
	// writes a later durable commit depends on, which the log then makes
	// durable with it, in order ("" where commits cost no wait of their
	// own: SQLite's group commit).
	lazyCommit string
	// nowMicros is an SQL expression of the database's clock, in
	// microseconds since the epoch: what instances with clocks of their
	// own agree on.
	nowMicros string
	// uniqueViolation says err is the engine refusing a duplicate key.
	uniqueViolation func(error) bool
	// unreachable says err is the database not answering: the request
	// may succeed later (errdefs.ErrUnavailable, a 503).
	unreachable func(error) bool
	// retryable says a write transaction failed for a reason of the
	// moment (a deadlock, a serialization failure) and may be run again.
	retryable func(error) bool
	// compact rewrites the database files so that deleted content is
	// gone from them (after Secrets were encrypted in place).
	compact func(ctx context.Context, db *sql.DB) error
}

// conflictError is a write the engine refused for a duplicate key: two
// writers created the same thing at once, and the one that committed
// first won. It is errdefs.ErrAlreadyExists to callers.
type conflictError struct{ err error }

func (e conflictError) Error() string        { return e.err.Error() }
func (e conflictError) Unwrap() error        { return e.err }
func (e conflictError) Is(target error) bool { return target == errdefs.ErrAlreadyExists }

// mapError gives a write's error the meaning callers test for.
func (d *dialect) mapError(err error) error {
	if err == nil || errors.Is(err, errdefs.ErrAlreadyExists) || errors.Is(err, errdefs.ErrUnavailable) {
		return err
	}
	if d.uniqueViolation != nil && d.uniqueViolation(err) {
		return conflictError{err}
	}
	if d.unreachable != nil && d.unreachable(err) {
		return unreachableError{err}
	}
	return err
}

// unreachableError is the database not answering. It is
// errdefs.ErrUnavailable to callers (a 503: retry later).
type unreachableError struct{ err error }

func (e unreachableError) Error() string { return "metadata store unreachable: " + e.err.Error() }
func (e unreachableError) Unwrap() error { return e.err }
func (e unreachableError) Is(target error) bool {
	return target == errdefs.ErrUnavailable
}

// rebind rewrites the ? placeholders of query as $1, $2, … (PostgreSQL's),
// leaving alone a ? inside a string literal, a quoted identifier or a
// comment.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+1])
			i += end
		case c == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// lockRows takes the row locks of the rows query (a SELECT) finds, held
// until tx ends, where the engine needs them (see dialect.shared): a
// write that reads a row and then changes it reads it locked, and a
// concurrent one waits instead of overwriting.
func (s *Store) lockRows(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	if !s.dialect.shared {
		return nil
	}
	// NO KEY UPDATE: the store never changes a key, and the weaker lock
	// leaves alone the KEY SHARE locks that inserts referencing the row
	// (a foreign key) take; FOR UPDATE would deadlock with them.
	rows, err := tx.QueryContext(ctx, query+s.dialect.forUpdate, args...)
	if err != nil {
		return fmt.Errorf("lock rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock rows: %w", err)
	}
	return nil
}

// keepRowsOf is keepRows for the rows of one table of a join, named by
// its alias: a push relies on a repository's links, and locking the
// blob or manifest rows they join as well would take those in the
// opposite order of the garbage collector, which locks a blob's row
// before its links (a deadlock).
func (s *Store) keepRowsOf(alias string) string {
	if s.dialect.keepRows == "" {
		return ""
	}
	return s.dialect.keepRows + " OF " + alias
}

// snapshot begins a read-only transaction whose reads all see one
// snapshot of the database.
func (s *Store) snapshot(ctx context.Context) (*sql.Tx, error) {
	opts := s.dialect.snapshot
	if opts == nil {
		opts = &sql.TxOptions{ReadOnly: true}
	}
	return s.read.BeginTx(ctx, opts)
}

// migrator is a database or one connection of it.
type migrator interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

func migrate(ctx context.Context, db migrator, migrations []string) error {
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

// openers open a store by the scheme of its DSN.
var openers = map[string]func(ctx context.Context, dsn string, opts ...Option) (*Store, error){
	"postgres":   OpenPostgres,
	"postgresql": OpenPostgres,
	"sqlite": func(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
		return OpenSQLite(ctx, strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//"), opts...)
	},
}

// Open opens the store dsn names: postgres://… (or postgresql://…, or a
// key=value connection string) for PostgreSQL, sqlite:PATH for SQLite.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	scheme, _, ok := strings.Cut(dsn, ":")
	if open, known := openers[scheme]; ok && known {
		return open(ctx, dsn, opts...)
	}
	if strings.Contains(dsn, "=") && !strings.Contains(dsn, "://") {
		return OpenPostgres(ctx, dsn, opts...) // host=… dbname=…
	}
	return nil, fmt.Errorf("metadata store %q: want postgres://… or sqlite:PATH", Redact(dsn))
}

// Shared reports whether dsn names a store several instances may share.
func Shared(dsn string) bool {
	scheme, _, _ := strings.Cut(dsn, ":")
	if scheme == "sqlite" {
		return false
	}
	return scheme == "postgres" || scheme == "postgresql" || (strings.Contains(dsn, "=") && !strings.Contains(dsn, "://"))
}

// Redact is dsn with its password, if any, replaced: for logs and errors.
// It holds for DSNs that do not parse too (a password with a stray %).
func Redact(dsn string) string {
	dsn = urlPassword.ReplaceAllString(dsn, "${1}xxxxx@")
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

var (
	// postgres://user:password@host: the password runs to the last @
	// before the host.
	urlPassword = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://[^:@/]*:)[^/]*@`)
	// password=value or password='quoted value', in any case.
	kvPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// Shared reports whether instances may share the store (PostgreSQL).
func (s *Store) Shared() bool { return s.dialect.shared }
