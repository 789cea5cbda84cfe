package auth

import (
	"fmt"
	"sync"
	"time"
)

// ThrottledError refuses a password check because too many failed
// recently for the same user or client; the check was not attempted.
type ThrottledError struct {
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins; retry in %s", e.RetryAfter.Round(time.Second))
}

// Throttle counts failed logins per key (a user name or a client address)
// and locks a key out once Limit failures fall within Window. Each lockout
// in a row doubles the last, up to 16×Lockout; a success resets the key.
type Throttle struct {
	Limit   int
	Window  time.Duration
	Lockout time.Duration
	// MaxKeys bounds memory under a spray of made-up user names; 0 means
	// 100000.
	MaxKeys int
	Now     func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	count   int
	first   time.Time
	strikes int // lockouts in a row
	until   time.Time
}

// Wait returns how long key must wait before the next attempt (0: none).
func (t *Throttle) Wait(key string) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.keys[key]
	if !ok {
		return 0
	}
	if d := f.until.Sub(t.now()); d > 0 {
		return d
	}
	return 0
}

// Fail records a failed attempt for key.
func (t *Throttle) Fail(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.keys == nil {
		t.keys = map[string]*failures{}
	}
	f, ok := t.keys[key]
	if !ok {
		t.makeRoom(now)
		f = &failures{first: now}
		t.keys[key] = f
	}
	if now.Sub(f.first) > t.Window {
		f.count, f.first = 0, now
	}
	f.count++
	if f.count >= t.Limit {
		f.until = now.Add(t.Lockout << min(f.strikes, 4))
		f.strikes++
		f.count, f.first = 0, now
	}
}

// Reset forgets key's failures (after a success).
func (t *Throttle) Reset(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.keys, key)
	t.mu.Unlock()
}

// makeRoom drops keys with nothing left to remember once the table is
// full, and everything if that is not enough: forgetting failures is the
// lesser harm than growing without bound.
func (t *Throttle) makeRoom(now time.Time) {
	limit := t.MaxKeys
	if limit == 0 {
		limit = 100000
	}
	if len(t.keys) < limit {
		return
	}
	for k, f := range t.keys {
		if now.After(f.until) && now.Sub(f.first) > t.Window {
			delete(t.keys, k)
		}
	}
	if len(t.keys) >= limit {
		clear(t.keys)
	}
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}
