package limiter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/settings"
)

type counts struct {
	mu                        sync.Mutex
	running, queued, rejected map[Kind]int
}

func (c *counts) Running(k Kind, d int) { c.mu.Lock(); c.running[k] += d; c.mu.Unlock() }
func (c *counts) Queued(k Kind, d int)  { c.mu.Lock(); c.queued[k] += d; c.mu.Unlock() }
func (c *counts) Rejected(k Kind)       { c.mu.Lock(); c.rejected[k]++; c.mu.Unlock() }

func newCounts() *counts {
	return &counts{running: map[Kind]int{}, queued: map[Kind]int{}, rejected: map[Kind]int{}}
}

// gate is a handler that holds each request until released, counting how
// many run at once.
type gate struct {
	release      chan struct{}
	now, highest atomic.Int64
	entered      chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{}), entered: make(chan struct{}, 1000)} }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := g.now.Add(1)
	for {
		h := g.highest.Load()
		if n <= h || g.highest.CompareAndSwap(h, n) {
			break
		}
	}
	g.entered <- struct{}{}
	<-g.release
	g.now.Add(-1)
	w.WriteHeader(http.StatusNoContent)
}

func rejectWith429(w http.ResponseWriter, _ *http.Request, _ Kind, _ settings.Limits) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, "too many requests", http.StatusTooManyRequests)
}

func serve(t *testing.T, l *Limiter, h http.Handler, s *settings.Settings) *httptest.Server {
	t.Helper()
	holder := settings.NewHolder(s)
	srv := httptest.NewServer(holder.Middleware(l.Middleware(h)))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, ctx context.Context, method, url string) int {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Error(err)
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Under a bounded concurrent load, never more than maxRunning requests
// run at once; those beyond the queue are refused with 429 at once.
func TestNeverMoreThanMaxRunning(t *testing.T) {
	obs := newCounts()
	l := New(rejectWith429, nil, obs)
	g := newGate()
	srv := serve(t, l, g, &settings.Settings{Requests: settings.Requests{Write: settings.Limits{MaxRunning: 3, MaxInQueue: 2}}})

	const clients = 12
	codes := make(chan int, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() { codes <- do(t, context.Background(), "PUT", srv.URL) })
	}
	// Three run, two queue, seven are refused without waiting.
	for range 3 {
		<-g.entered
	}
	deadline := time.After(10 * time.Second)
	refused := 0
	for refused < clients-5 {
		select {
		case c := <-codes:
			if c != http.StatusTooManyRequests {
				t.Fatalf("a request beyond the queue answered %d, want 429", c)
			}
			refused++
		case <-deadline:
			t.Fatalf("only %d requests were refused", refused)
		}
	}
	if got := l.Running(Write); got != 3 {
		t.Errorf("running = %d, want 3", got)
	}
	close(g.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusNoContent {
			t.Errorf("a queued request answered %d, want 204", c)
		}
	}
	if h := g.highest.Load(); h != 3 {
		t.Errorf("at most %d ran at once, want exactly 3", h)
	}
	if obs.rejected[Write] != clients-5 || obs.running[Write] != 0 || obs.queued[Write] != 0 {
		t.Errorf("observer: rejected %d running %d queued %d", obs.rejected[Write], obs.running[Write], obs.queued[Write])
	}
	if l.Running(Read) != 0 || obs.running[Read] != 0 {
		t.Error("writes took read slots")
	}
}

// Reads and writes have their own pools; a read limit does not slow
// writes, and GET, HEAD and OPTIONS are reads.
func TestReadsAndWritesApart(t *testing.T) {
	for m, want := range map[string]Kind{"GET": Read, "head": Read, "OPTIONS": Read, "POST": Write, "PATCH": Write, "DELETE": Write, "PUT": Write} {
		if KindOf(m) != want {
			t.Errorf("%s is a %s", m, KindOf(m))
		}
	}
	l := New(rejectWith429, nil, nil)
	g := newGate()
	srv := serve(t, l, g, &settings.Settings{Requests: settings.Requests{Read: settings.Limits{MaxRunning: 1}}})
	first := make(chan int, 1)
	go func() { first <- do(t, context.Background(), "GET", srv.URL) }()
	<-g.entered
	if c := do(t, context.Background(), "GET", srv.URL); c != http.StatusTooManyRequests {
		t.Errorf("a second read with no queue: %d, want 429", c)
	}
	second := make(chan int, 1)
	go func() { second <- do(t, context.Background(), "POST", srv.URL) }()
	<-g.entered // the write runs beside the read
	close(g.release)
	if c := <-first; c != 204 {
		t.Errorf("first read: %d", c)
	}
	if c := <-second; c != 204 {
		t.Errorf("write: %d", c)
	}
}

// A queued request gives up after maxWaitInQueue, and one whose client
// leaves is taken off the queue, so it does not hold a place.
func TestQueueWaitAndDeparture(t *testing.T) {
	obs := newCounts()
	l := New(rejectWith429, nil, obs)
	g := newGate()
	srv := serve(t, l, g, &settings.Settings{Requests: settings.Requests{Read: settings.Limits{MaxRunning: 1, MaxInQueue: 1, MaxWait: 50 * time.Millisecond}}})
	holder := make(chan int, 1)
	go func() { holder <- do(t, context.Background(), "GET", srv.URL) }()
	<-g.entered
	if c := do(t, context.Background(), "GET", srv.URL); c != http.StatusTooManyRequests {
		t.Errorf("after maxWaitInQueue: %d, want 429", c)
	}
	// A client that leaves while queued.
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan int, 1)
	go func() { left <- do(t, ctx, "GET", srv.URL) }()
	waitFor(t, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.queued[Read] == 1 })
	cancel()
	<-left
	waitFor(t, func() bool { obs.mu.Lock(); defer obs.mu.Unlock(); return obs.queued[Read] == 0 })
	close(g.release)
	if c := <-holder; c != 204 {
		t.Errorf("running request: %d", c)
	}
	waitFor(t, func() bool { return l.Running(Read) == 0 })
}

// A limit raised by a new snapshot lets queued requests run at once; a
// limit of 0 turns limiting off.
func TestLimitChangeAppliesToQueue(t *testing.T) {
	l := New(rejectWith429, nil, nil)
	g := newGate()
	holder := settings.NewHolder(&settings.Settings{Requests: settings.Requests{Write: settings.Limits{MaxRunning: 1, MaxInQueue: 5}}})
	srv := httptest.NewServer(holder.Middleware(l.Middleware(g)))
	defer srv.Close()
	done := make(chan int, 3)
	for range 3 {
		go func() { done <- do(t, context.Background(), "PUT", srv.URL) }()
	}
	<-g.entered
	waitFor(t, func() bool { l.write.mu.Lock(); defer l.write.mu.Unlock(); return len(l.write.waiters) == 2 })
	holder.Store(&settings.Settings{Requests: settings.Requests{Write: settings.Limits{MaxRunning: 0}}})
	// The next request brings the new limit: it runs, and so do those queued.
	go func() { done <- do(t, context.Background(), "PUT", srv.URL) }()
	for range 3 {
		select {
		case <-g.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("queued requests did not run after the limit was lifted")
		}
	}
	close(g.release)
	for range 4 {
		if c := <-done; c != 204 {
			t.Errorf("answered %d", c)
		}
	}
}

func TestExempt(t *testing.T) {
	l := New(rejectWith429, func(r *http.Request) bool { return r.URL.Path == "/healthz" }, nil)
	g := newGate()
	srv := serve(t, l, g, &settings.Settings{Requests: settings.Requests{Read: settings.Limits{MaxRunning: 1}}})
	go do(t, context.Background(), "GET", srv.URL+"/x")
	<-g.entered
	got := make(chan int, 1)
	go func() { got <- do(t, context.Background(), "GET", srv.URL+"/healthz") }()
	<-g.entered // the probe runs though the pool is full
	close(g.release)
	if c := <-got; c != 204 {
		t.Errorf("probe: %d", c)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A request that detaches gives its slot back while it goes on, once
// only: the next request runs beside it, and its end frees nothing more.
func TestDetach(t *testing.T) {
	c := newCounts()
	l := New(rejectWith429, nil, c)
	g := newGate()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			Detach(r.Context())
			Detach(r.Context())
		}
		g.ServeHTTP(w, r)
	})
	srv := serve(t, l, h, &settings.Settings{Requests: settings.Requests{Read: settings.Limits{MaxRunning: 1}}})
	streamDone := make(chan int, 1)
	go func() { streamDone <- do(t, context.Background(), "GET", srv.URL+"/stream") }()
	<-g.entered
	if n := l.Running(Read); n != 0 {
		t.Errorf("running after a detach: %d, want 0", n)
	}
	second := make(chan int, 1)
	go func() { second <- do(t, context.Background(), "GET", srv.URL+"/x") }()
	<-g.entered // runs beside the detached stream
	if code := do(t, context.Background(), "GET", srv.URL+"/y"); code != 429 {
		t.Errorf("a third read while the second holds the slot: %d, want 429", code)
	}
	close(g.release)
	if a, b := <-streamDone, <-second; a != 204 || b != 204 {
		t.Errorf("stream %d, second %d", a, b)
	}
	waitFor(t, func() bool { return l.Running(Read) == 0 })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running[Read] != 0 {
		t.Errorf("the observer counts %d running at the end, want 0 (a slot given back twice?)", c.running[Read])
	}
}
