package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/berth-registry/berth/internal/errdefs"
)

// groupWriter runs every write transaction on SQLite's one write
// connection, with group commit: writes that arrive while a transaction is
// committing wait together and run in the next one, each in a savepoint so
// that one failing leaves the others, and share its commit. Under
// synchronous=FULL a commit is an fsync; concurrent pushes each used to
// queue for their own, several times per push. Now a batch of writers pays
// one, and a lone writer pays what it paid before.
//
// A write is a function of the transaction. It must not start another
// write (the writer would wait for itself), and it runs on the writer's
// goroutine, so whatever it changes outside the transaction must be safe
// to change from there.
type groupWriter struct {
	db    *sql.DB
	queue chan *writeOp
	// stop ends the loop; stopped is closed when it has.
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
	// committing is called right before each commit, committed after
	// each commit, ended after each transaction, committed or not.
	committing, committed, ended func(*sql.Tx)
}

// maxBatch bounds how many writes share one commit, so one commit never
// holds the writer for long.
const maxBatch = 64

var (
	errStoreClosed = errors.New("store closed")
	// errBatchLost: the write was fine, but the transaction it shared was
	// rolled back by another's failure; retrying may succeed.
	errBatchLost = fmt.Errorf("write lost with its transaction: %w", errdefs.ErrUnavailable)
)

type writeOp struct {
	ctx    context.Context
	fn     func(*sql.Tx) error
	result chan error // buffered: the writer never waits on it
}

func newGroupWriter(db *sql.DB, committing, committed, ended func(*sql.Tx)) *groupWriter {
	w := &groupWriter{
		db: db, queue: make(chan *writeOp, maxBatch),
		stop: make(chan struct{}), stopped: make(chan struct{}),
		committing: committing, committed: committed, ended: ended,
	}
	go w.loop()
	return w
}

// do runs fn in a write transaction and returns once it committed (nil) or
// failed. It waits for the outcome even if ctx ends meanwhile: a caller
// must know whether its write happened.
func (w *groupWriter) do(ctx context.Context, fn func(*sql.Tx) error) error {
	op := &writeOp{ctx: ctx, fn: fn, result: make(chan error, 1)}
	select {
	case <-w.stop:
		return errStoreClosed
	default:
	}
	select {
	case w.queue <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stop:
		return errStoreClosed
	}
	select {
	case err := <-op.result:
		return err
	case <-w.stopped:
		// The loop answered everything it took before it ended; a write
		// queued after its last look never ran.
		select {
		case err := <-op.result:
			return err
		default:
			return errStoreClosed
		}
	}
}

// close stops the loop after the batch in progress; writes still queued
// fail with errStoreClosed.
func (w *groupWriter) close() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.stopped
}

func (w *groupWriter) loop() {
	defer close(w.stopped)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case op := <-w.queue:
			batch = append(batch[:0], op)
		case <-w.stop:
			w.drain()
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case op := <-w.queue:
				batch = append(batch, op)
			default:
				break more
			}
		}
		w.run(batch)
	}
}

func (w *groupWriter) drain() {
	for {
		select {
		case op := <-w.queue:
			op.result <- errStoreClosed
		default:
			return
		}
	}
}

// run executes a batch in one transaction. Alone, a write that fails rolls
// the transaction back; in company, it rolls back to its savepoint. The
// transaction's own statements use a context of their own: one caller
// hanging up must not undo the others' writes.
func (w *groupWriter) run(batch []*writeOp) {
	results := make([]error, len(batch))
	finish := func(err error) {
		for i, op := range batch {
			if results[i] == nil {
				results[i] = err
			}
			op.result <- results[i]
		}
	}
	ctx := context.Background()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		finish(fmt.Errorf("begin: %w", err))
		return
	}
	defer w.ended(tx)
	defer tx.Rollback() // after Commit a no-op
	shared := len(batch) > 1
	wrote := false
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if shared {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT write`); err != nil {
				finish(fmt.Errorf("savepoint: %w", err))
				return
			}
		}
		err := call(op.fn, tx)
		if err != nil {
			results[i] = err
			if !shared {
				finish(nil)
				return
			}
			// A failed statement may have ended the whole transaction
			// (SQLite does on some I/O errors); then rolling back to the
			// savepoint fails and nothing of the batch survived.
			if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO write`); rerr != nil {
				// The others did nothing wrong: their error says what
				// happened to them, not the failed write's cause.
				finish(fmt.Errorf("%w: another write of the transaction failed and took it down (%v)", errBatchLost, rerr))
				return
			}
		}
		if shared {
			if _, err := tx.ExecContext(ctx, `RELEASE write`); err != nil {
				finish(fmt.Errorf("release savepoint: %w", err))
				return
			}
		}
		wrote = wrote || err == nil
	}
	if !wrote {
		finish(nil)
		return
	}
	w.committing(tx)
	if err := tx.Commit(); err != nil {
		// Every write of the batch is lost with the commit.
		for i := range results {
			if results[i] == nil {
				results[i] = fmt.Errorf("commit: %w", err)
			}
		}
		finish(nil)
		return
	}
	w.committed(tx)
	finish(nil)
}

// call runs fn, turning a panic into an error: it runs on the writer's
// goroutine, where a panic would end the process, not just one request.
func call(fn func(*sql.Tx) error, tx *sql.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked: %v", p)
		}
	}()
	return fn(tx)
}
