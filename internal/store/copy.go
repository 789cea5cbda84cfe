package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// copiedTables are the tables Copy carries, parents before children (the
// foreign keys). Left behind: the schema's version (each dialect has its
// own), the heartbeats of the old process's instance and the leases of
// its jobs (both belong to processes, not to the registry).
var copiedTables = []string{
	"repositories", "blobs", "blob_storages", "storages", "manifests", "manifest_references",
	"repository_blobs", "repository_manifests", "tag_events", "tag_heads", "tag_aliases",
	"remote_manifests", "tag_conditions", "uploads", "events", "projects", "users",
	"group_members", "tokens", "settings", "objects", "role_bindings",
	"webhook_cursor", "webhook_deliveries", "image_pulls", "audit_log",
}

// identityColumns are the columns the destination numbers itself, which
// must go on after the numbers copied.
var identityColumns = map[string]string{"repositories": "id", "tag_events": "id", "webhook_deliveries": "id", "audit_log": "id"}

// CopyProgress is told how a copy advances: rows of table done of total.
type CopyProgress func(table string, done, total int64)

// TableCount is a table's rows in the source and the destination after a
// copy.
type TableCount struct {
	Table               string
	Source, Destination int64
}

// CopyTo copies everything s holds into dst, which must be empty (a new
// store: no repository, object or event yet), in one transaction of dst:
// interrupted, it leaves dst as it was. It counts the rows of every table
// on both sides afterwards; a difference is an error. Encrypted Secrets
// are copied as they are: dst's server needs the same keys.
func (s *Store) CopyTo(ctx context.Context, dst *Store, progress CopyProgress) ([]TableCount, error) {
	src, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer src.Rollback()
	totals := map[string]int64{}
	for _, t := range copiedTables {
		if totals[t], err = s.countRows(ctx, src, t); err != nil {
			return nil, err
		}
	}
	// A transaction of its own, not the writer's: a large installation
	// takes longer than a write may.
	tx, err := dst.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("copy: %w", err)
	}
	defer tx.Rollback()
	err = func() error {
		// Nothing else may write meanwhile (a server starting on the
		// destination would): under the migration lock, and checked
		// empty again inside the transaction.
		if dst.dialect.advisoryLock != "" {
			if _, err := tx.ExecContext(ctx, dst.dialect.advisoryLock, "berth-migrate"); err != nil {
				return fmt.Errorf("lock the destination: %w", err)
			}
		}
		for _, t := range []string{"events", "repositories", "objects", "users"} {
			n, err := dst.countRows(ctx, tx, t)
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("the destination store is not empty (%d rows in %s): copy into a new one", n, t)
			}
		}
		for _, t := range copiedTables {
			if err := copyTable(ctx, src, tx, t, totals[t], progress); err != nil {
				return err
			}
			if col, ok := identityColumns[t]; ok && dst.dialect.name == "postgres" {
				if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('`+t+`', '`+col+`'), COALESCE((SELECT MAX(`+col+`) FROM `+t+`), 0) + 1, false)`); err != nil {
					return fmt.Errorf("number %s after the copied rows: %w", t, err)
				}
			}
		}
		// The sequences go on from the source's numbers.
		rows, err := src.QueryContext(ctx, `SELECT name, value FROM sequences`)
		if err != nil {
			return fmt.Errorf("read sequences: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var v int64
			if err := rows.Scan(&name, &v); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `
INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, v); err != nil {
				return fmt.Errorf("copy sequence %s: %w", name, err)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tx.Commit()
	}()
	if err != nil {
		return nil, dst.dialect.mapError(err)
	}
	var counts []TableCount
	var differ []string
	for _, t := range copiedTables {
		n, err := dst.countRows(ctx, dst.read, t)
		if err != nil {
			return nil, err
		}
		counts = append(counts, TableCount{Table: t, Source: totals[t], Destination: n})
		if n != totals[t] {
			differ = append(differ, fmt.Sprintf("%s: %d rows copied of %d", t, n, totals[t]))
		}
	}
	if len(differ) > 0 {
		return counts, fmt.Errorf("the copy does not match its source: %s", strings.Join(differ, "; "))
	}
	return counts, nil
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) countRows(ctx context.Context, q rowQuerier, table string) (int64, error) {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

// copyBatch is how many rows one INSERT carries (PostgreSQL takes at most
// 65535 parameters in a statement).
const copyBatch = 200

func copyTable(ctx context.Context, src *sql.Tx, dst *sql.Tx, table string, total int64, progress CopyProgress) error {
	rows, err := src.QueryContext(ctx, `SELECT * FROM `+table)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	row := "(" + placeholders(len(cols)) + ")"
	insert := `INSERT INTO ` + table + ` (` + strings.Join(cols, ", ") + `) VALUES `
	var batch []any
	var done int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := len(batch) / len(cols)
		if _, err := dst.ExecContext(ctx, insert+strings.TrimSuffix(strings.Repeat(row+", ", n), ", "), batch...); err != nil {
			return fmt.Errorf("write %s: %w", table, err)
		}
		done += int64(n)
		batch = batch[:0]
		if progress != nil {
			progress(table, done, total)
		}
		return nil
	}
	if progress != nil {
		progress(table, 0, total)
	}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		batch = append(batch, vals...)
		if len(batch) >= copyBatch*len(cols) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	return flush()
}
