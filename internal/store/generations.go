package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
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
	at   time.Time
}

// memoLife bounds how long a request goes by the generations it read: a
// long one (a watch, a large upload) reads them again after that.
const memoLife = time.Second

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
		return s.genReads.get(ctx, s.readGenerations)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.read || time.Since(m.at) > memoLife {
		m.g, m.read, m.at = s.genReads.get(ctx, s.readGenerations), true, time.Now()
	}
	return m.g
}

// generationReads shares reads of the generations among the requests
// that want them at once: a request waits for a read that began after it
// asked (the one under way when it asks may have begun before a commit it
// must see), and that read answers every request that asked meanwhile.
// Under load that is one query for many requests instead of one each.
type generationReads struct {
	mu      sync.Mutex
	running bool
	// next collects the requests that asked while a read ran.
	next *generationRead
}

type generationRead struct {
	done chan struct{}
	g    generations
}

// readTimeout bounds a read that many requests wait for.
const readTimeout = 5 * time.Second

func (r *generationReads) get(ctx context.Context, read func(context.Context) generations) generations {
	r.mu.Lock()
	if r.running {
		if r.next == nil {
			r.next = &generationRead{done: make(chan struct{})}
		}
		next := r.next
		r.mu.Unlock()
		select {
		case <-next.done:
			return next.g
		case <-ctx.Done():
			return read(ctx) // fails at once: uncacheable
		}
	}
	r.running = true
	r.mu.Unlock()
	g := r.read(read)
	r.handOn(read)
	return g
}

func (r *generationReads) read(read func(context.Context) generations) generations {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	return read(ctx)
}

// handOn starts the read of the requests that asked meanwhile, if any, on
// a goroutine of its own that goes on while more ask; or ends the run.
func (r *generationReads) handOn(read func(context.Context) generations) {
	r.mu.Lock()
	next := r.next
	r.next = nil
	if next == nil {
		r.running = false
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	go func() {
		next.g = r.read(read)
		close(next.done)
		r.handOn(read)
	}()
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
