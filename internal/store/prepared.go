package store

import (
	"context"
	"database/sql"
	"sync"
)

// statements keeps the read queries prepared: SQLite parses and plans a
// query text every time it is run, which cost a manifest GET by tag about
// a third of its time. A query is prepared the first time it runs (on each
// read connection, as database/sql does) and kept; the set of query texts
// is fixed in the code, except the few built with a list of placeholders,
// so past maxStatements the rest run unprepared.
type statements struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

const maxStatements = 256

func (p *statements) get(ctx context.Context, query string) *sql.Stmt {
	p.mu.RLock()
	st, ok := p.m[query]
	p.mu.RUnlock()
	if ok {
		return st
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.m[query]; ok {
		return st
	}
	if len(p.m) >= maxStatements {
		return nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // the query itself will say what is wrong
	}
	if p.m == nil {
		p.m = map[string]*sql.Stmt{}
	}
	p.m[query] = st
	return st
}

func (p *statements) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.m {
		st.Close()
	}
	p.m = nil
}

// query runs a read query, prepared.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.prepared.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.read.QueryContext(ctx, query, args...)
}

// queryRow runs a read query of one row, prepared.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.prepared.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.read.QueryRowContext(ctx, query, args...)
}
