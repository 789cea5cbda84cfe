package storetest

import (
	"context"
	"testing"
	"time"
)

// One holder runs a job at a time: the lease passes on release, or when
// its holder stops renewing it and it expires by the database's clock.
func testJobLeases(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	acquire := func(holder string, ttl time.Duration, want bool) {
		t.Helper()
		got, err := s.AcquireJobLease(ctx, "gc", holder, ttl)
		if err != nil || got != want {
			t.Fatalf("%s acquires gc: %v, %v; want %v", holder, got, err, want)
		}
	}
	acquire("a", time.Minute, true)
	acquire("b", time.Minute, false)
	acquire("a", time.Minute, true) // renewed
	leases, err := s.JobLeases(ctx)
	must(t, err)
	if len(leases) != 1 || leases[0].Holder != "a" || !leases[0].Expires.After(leases[0].Acquired) {
		t.Fatalf("leases = %+v", leases)
	}
	must(t, s.ReleaseJobLease(ctx, "gc", "b")) // not b's: nothing happens
	acquire("b", time.Minute, false)
	must(t, s.ReleaseJobLease(ctx, "gc", "a"))
	acquire("b", 20*time.Millisecond, true)
	acquire("a", time.Minute, false)
	time.Sleep(50 * time.Millisecond) // b stopped renewing
	acquire("a", time.Minute, true)
	acquire("other", time.Minute, false)
	if other, err := s.AcquireJobLease(ctx, "webhooks", "b", time.Minute); err != nil || !other {
		t.Fatalf("b takes another job's lease: %v, %v", other, err)
	}
}
