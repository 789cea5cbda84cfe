package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Webhook deliveries. The webhook dispatcher reads the event log from its
// cursor on, and queues one delivery per event and matching webhook in
// the transaction that moves the cursor (QueueDeliveries): an event is
// queued once, whatever crashes, and a push never waits for any of it.
// A delivery stays Queued until it is Delivered or Failed (given up);
// the finished ones are kept, the newest few per webhook, for its status.

// The states of a delivery.
const (
	DeliveryQueued    = "Queued"
	DeliveryDelivered = "Delivered"
	DeliveryFailed    = "Failed"
)

// keptDeliveries is how many finished deliveries each webhook keeps.
const keptDeliveries = 10

// QueuedDelivery is an event to send to a webhook.
type QueuedDelivery struct {
	WebhookUID string
	EventID    string
	EventType  string
	Subject    string
	Payload    []byte
}

// Delivery is a queued or finished delivery.
type Delivery struct {
	ID int64
	QueuedDelivery
	State      string
	Attempts   int
	NextAt     time.Time
	Created    time.Time
	Updated    time.Time
	LastStatus int
	LastError  string
}

// DeliveryAttempt is what an attempt ended with.
type DeliveryAttempt struct {
	Status int
	Error  string
	// State is DeliveryDelivered, DeliveryFailed, or DeliveryQueued with
	// the next attempt at NextAt.
	State  string
	NextAt time.Time
}

// WebhookCursor is the sequence of the last event the dispatcher queued
// deliveries for. The first call starts it at the newest event: a new
// installation does not replay its history to webhooks.
func (s *Store) WebhookCursor(ctx context.Context) (int64, error) {
	var seq int64
	err := s.queryRow(ctx, `SELECT seq FROM webhook_cursor WHERE id = 1`).Scan(&seq)
	if err == nil {
		return seq, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read webhook cursor: %w", err)
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO webhook_cursor (id, seq) SELECT 1, value FROM sequences WHERE name = 'events' ON CONFLICT (id) DO NOTHING`); err != nil {
			return fmt.Errorf("start webhook cursor: %w", err)
		}
		return tx.QueryRowContext(ctx, `SELECT seq FROM webhook_cursor WHERE id = 1`).Scan(&seq)
	})
	return seq, err
}

// QueueDeliveries queues ds and moves the cursor from from to to, in one
// transaction; errdefs.ErrConflict, and nothing queued, when the cursor
// is no longer at from (another dispatcher moved it).
func (s *Store) QueueDeliveries(ctx context.Context, from, to int64, ds []QueuedDelivery) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_cursor SET seq = ? WHERE id = 1 AND seq = ?`, to, from)
		if err != nil {
			return fmt.Errorf("move webhook cursor: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("webhook cursor moved from %d: %w", from, errdefs.ErrConflict)
		}
		now := s.micros()
		for _, d := range ds {
			if _, err := tx.ExecContext(ctx, `
INSERT INTO webhook_deliveries (webhook_uid, event_id, event_type, subject, payload, state, next_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.WebhookUID, d.EventID, d.EventType, d.Subject, d.Payload, DeliveryQueued, now, now, now); err != nil {
				return fmt.Errorf("queue delivery of %s: %w", d.EventID, err)
			}
		}
		return nil
	})
}

const deliveryColumns = `id, webhook_uid, event_id, event_type, subject, payload, state, attempts, next_at, created_at, updated_at, last_status, last_error`

func scanDeliveries(rows *sql.Rows) ([]Delivery, error) {
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var next, created, updated int64
		if err := rows.Scan(&d.ID, &d.WebhookUID, &d.EventID, &d.EventType, &d.Subject, &d.Payload, &d.State, &d.Attempts,
			&next, &created, &updated, &d.LastStatus, &d.LastError); err != nil {
			return nil, fmt.Errorf("read deliveries: %w", err)
		}
		d.NextAt, d.Created, d.Updated = time.UnixMicro(next).UTC(), time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// duePerWebhook is how many due deliveries of one webhook a listing
// takes: a webhook with a backlog must not crowd the others out.
const duePerWebhook = 5

// DueDeliveries lists up to limit queued deliveries due by now, oldest
// first and at most a few per webhook, and when the next one after them
// is due (zero when none is).
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]Delivery, time.Time, error) {
	rows, err := s.query(ctx, `SELECT `+deliveryColumns+` FROM (
	SELECT `+deliveryColumns+`, ROW_NUMBER() OVER (PARTITION BY webhook_uid ORDER BY next_at, id) AS nth
	FROM webhook_deliveries WHERE state = ? AND next_at <= ?
) AS due WHERE nth <= ? ORDER BY next_at, id LIMIT ?`, DeliveryQueued, now.UnixMicro(), duePerWebhook, limit)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("due deliveries: %w", err)
	}
	due, err := scanDeliveries(rows)
	if err != nil {
		return nil, time.Time{}, err
	}
	var next sql.NullInt64
	if err := s.queryRow(ctx, `SELECT MIN(next_at) FROM webhook_deliveries WHERE state = ? AND next_at > ?`,
		DeliveryQueued, now.UnixMicro()).Scan(&next); err != nil {
		return nil, time.Time{}, fmt.Errorf("next delivery: %w", err)
	}
	var at time.Time
	if next.Valid {
		at = time.UnixMicro(next.Int64).UTC()
	}
	return due, at, nil
}

// FinishAttempt records an attempt of delivery id, and keeps the newest
// finished deliveries of its webhook only.
func (s *Store) FinishAttempt(ctx context.Context, id int64, a DeliveryAttempt) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var uid string
		err := tx.QueryRowContext(ctx, `
UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?, next_at = ?, updated_at = ?, last_status = ?, last_error = ?
WHERE id = ? RETURNING webhook_uid`, a.State, a.NextAt.UnixMicro(), s.micros(), a.Status, a.Error, id).Scan(&uid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // its webhook was deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("record delivery %d: %w", id, err)
		}
		if a.State == DeliveryQueued {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `
DELETE FROM webhook_deliveries WHERE webhook_uid = ? AND state <> ? AND id NOT IN (
	SELECT id FROM webhook_deliveries WHERE webhook_uid = ? AND state <> ? ORDER BY updated_at DESC, id DESC LIMIT ?)`,
			uid, DeliveryQueued, uid, DeliveryQueued, keptDeliveries); err != nil {
			return fmt.Errorf("trim deliveries of %s: %w", uid, err)
		}
		return nil
	})
}

// WebhookDeliveries are webhook uid's deliveries that were attempted,
// newest first (up to limit), and how many are waiting.
func (s *Store) WebhookDeliveries(ctx context.Context, uid string, limit int) ([]Delivery, int64, error) {
	rows, err := s.query(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
WHERE webhook_uid = ? AND attempts > 0 ORDER BY updated_at DESC, id DESC LIMIT ?`, uid, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("deliveries of %s: %w", uid, err)
	}
	recent, err := scanDeliveries(rows)
	if err != nil {
		return nil, 0, err
	}
	var pending int64
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_uid = ? AND state = ?`,
		uid, DeliveryQueued).Scan(&pending); err != nil {
		return nil, 0, fmt.Errorf("pending deliveries of %s: %w", uid, err)
	}
	return recent, pending, nil
}

// DropDeliveries forgets every delivery of webhooks not in keep (deleted
// webhooks), and returns how many went.
func (s *Store) DropDeliveries(ctx context.Context, keep []string) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		q, args := `DELETE FROM webhook_deliveries`, []any{}
		if len(keep) > 0 {
			q += ` WHERE webhook_uid NOT IN (` + placeholders(len(keep)) + `)`
			for _, k := range keep {
				args = append(args, k)
			}
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("drop deliveries: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// QueuedDeliveries counts the deliveries waiting, for the queue-depth
// metric.
func (s *Store) QueuedDeliveries(ctx context.Context) (int64, error) {
	var n int64
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM webhook_deliveries WHERE state = ?`, DeliveryQueued).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count queued deliveries: %w", err)
	}
	return n, nil
}

// PendingByWebhook counts the deliveries waiting, by webhook: the
// dispatcher stops queueing for a webhook whose backlog is full.
func (s *Store) PendingByWebhook(ctx context.Context) (map[string]int64, error) {
	rows, err := s.query(ctx, `SELECT webhook_uid, COUNT(*) FROM webhook_deliveries WHERE state = ? GROUP BY webhook_uid`, DeliveryQueued)
	if err != nil {
		return nil, fmt.Errorf("count pending deliveries: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var uid string
		var n int64
		if err := rows.Scan(&uid, &n); err != nil {
			return nil, fmt.Errorf("count pending deliveries: %w", err)
		}
		out[uid] = n
	}
	return out, rows.Err()
}
