package lease_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/lease"
	"github.com/berth-registry/berth/internal/store"
)

// failing is a store an instance can no longer reach.
type failing struct {
	lease.Leases
	down atomic.Bool
}

func (f *failing) AcquireJobLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if f.down.Load() {
		return false, errors.New("store unreachable")
	}
	return f.Leases.AcquireJobLease(ctx, name, holder, ttl)
}

// One instance runs the job at a time; when the holder stops, or can no
// longer reach the store, the other takes over.
func TestOneRunnerAtATime(t *testing.T) {
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const ttl = 300 * time.Millisecond
	var mu sync.Mutex
	running := map[string]bool{}
	var runs []string
	job := func(who string) func(context.Context) {
		return func(ctx context.Context) {
			mu.Lock()
			for other := range running {
				t.Errorf("%s started the job while %s runs it", who, other)
			}
			running[who] = true
			runs = append(runs, who)
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			delete(running, who)
			mu.Unlock()
		}
	}
	runner := func(who string, leases lease.Leases) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		r := &lease.Runner{Leases: leases, Holder: who, TTL: ttl}
		go func() { defer close(done); r.Run(ctx, "job", job(who)) }()
		return func() { cancel(); <-done }
	}
	who := func() string {
		mu.Lock()
		defer mu.Unlock()
		for w := range running {
			return w
		}
		return ""
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * ttl)
		for who() != want {
			if time.Now().After(deadline) {
				t.Fatalf("the job runs on %q, want %q", who(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	a := &failing{Leases: s}
	stopA := runner("a", a)
	waitFor("a")
	stopB := runner("b", s)
	time.Sleep(2 * ttl) // b waits while a renews
	if got := who(); got != "a" {
		t.Fatalf("the job moved to %q while a renewed its lease", got)
	}
	a.down.Store(true) // a cannot renew: it stops, b takes over after the lease expires
	waitFor("b")
	a.down.Store(false)
	stopA()
	stopB() // releases the lease
	stopC := runner("c", s)
	defer stopC()
	waitFor("c")
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 3 || runs[0] != "a" || runs[1] != "b" || runs[2] != "c" {
		t.Fatalf("runs = %v, want a, b, c", runs)
	}
}

// stuck grants the lease once, then never answers in time (a store that
// stopped answering, a call that ignores its deadline).
type stuck struct{ calls atomic.Int64 }

func (s *stuck) AcquireJobLease(context.Context, string, string, time.Duration) (bool, error) {
	if s.calls.Add(1) == 1 {
		return true, nil
	}
	time.Sleep(5 * time.Second)
	return false, errors.New("timed out")
}

func (s *stuck) ReleaseJobLease(context.Context, string, string) error { return nil }

// A renewal that hangs does not keep the job running: it stops before the
// lease expires, when another instance may take it.
func TestJobStopsWhileARenewalHangs(t *testing.T) {
	const ttl = time.Second
	r := &lease.Runner{Leases: &stuck{}, Holder: "a", TTL: ttl}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started, stopped := make(chan time.Time, 1), make(chan time.Time, 1)
	go r.Run(ctx, "job", func(jctx context.Context) {
		started <- time.Now()
		<-jctx.Done()
		stopped <- time.Now()
	})
	t0 := <-started
	select {
	case t1 := <-stopped:
		if ran := t1.Sub(t0); ran >= ttl {
			t.Fatalf("the job ran %v, past its lease of %v", ran, ttl)
		}
	case <-time.After(10 * ttl):
		t.Fatal("the job went on while its renewal hung")
	}
}
