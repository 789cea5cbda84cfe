package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgresDialect is PostgreSQL's: many write transactions at once, each
// on its own connection, so a write that reads before it changes takes
// row locks (lockRows), duplicates are refused by unique constraints
// (errdefs.ErrAlreadyExists), and a deadlock or serialization failure is
// retried.
var postgresDialect = dialect{
	name:         "postgres",
	migrations:   postgresMigrations,
	snapshot:     &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	shared:       true,
	forUpdate:    ` FOR NO KEY UPDATE`,
	advisoryLock: `SELECT pg_advisory_xact_lock(hashtext(? || current_schema()))`,
	keepRows:     ` FOR KEY SHARE`,
	gcLock:       ` FOR UPDATE`,
	lazyCommit:   `SET LOCAL synchronous_commit = off`,
	nowMicros:    `CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)`,
	uniqueViolation: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
	unreachable: postgresUnreachable,
	retryable: func(err error) bool {
		var pe *pgconn.PgError
		// serialization_failure, deadlock_detected
		return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
	},
	compact: func(ctx context.Context, db *sql.DB) error {
		// PostgreSQL reuses the space of deleted row versions; VACUUM
		// marks it free (the old bytes stay until overwritten, as with
		// any PostgreSQL data: encrypt its volume for more).
		if _, err := db.ExecContext(ctx, `VACUUM objects, events`); err != nil {
			return fmt.Errorf("vacuum: %w", err)
		}
		return nil
	},
}

// OpenPostgres opens the PostgreSQL store at dsn (a postgres:// URL or a
// key=value connection string), migrating its schema first: instances
// that start together take turns under an advisory lock, and the first
// migrates.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o, keys, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	dsn, maxConns, err := poolSize(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store %s: %w", Redact(dsn), err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	// Two pools: writers waiting for a lock hold their connections, and
	// must not leave none to the reads every request makes (the caches'
	// generations, /healthz). Two thirds of the connections write.
	pool := func(n int) *sql.DB {
		db := sql.OpenDB(rebinding{stdlib.GetConnector(*cfg)})
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return db
	}
	writers := max(maxConns*2/3, 1)
	db, read := pool(writers), pool(max(maxConns-writers, 1))
	closeBoth := func() { db.Close(); read.Close() }
	log := o.log
	if log == nil {
		log = slog.Default()
	}
	if err := awaitPostgres(ctx, db, o.wait, cfg, log); err != nil {
		closeBoth()
		return nil, err
	}
	if err := migratePostgres(ctx, db); err != nil {
		closeBoth()
		return nil, err
	}
	s, err := newStore(ctx, &postgresDialect, read, db, keys, func(s *Store) txRunner {
		return &concurrentWriter{db: db, retryable: postgresDialect.retryable, flush: s.flushEvents,
			committing: s.committing, committed: s.committed, ended: s.ended}
	})
	if err != nil {
		return nil, err
	}
	s.listener = newListener(cfg.Copy(), log)
	s.listener.start(s)
	listenCtx, cancel := context.WithTimeout(ctx, listenTimeout)
	defer cancel()
	if err := s.listener.awaitReady(listenCtx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// listenTimeout bounds how long opening the store waits for its listener.
const listenTimeout = 30 * time.Second

// awaitPostgres waits up to wait for the server to answer while it is
// unreachable (down, starting, out of connections); any other failure
// (a wrong password, no such database) is not waited out.
func awaitPostgres(ctx context.Context, db *sql.DB, wait time.Duration, cfg *pgx.ConnConfig, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := db.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if !postgresUnreachable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("postgres store %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
		}
		log.Warn("waiting for the PostgreSQL store", "host", cfg.Host, "port", cfg.Port, "database", cfg.Database, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// postgresMaxConns bounds one instance's connections unless the DSN's
// pool_max_conns says otherwise: PostgreSQL's default max_connections is
// 100, shared by every instance (each also holds one to listen).
const postgresMaxConns = 20

// poolSize takes pool_max_conns (pgxpool's name for it) out of dsn, a URL
// or key=value string, and returns the rest with the size it gave
// (postgresMaxConns without it): PostgreSQL itself knows no such setting.
func poolSize(dsn string) (string, int, error) {
	n := postgresMaxConns
	parse := func(v string) error {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 {
			return fmt.Errorf("pool_max_conns %q: want a number of connections, at least 2", v)
		}
		return nil
	}
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		if v := q.Get("pool_max_conns"); v != "" {
			if err := parse(v); err != nil {
				return dsn, 0, err
			}
			q.Del("pool_max_conns")
			u.RawQuery = q.Encode()
			return u.String(), n, nil
		}
		return dsn, n, nil
	}
	var kept []string
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "pool_max_conns="); ok {
			if err := parse(v); err != nil {
				return dsn, 0, err
			}
			continue
		}
		kept = append(kept, f)
	}
	return strings.Join(kept, " "), n, nil
}

// migrationLock is the advisory lock key under which instances migrate
// (per schema: tests share a database, one schema each).
const migrationLock = `SELECT pg_advisory_lock(hashtext('berth-migrate:' || current_schema()))`

func migratePostgres(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("postgres store: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, migrationLock); err != nil {
		return fmt.Errorf("postgres store: take the migration lock: %w", err)
	}
	// The lock is the session's: it goes with the connection, should the
	// unlock fail.
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('berth-migrate:' || current_schema()))`)
	return migrate(ctx, conn, postgresDialect.migrations)
}

// concurrentWriter runs each write in a transaction of its own, on its
// own connection, as many at once as the pool allows. A transaction that
// failed for a reason of the moment (a deadlock between two writers) runs
// again, a few times.
type concurrentWriter struct {
	db        *sql.DB
	retryable func(error) bool
	// flush runs last in each transaction, before committing is called.
	flush                        func(context.Context, *sql.Tx) error
	committing, committed, ended func(*sql.Tx)
	mu                           sync.RWMutex
	closed                       bool
	// retries counts transactions run again (deadlocks, serialization
	// failures): a lock order gone wrong shows here first.
	retries atomic.Int64
}

// writeTimeout bounds one write transaction: its statements run whether
// or not the caller hangs up (the caller must learn whether it happened),
// but not forever against a database that stopped answering.
const writeTimeout = 30 * time.Second

const maxWriteAttempts = 5

func (w *concurrentWriter) do(ctx context.Context, fn func(*sql.Tx) error) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return errStoreClosed
	}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := w.once(ctx, fn)
		if err == nil || attempt == maxWriteAttempts || !w.retryable(err) {
			return err
		}
		w.retries.Add(1)
		time.Sleep(time.Duration(rand.Int64N(int64(attempt) * int64(10*time.Millisecond))))
	}
}

func (w *concurrentWriter) once(ctx context.Context, fn func(*sql.Tx) error) error {
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	tx, err := w.db.BeginTx(txCtx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer w.ended(tx)
	defer tx.Rollback() // after Commit a no-op
	if err := call(fn, tx); err != nil {
		return err
	}
	if err := w.flush(txCtx, tx); err != nil {
		return err
	}
	w.committing(tx)
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	w.committed(tx)
	return nil
}

// close waits for the writes under way; later ones fail.
func (w *concurrentWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// rebinding connects to PostgreSQL through pgx, rewriting the store's ?
// placeholders as PostgreSQL's $n (once per query text).
type rebinding struct{ driver.Connector }

func (c rebinding) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, classify(err)
	}
	pc, ok := conn.(*stdlib.Conn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("pgx connection is a %T, not a *stdlib.Conn", conn)
	}
	return rebindingConn{pc}, nil
}

// rebindingConn is a pgx connection whose query texts are rebound. It
// passes on every optional interface of *stdlib.Conn.
type rebindingConn struct{ *stdlib.Conn }

// reboundQueries remembers rebound query texts. They are fixed in the
// code but for those built with a list of placeholders, so past
// maxRebound the rest are rebound every time.
var (
	reboundQueries sync.Map // query text → rebound text
	rebound        atomic.Int64
)

const maxRebound = 1024

func reboundQuery(query string) string {
	if q, ok := reboundQueries.Load(query); ok {
		return q.(string)
	}
	q := rebind(query)
	if rebound.Load() < maxRebound {
		if _, loaded := reboundQueries.LoadOrStore(query, q); !loaded {
			rebound.Add(1)
		}
	}
	return q
}

func (c rebindingConn) Prepare(query string) (driver.Stmt, error) {
	st, err := c.Conn.Prepare(reboundQuery(query))
	return st, classify(err)
}

func (c rebindingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.Conn.PrepareContext(ctx, reboundQuery(query))
	return st, classify(err)
}

func (c rebindingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := c.Conn.ExecContext(ctx, reboundQuery(query), args)
	return res, classify(err)
}

func (c rebindingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.Conn.QueryContext(ctx, reboundQuery(query), args)
	return rows, classify(err)
}

// CheckNamedValue passes a Go bool as 0 or 1: the schema keeps flags in
// integer columns, as SQLite does, so that the queries stay shared.
func (c rebindingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		nv.Value = int64(0)
		if b {
			nv.Value = int64(1)
		}
		return nil
	}
	return c.Conn.CheckNamedValue(nv)
}

// postgresUnreachable says err is PostgreSQL not answering (down,
// restarting, out of connections) rather than refusing what was asked.
func postgresUnreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// connection_exception, admin_shutdown, crash_shutdown,
		// cannot_connect_now, too_many_connections, and
		// read_only_sql_transaction (a standby, after a failover)
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" ||
			pe.Code == "53300" || pe.Code == "25006"
	}
	// A caller that hung up, or whose deadline passed, is not the
	// database's fault (context errors look like network timeouts).
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) ||
		strings.Contains(err.Error(), "conn closed")
}

// BeginTx is stdlib's, its failure classified (see unreachableError).
func (c rebindingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	return tx, classify(err)
}

func classify(err error) error {
	if err != nil && postgresUnreachable(err) {
		return unreachableError{err}
	}
	return err
}
