package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Instance is the heartbeat row of one `berth serve` process working from
// this store. Each process renews its own row; every process reads all of
// them (the management API shows them as the registry's pods).
type Instance struct {
	ID      string // a UUID the process chose at start
	Name    string // its pod name
	Host    string
	Version string
	Listen  string
	// Ready is what the process said at its last heartbeat: serving, not
	// shutting down, healthy.
	Ready    bool
	Restarts int
	Started  time.Time
	// Heartbeat is when the row was last renewed, by the writer's clock.
	Heartbeat time.Time
	// Stopping is when its graceful shutdown began; zero while serving.
	Stopping time.Time
}

// Live reports whether the row was renewed within staleAfter of now and
// its process is not shutting down.
func (i Instance) Live(now time.Time, staleAfter time.Duration) bool {
	return i.Stopping.IsZero() && now.Sub(i.Heartbeat) < staleAfter
}

// ReadyAt reports whether the instance is ready as of now: it said so at a
// heartbeat recent enough to be believed.
func (i Instance) ReadyAt(now time.Time, staleAfter time.Duration) bool {
	return i.Ready && i.Live(now, staleAfter)
}

// Heartbeat records in as it is now: creates its row or renews it, with
// Heartbeat set to the store's clock. Started is kept from the first call.
func (s *Store) Heartbeat(ctx context.Context, in Instance) error {
	ready := 0
	if in.Ready {
		ready = 1
	}
	var stopping int64
	if !in.Stopping.IsZero() {
		stopping = in.Stopping.UnixMicro()
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `
INSERT INTO instances (id, name, host, version, listen, ready, restarts, started_at, heartbeat_at, stopping_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, host = excluded.host, version = excluded.version,
	listen = excluded.listen, ready = excluded.ready, restarts = excluded.restarts,
	heartbeat_at = excluded.heartbeat_at, stopping_at = excluded.stopping_at`,
			in.ID, in.Name, in.Host, in.Version, in.Listen, ready, in.Restarts, in.Started.UnixMicro(), s.micros(), stopping)
		return err
	})
	if err != nil {
		return fmt.Errorf("heartbeat of instance %s: %w", in.ID, err)
	}
	return nil
}

// Instances lists the heartbeat rows, oldest instance first.
func (s *Store) Instances(ctx context.Context) ([]Instance, error) {
	rows, err := s.query(ctx, `
SELECT id, name, host, version, listen, ready, restarts, started_at, heartbeat_at, stopping_at
FROM instances ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		var ready int
		var started, beat, stopping int64
		if err := rows.Scan(&in.ID, &in.Name, &in.Host, &in.Version, &in.Listen, &ready, &in.Restarts, &started, &beat, &stopping); err != nil {
			return nil, fmt.Errorf("list instances: %w", err)
		}
		in.Ready = ready != 0
		in.Started, in.Heartbeat = time.UnixMicro(started).UTC(), time.UnixMicro(beat).UTC()
		if stopping != 0 {
			in.Stopping = time.UnixMicro(stopping).UTC()
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	return out, nil
}

// RemoveInstance deletes an instance's row (its process stopped); an
// unknown id is not an error.
func (s *Store) RemoveInstance(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM instances WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	return nil
}

// DeleteStaleInstances deletes the rows last renewed before before (their
// processes died without removing them) and reports how many went.
func (s *Store) DeleteStaleInstances(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM instances WHERE heartbeat_at < ?`, before.UnixMicro())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete stale instances: %w", err)
	}
	return n, nil
}

// Ping checks that the store answers a trivial query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("metadata store: %w", err)
	}
	return nil
}
