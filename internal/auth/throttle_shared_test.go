package auth_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/store"
)

// Two instances' throttles on one store: failures spread over both lock
// the user out on both, and a success on either forgets them.
func TestThrottleSharedAcrossInstances(t *testing.T) {
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := &auth.Throttle{Limit: 4, Window: time.Minute, Lockout: time.Minute, Shared: s, Scope: "user"}
	b := &auth.Throttle{Limit: 4, Window: time.Minute, Lockout: time.Minute, Shared: s, Scope: "user"}
	clients := &auth.Throttle{Limit: 4, Window: time.Minute, Lockout: time.Minute, Shared: s, Scope: "client"}
	for i, th := range []*auth.Throttle{a, b, a, b} {
		if wait := th.Acquire("alice"); wait > 0 {
			t.Fatalf("attempt %d refused for %v before the limit", i+1, wait)
		}
		th.Fail("alice")
	}
	for name, th := range map[string]*auth.Throttle{"a": a, "b": b} {
		if wait := th.Acquire("alice"); wait <= 0 {
			t.Fatalf("instance %s lets alice try again after four failures spread over two instances", name)
		}
	}
	if wait := clients.Acquire("alice"); wait > 0 {
		t.Fatalf("a client address named alice is locked out by the user's failures (%v)", wait)
	}
	clients.Release("alice", false)

	c := &auth.Throttle{Limit: 4, Window: time.Minute, Lockout: time.Minute, Shared: s, Scope: "user"}
	if wait := c.Acquire("bob"); wait > 0 {
		t.Fatal(wait)
	}
	c.Fail("bob")
	c.Acquire("bob")
	c.Release("bob", true) // logged in: forgotten everywhere
	if until, err := s.LoginLockout(context.Background(), "user:bob"); err != nil || !until.IsZero() {
		t.Fatalf("bob after logging in: %v, %v", until, err)
	}
}
