package auth

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRequestDecision is what access control adds to every /v2
// request once caches are warm: authenticate the credentials and decide
// a pull. Compare with the ~50µs a manifest GET costs end to end
// (BenchmarkAuthOverhead in internal/server).
func BenchmarkRequestDecision(b *testing.B) {
	tokens := memTokens{}
	secret, _, err := (&Issuer{Tokens: memWriter{tokens}}).Issue(context.Background(), "alice", time.Hour, "bench")
	if err != nil {
		b.Fatal(err)
	}
	gen := func(context.Context) int64 { return 1 }
	bindings := staticBindings{
		{Role: "registry-viewer", Project: "team", Users: []string{"alice"}},
		{Role: "self-provisioner", Groups: []string{GroupPeople}},
		{Role: "cluster-admin", Users: []string{"admin"}},
	}
	rbac := &RBAC{Roles: BuiltinRoles, Bindings: bindings, Generation: gen}
	for _, c := range []struct {
		name string
		a    *Authenticator
		auth string
	}{
		{"bearer", &Authenticator{Tokens: tokens, Groups: memGroups{}, Generation: gen}, "Bearer " + secret},
		{"basic-password", &Authenticator{Tokens: tokens, Groups: memGroups{}, Generation: gen,
			Identity: &countingProvider{user: "alice", password: "pw"}}, basic("alice", "pw")},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := newRequest(c.auth)
			b.ReportAllocs()
			for b.Loop() {
				id, err := c.a.Request(req)
				if err != nil {
					b.Fatal(err)
				}
				ok, err := rbac.Authorize(req.Context(), id.User, "get", ImageStreamLayers, "team")
				if err != nil || !ok {
					b.Fatalf("decision %v %v", ok, err)
				}
			}
		})
	}
}
