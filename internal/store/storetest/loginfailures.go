package storetest

import (
	"context"
	"testing"
	"time"
)

// Failed logins lock a key out after limit within the window, each
// lockout in a row longer; a success forgets them.
func testLoginFailures(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	fail := func(key string) time.Time {
		t.Helper()
		until, err := s.RecordLoginFailure(ctx, key, 3, time.Minute, time.Second)
		must(t, err)
		return until
	}
	for i := range 2 {
		if until := fail("user:alice"); !until.IsZero() {
			t.Fatalf("failure %d locked alice out until %v", i+1, until)
		}
	}
	first := fail("user:alice")
	if d := time.Until(first); d <= 0 || d > time.Second {
		t.Fatalf("the third failure locks out for %v, want up to 1s", d)
	}
	if until, err := s.LoginLockout(ctx, "user:alice"); err != nil || !until.Equal(first) {
		t.Fatalf("lockout = %v, %v; want %v", until, err, first)
	}
	if until, err := s.LoginLockout(ctx, "client:10.0.0.1"); err != nil || !until.IsZero() {
		t.Fatalf("another key's lockout = %v, %v", until, err)
	}
	fail("user:alice")
	fail("user:alice")
	second := fail("user:alice")
	if d := time.Until(second); d <= time.Second || d > 2*time.Second {
		t.Fatalf("the second lockout in a row is %v, want twice the first", d)
	}
	must(t, s.ForgetLoginFailures(ctx, "user:alice"))
	if until, err := s.LoginLockout(ctx, "user:alice"); err != nil || !until.IsZero() {
		t.Fatalf("after a success, lockout = %v, %v", until, err)
	}
	fail("user:bob")
	if n, err := s.DeleteStaleLoginFailures(ctx, time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("forgot %d stale keys (%v), want bob's", n, err)
	}
}
