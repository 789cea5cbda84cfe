package auth

import (
	"sync"
	"time"
)

// genCache remembers values read from the store while the store's access
// generation stands still and for at most ttl (which bounds staleness
// when another instance made the change). Lookups and fills are what the
// hot path costs instead of SQL queries.
type genCache[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[K]genEntry[V]
}

type genEntry[V any] struct {
	v       V
	gen     int64
	fetched time.Time
}

func (c *genCache[K, V]) get(k K, gen int64, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || e.gen != gen || now.Sub(e.fetched) >= c.ttl {
		var zero V
		return zero, false
	}
	return e.v, true
}

// fetch returns k's value from the cache, or loads it and remembers it.
// The generation is read before load runs, so a change committed during
// the load leaves an entry that is already stale.
func (c *genCache[K, V]) fetch(k K, generation func() int64, load func() (V, error)) (V, error) {
	gen, now := generation(), time.Now()
	if v, ok := c.get(k, gen, now); ok {
		return v, nil
	}
	v, err := load()
	if err == nil {
		c.put(k, v, gen, now)
	}
	return v, err
}

// put stores v read at generation gen (read before the value was).
func (c *genCache[K, V]) put(k K, v V, gen int64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= c.max {
		c.entries = map[K]genEntry[V]{} // simplest bound: start over
	}
	c.entries[k] = genEntry[V]{v, gen, now}
}
