// Package limiter bounds concurrent requests per instance, as the
// reference's registry does with spec.requests: reads (GET, HEAD,
// OPTIONS) and writes (everything else) each run at most maxRunning at
// once; a request that finds every slot taken waits in a queue of at most
// maxInQueue, for at most maxWaitInQueue or until its client leaves, and
// is refused with 429 otherwise.
//
// The limits come from each request's settings snapshot, so a change of
// the Config applies to the next request without losing count of those
// running: the pools outlive the snapshots.
package limiter

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/settings"
)

// Kind names a pool: "read" or "write".
type Kind string

// The two pools.
const (
	Read  Kind = "read"
	Write Kind = "write"
)

// Observer hears the pools' counts change (the metrics' gauges); it is
// called with the pool's lock held, so it must not block.
type Observer interface {
	Running(kind Kind, delta int)
	Queued(kind Kind, delta int)
	Rejected(kind Kind)
}

// Limiter is the middleware.
type Limiter struct {
	reject   RejectFunc
	exempt   func(r *http.Request) bool
	observer Observer

	read, write pool
}

// RejectFunc writes the refusal of a request (the registry's JSON error on
// /v2, a Status on the API).
type RejectFunc func(w http.ResponseWriter, r *http.Request, kind Kind, limits settings.Limits)

// New returns a limiter. exempt names requests that are never limited
// (health probes, long-running watches); observer may be nil.
func New(reject RejectFunc, exempt func(*http.Request) bool, observer Observer) *Limiter {
	l := &Limiter{reject: reject, exempt: exempt, observer: observer}
	l.read.kind, l.write.kind = Read, Write
	l.read.observer, l.write.observer = observer, observer
	return l
}

// Middleware limits next.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.exempt != nil && l.exempt(r) {
			next.ServeHTTP(w, r)
			return
		}
		reqs := settings.From(r.Context()).Requests
		p, limits := &l.write, reqs.Write
		if KindOf(r.Method) == Read {
			p, limits = &l.read, reqs.Read
		}
		if !p.acquire(r.Context(), limits) {
			if l.observer != nil {
				l.observer.Rejected(p.kind)
			}
			l.reject(w, r, p.kind, limits)
			return
		}
		var once sync.Once
		release := func() { once.Do(p.release) }
		defer release()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), detachKey{}, release)))
	})
}

type detachKey struct{}

// Detach gives back the slot the request of ctx holds, once it has done
// the work its slot is for and goes on only to hold its connection: a
// watch that has sent its first list, a followed log. Kubernetes' own
// limiter counts a watch's start, not its life, likewise. Without a slot
// (an exempt request, none taken) it does nothing.
func Detach(ctx context.Context) {
	if release, ok := ctx.Value(detachKey{}).(func()); ok {
		release()
	}
}

// KindOf is the pool a method's requests take.
func KindOf(method string) Kind {
	switch strings.ToUpper(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return Read
	}
	return Write
}

// Running returns how many requests of kind hold a slot (for tests and
// status).
func (l *Limiter) Running(kind Kind) int {
	p := &l.write
	if kind == Read {
		p = &l.read
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// pool is one kind's slots and queue. Waiters are served in arrival
// order; a slot passes directly from the request that frees it to the
// first waiter, so a newcomer cannot overtake the queue.
type pool struct {
	kind     Kind
	observer Observer

	mu      sync.Mutex
	running int
	// max is the newest maxRunning a request brought (0: no limit); a
	// release hands its slot on only while running is below it.
	max     int
	waiters []*waiter
}

type waiter struct {
	ready   chan struct{}
	granted bool
}

func (p *pool) acquire(ctx context.Context, l settings.Limits) bool {
	p.mu.Lock()
	if p.max != l.MaxRunning {
		p.max = l.MaxRunning
		p.grantLocked() // a raised limit frees slots for those waiting
	}
	if l.MaxRunning <= 0 || (p.running < l.MaxRunning && len(p.waiters) == 0) {
		p.running++
		p.mu.Unlock()
		p.observe(1, 0)
		return true
	}
	if len(p.waiters) >= l.MaxInQueue {
		p.mu.Unlock()
		return false
	}
	w := &waiter{ready: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	p.observe(0, 1)

	var expired <-chan time.Time
	if l.MaxWait > 0 {
		t := time.NewTimer(l.MaxWait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
	case <-expired:
	}
	p.mu.Lock()
	if w.granted {
		// The slot arrived as the wait ended: a client still there takes
		// it; one that left gives it back.
		p.mu.Unlock()
		if ctx.Err() != nil {
			p.release()
			return false
		}
		return true
	}
	for i, q := range p.waiters {
		if q == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	p.observe(0, -1)
	return false
}

func (p *pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	p.observe(-1, 0)
	p.grantLocked()
}

// grantLocked gives free slots to waiters, oldest first.
func (p *pool) grantLocked() {
	for len(p.waiters) > 0 && (p.max <= 0 || p.running < p.max) {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.granted = true
		p.running++
		close(w.ready)
		p.observe(1, -1)
	}
}

func (p *pool) observe(running, queued int) {
	if p.observer == nil {
		return
	}
	if running != 0 {
		p.observer.Running(p.kind, running)
	}
	if queued != 0 {
		p.observer.Queued(p.kind, queued)
	}
}
