package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Instances that share a PostgreSQL store hear each other's commits:
// every write transaction sends a notification as it commits (NOTIFY is
// transactional: sent if and only if the transaction commits), and each
// instance LISTENs on a connection of its own. Hearing one, an instance
// wakes its watchers, webhook dispatcher and operator, and its open
// watches check their access again when the commit changed access.
//
// Notifications wake; they are not what keeps caches right: a shared
// store's caches go by counters in the store, read once per request (see
// generations.go), so a request never misses a commit that came before
// it, whatever the notifications' delay. A notification missed while the
// listening connection is down only delays a wake-up: when it listens
// again, it wakes everyone.

// changesChannel is the channel of commit notifications.
const changesChannel = "berth_changes"

// notifyCommit queues tx's notification: "<store id>", and " a" when it
// changed who may do what (open watches check their access again).
func (s *Store) notifyCommit(ctx context.Context, tx *sql.Tx, e *effects) error {
	if s.listener == nil {
		return nil
	}
	payload := s.listener.id
	if e.access {
		payload += " a"
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_notify('`+changesChannel+`', ?)`, payload); err != nil {
		return fmt.Errorf("notify other instances: %w", err)
	}
	return nil
}

// listener holds the LISTEN connection of one store.
type listener struct {
	// id tells this store's own notifications apart.
	id     string
	config *pgx.ConnConfig
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	// ready is closed once the first LISTEN is in place.
	ready     chan struct{}
	readyOnce sync.Once
}

func newListener(config *pgx.ConnConfig, log *slog.Logger) *listener {
	b := make([]byte, 8)
	rand.Read(b)
	return &listener{id: hex.EncodeToString(b), config: config, log: log,
		done: make(chan struct{}), ready: make(chan struct{})}
}

// listenRetry is how long the listener waits before it connects again;
// listenPing how long it waits for a notification before it checks the
// connection.
const (
	listenRetry = time.Second
	listenPing  = 30 * time.Second
)

// start runs the listener until stop.
func (l *listener) start(s *Store) {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			err := l.listen(ctx, s)
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("metadata store: not hearing other instances' changes (watches wake late) until the connection is back", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(listenRetry):
			}
		}
	}()
}

// awaitReady waits until the listener listens (or ctx ends): a store
// handed out before might miss a change made by another instance in
// between, with its caches off but its watchers not woken.
func (l *listener) awaitReady(ctx context.Context) error {
	select {
	case <-l.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("metadata store: listen for other instances' changes: %w", ctx.Err())
	}
}

func (l *listener) listen(ctx context.Context, s *Store) error {
	conn, err := pgx.ConnectConfig(ctx, l.config)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+changesChannel); err != nil {
		return err
	}
	// Anything may have changed while nobody listened.
	s.accessChanges.notify()
	s.changes.notify()
	l.readyOnce.Do(func() { close(l.ready) })
	for {
		// A connection whose peer vanished (a half-open one: a network
		// cut, a failover) says nothing: every listenPing without a
		// notification, it is asked whether it is still there.
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && wctx.Err() != nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		from, flags, _ := strings.Cut(n.Payload, " ")
		if from == l.id {
			continue // committed() has done it
		}
		if flags == "a" {
			s.accessChanges.notify()
		}
		s.changes.notify()
	}
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
