package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// The caches (manifests, blob locations, and the authorizer's tokens,
// groups, bindings and roles) are valid while the generations of what
// they hold stand still. In one process those are counters in memory,
// moved after each commit. Where instances share the store, a commit on
// another instance must move them too, before any request that follows
// it: there they are rows of sequences ('access', 'tags', 'content',
// 'moves'), moved inside the committing transaction, and read once per
// request (WithGenerationMemo) - one indexed read where the caches save
// several.

// generations are the counters the caches go by.
type generations struct{ access, tags, content, moves int64 }

// countEffects moves a shared store's counters by what tx changed, right
// before it commits (after the event sequence: the lock order).
func (s *Store) countEffects(ctx context.Context, tx *sql.Tx, e *effects) error {
	if !s.dialect.shared {
		return nil
	}
	var names []any
	if e.access {
		names = append(names, "access")
	}
	if e.tags || e.removals {
		names = append(names, "tags")
	}
	if e.removals {
		names = append(names, "content")
	}
	if e.moves {
		names = append(names, "moves")
	}
	if len(names) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sequences SET value = value + 1 WHERE name IN (`+placeholders(len(names))+`)`, names...); err != nil {
		return fmt.Errorf("count the commit's changes: %w", err)
	}
	return nil
}

type memoKey struct{}

// generationMemo holds the generations one request read.
type generationMemo struct {
	mu   sync.Mutex
	g    generations
	read bool
}

// WithGenerationMemo returns ctx for one request: a shared store reads
// the generations once for it, however many caches it consults.
func WithGenerationMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, &generationMemo{})
}

// forgetGenerations makes the request of ctx read the generations anew:
// it committed a change, and must not read what it changed from a cache.
func forgetGenerations(ctx context.Context) {
	if m, ok := ctx.Value(memoKey{}).(*generationMemo); ok {
		m.mu.Lock()
		m.read = false
		m.mu.Unlock()
	}
}

// sharedGenerations reads the generations of a shared store, once per
// request. If they cannot be read, they are ones no cache entry has.
func (s *Store) sharedGenerations(ctx context.Context) generations {
	m, ok := ctx.Value(memoKey{}).(*generationMemo)
	if !ok {
		return s.readGenerations(ctx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.read {
		m.g, m.read = s.readGenerations(ctx), true
	}
	return m.g
}

func (s *Store) readGenerations(ctx context.Context) generations {
	uncacheable := generations{s.uncacheableGeneration(), s.uncacheableGeneration(), s.uncacheableGeneration(), s.uncacheableGeneration()}
	rows, err := s.query(ctx, `SELECT name, value FROM sequences WHERE name IN ('access', 'tags', 'content', 'moves')`)
	if err != nil {
		return uncacheable
	}
	defer rows.Close()
	var g generations
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return uncacheable
		}
		switch name {
		case "access":
			g.access = v
		case "tags":
			g.tags = v
		case "content":
			g.content = v
		case "moves":
			g.moves = v
		}
	}
	if rows.Err() != nil {
		return uncacheable
	}
	return g
}
