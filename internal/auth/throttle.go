package auth

import (
	"context"
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
//
// A check in progress holds one of the key's attempts until it ends, so
// parallel guesses cannot all pass before the first failure is counted.
type Throttle struct {
	Limit   int
	Window  time.Duration
	Lockout time.Duration
	// Shared, when set, counts failures with the other instances of a
	// shared store, under Scope: a lockout any of them caused holds on
	// all. This process's count of attempts in flight stays its own.
	Shared SharedFailures
	Scope  string
	// MaxKeys bounds memory under a spray of made-up user names or
	// addresses; 0 means 100000.
	MaxKeys int
	Now     func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	count    int
	inFlight int
	first    time.Time
	strikes  int // lockouts in a row
	until    time.Time
}

// SharedFailures keeps failed logins where instances see them all (the
// store's LoginLockout and friends).
type SharedFailures interface {
	LoginLockout(ctx context.Context, key string) (time.Time, error)
	RecordLoginFailure(ctx context.Context, key string, limit int, window, lockout time.Duration) (time.Time, error)
	ForgetLoginFailures(ctx context.Context, key string) error
}

// sharedTimeout bounds each call to Shared: a store that does not answer
// leaves the decision to this process's count.
const sharedTimeout = 2 * time.Second

func (t *Throttle) sharedKey(key string) string { return t.Scope + ":" + key }

// sharedLockout is how long the other instances' count locks key out.
func (t *Throttle) sharedLockout(key string, now time.Time) time.Duration {
	if t.Shared == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	until, err := t.Shared.LoginLockout(ctx, t.sharedKey(key))
	if err != nil {
		return 0
	}
	return until.Sub(now)
}

// busyRetry is what a caller is told when every attempt a key has left is
// already being checked.
const busyRetry = time.Second

// Acquire reserves an attempt for key. It returns 0 when the attempt may
// go ahead (end it with Fail or Release), or how long to wait.
func (t *Throttle) Acquire(key string) time.Duration {
	if t == nil {
		return 0
	}
	now := t.now()
	if d := t.sharedLockout(key, now); d > 0 {
		return d
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.keys[key]
	if !ok {
		if !t.makeRoom(now) {
			return busyRetry
		}
		if t.keys == nil {
			t.keys = map[string]*failures{}
		}
		f = &failures{first: now}
		t.keys[key] = f
	}
	if d := f.until.Sub(now); d > 0 {
		return d
	}
	if now.Sub(f.first) > t.Window {
		f.count, f.first = 0, now
	}
	if f.count+f.inFlight >= t.Limit {
		return busyRetry
	}
	f.inFlight++
	return 0
}

// Fail ends an acquired attempt as a failure.
func (t *Throttle) Fail(key string) {
	var shared time.Time
	if t != nil && t.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		shared, _ = t.Shared.RecordLoginFailure(ctx, t.sharedKey(key), t.Limit, t.Window, t.Lockout)
		cancel()
	}
	t.end(key, func(f *failures) {
		now := t.now()
		if now.Sub(f.first) > t.Window {
			f.count, f.first = 0, now
		}
		f.count++
		if f.count >= t.Limit {
			f.until = now.Add(t.Lockout << min(f.strikes, 4))
			f.strikes++
			f.count, f.first = 0, now
		}
		if shared.After(f.until) {
			f.until = shared // the other instances' count locked it out
		}
	})
}

// Release ends an acquired attempt that did not fail; with forget, the
// key's failures are forgotten too (a user who got their password right).
func (t *Throttle) Release(key string, forget bool) {
	if forget && t != nil && t.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		_ = t.Shared.ForgetLoginFailures(ctx, t.sharedKey(key))
		cancel()
	}
	t.end(key, func(f *failures) {
		if forget {
			f.count, f.strikes, f.until = 0, 0, time.Time{}
			if f.inFlight == 0 {
				delete(t.keys, key)
			}
		}
	})
}

// end gives back key's attempt in progress and lets then record its
// outcome, under the lock.
func (t *Throttle) end(key string, then func(*failures)) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.keys[key]
	if !ok {
		return
	}
	f.inFlight = max(f.inFlight-1, 0)
	then(f)
}

// makeRoom makes space for one more key once the table is full, by
// dropping keys with nothing left to remember (no lockout, no attempt in
// progress, failures out of the window, or none). It never drops a
// lockout: when only lockouts remain, it reports false and the new key
// must wait.
func (t *Throttle) makeRoom(now time.Time) bool {
	limit := t.MaxKeys
	if limit == 0 {
		limit = 100000
	}
	if len(t.keys) < limit {
		return true
	}
	for k, f := range t.keys {
		if f.inFlight == 0 && !now.Before(f.until) && (f.count == 0 || now.Sub(f.first) > t.Window) {
			delete(t.keys, k)
		}
	}
	if len(t.keys) < limit {
		return true
	}
	// Still full: keys with failures but no lockout are the cheapest to
	// forget.
	for k, f := range t.keys {
		if f.inFlight == 0 && !now.Before(f.until) {
			delete(t.keys, k)
			if len(t.keys) < limit {
				return true
			}
		}
	}
	return len(t.keys) < limit
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}
