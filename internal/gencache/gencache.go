// Package gencache remembers values read from the metadata store while a
// generation counter of the store stands still (it moves after every commit
// that could change them) and for at most a TTL, which bounds staleness
// when another instance made the change. A lookup is what the hot path
// costs instead of a SQL query.
package gencache

import (
	"sync"
	"time"
)

// Cache maps keys to values read at a generation. The zero value is not
// usable: set TTL and Max.
type Cache[K comparable, V any] struct {
	// TTL bounds the life of an entry; Max the number of entries (beyond,
	// the cache starts over, the simplest bound).
	TTL time.Duration
	Max int
	// Keep, when set, says which values are worth their memory; others
	// are loaded every time.
	Keep func(V) bool

	mu      sync.RWMutex
	entries map[K]entry[V]
}

type entry[V any] struct {
	v       V
	gen     int64
	fetched time.Time
}

// Fetch returns k's value from the cache, or loads it and remembers it.
// The generation is read before load runs, so a change committed during
// the load leaves an entry that is already stale. A load that fails is not
// remembered.
func (c *Cache[K, V]) Fetch(k K, generation func() int64, load func() (V, error)) (V, error) {
	gen, now := generation(), time.Now()
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if ok && e.gen == gen && now.Sub(e.fetched) < c.TTL {
		return e.v, nil
	}
	v, err := load()
	if err == nil && (c.Keep == nil || c.Keep(v)) {
		c.mu.Lock()
		if c.entries == nil || len(c.entries) >= c.Max {
			c.entries = map[K]entry[V]{}
		}
		c.entries[k] = entry[V]{v, gen, now}
		c.mu.Unlock()
	}
	return v, err
}
