package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

func testProjects(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "alice"}))
	if err := s.CreateProject(ctx, store.Project{Name: "team"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second CreateProject = %v", err)
	}
	p, err := s.Project(ctx, "team")
	if err != nil || p.Creator != "alice" || p.Created.IsZero() {
		t.Fatalf("Project = %+v, %v", p, err)
	}
	must(t, s.AddBinding(ctx, "team", "admin", "User", "alice"))
	must(t, s.DeleteProject(ctx, "team"))
	if _, err := s.Project(ctx, "team"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Project after delete = %v", err)
	}
	if b, _ := s.Bindings(ctx, "team"); len(b) != 0 {
		t.Fatalf("bindings outlived their project: %+v", b)
	}
}

func testBindingsFeedTheAuthorizer(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team", "other")
	ctx := context.Background()
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", "bob"))
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "Group", "qa"))
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", "bob")) // no-op
	must(t, s.AddBinding(ctx, "", "cluster-admin", "User", "admin"))
	must(t, s.AddBinding(ctx, "other", "registry-editor", "User", "bob"))
	if err := s.AddBinding(ctx, "team", "view", "Robot", "x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("AddBinding with a bad kind = %v", err)
	}
	must(t, s.AddGroupMember(ctx, "qa", "carol"))
	groups, err := s.GroupsOf(ctx, "carol")
	if err != nil || len(groups) != 1 || groups[0] != "qa" {
		t.Fatalf("GroupsOf = %v, %v", groups, err)
	}
	a := auth.NewRBAC(s)
	check := func(u auth.User, verb, project string, want bool) {
		t.Helper()
		got, err := a.Authorize(ctx, u, verb, auth.ImageStreamLayers, project)
		if err != nil || got != want {
			t.Errorf("%s %s in %s = %v, %v; want %v", u.Name, verb, project, got, err, want)
		}
	}
	bob := auth.User{Name: "bob", Groups: []string{auth.GroupAuthenticated}}
	carol := auth.User{Name: "carol", Groups: append([]string{auth.GroupAuthenticated}, groups...)}
	admin := auth.User{Name: "admin"}
	check(bob, "get", "team", true)
	check(bob, "update", "team", false)
	check(bob, "update", "other", true)
	check(carol, "get", "team", true)
	check(carol, "get", "other", false)
	check(admin, "update", "anything", true)
	must(t, s.RemoveBinding(ctx, "team", "registry-viewer", "User", "bob"))
	check(bob, "get", "team", false)
	if err := s.RemoveBinding(ctx, "team", "registry-viewer", "User", "bob"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second RemoveBinding = %v", err)
	}
}

func testTokens(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	secret := sha256.Sum256([]byte("secret"))
	must(t, s.CreateToken(ctx, store.Token{ID: "t1", SecretHash: secret[:], User: "alice", Expires: time.Now().Add(time.Hour)}))
	other := sha256.Sum256([]byte("other"))
	must(t, s.CreateToken(ctx, store.Token{ID: "t2", SecretHash: other[:], User: "alice", Expires: time.Now().Add(time.Hour)}))
	tok, err := s.TokenByHash(ctx, secret[:])
	if err != nil || tok.ID != "t1" || tok.User != "alice" || !tok.Revoked.IsZero() {
		t.Fatalf("TokenByHash = %+v, %v", tok, err)
	}
	wrong := sha256.Sum256([]byte("wrong"))
	if _, err := s.TokenByHash(ctx, wrong[:]); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown token = %v", err)
	}
	must(t, s.RevokeToken(ctx, "t1"))
	if err := s.RevokeToken(ctx, "t1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second revoke = %v", err)
	}
	tok, err = s.TokenByHash(ctx, secret[:])
	if err != nil || tok.Revoked.IsZero() {
		t.Fatalf("revoked token = %+v, %v", tok, err)
	}
	list, err := s.TokensOf(ctx, "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("TokensOf = %d, %v", len(list), err)
	}
}

func testAccessGenerationMovesOnAccessChangesOnly(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	gen := s.AccessGeneration()
	moved := func(what string, want bool) {
		t.Helper()
		now := s.AccessGeneration()
		if (now != gen) != want {
			t.Errorf("%s: generation %d -> %d, want moved=%t", what, gen, now, want)
		}
		gen = now
	}
	if err := s.LinkBlob(ctx, store.DefaultStorage, "p/app", digest.FromString("x"), 1); err != nil {
		t.Fatal(err)
	}
	moved("a blob link", false)
	steps := []struct {
		what string
		do   func() error
	}{
		{"create project", func() error { return s.CreateProject(ctx, store.Project{Name: "p2", Creator: "alice"}) }},
		{"add binding", func() error { return s.AddBinding(ctx, "p2", "registry-viewer", "User", "bob") }},
		{"remove binding", func() error { return s.RemoveBinding(ctx, "p2", "registry-viewer", "User", "bob") }},
		{"add group member", func() error { return s.AddGroupMember(ctx, "qa", "bob") }},
		{"create user", func() error { return s.CreateUser(ctx, store.User{Name: "carol"}) }},
		{"set password", func() error { return s.SetUserPassword(ctx, "carol", "x") }},
		{"create token", func() error {
			return s.CreateToken(ctx, store.Token{ID: "t1", SecretHash: []byte("h"), User: "carol", Expires: time.Now().Add(time.Hour)})
		}},
		{"create cluster role", func() error { _, err := s.CreateObject(ctx, clusterRoleObject("scraper", "get")); return err }},
		{"update cluster role", func() error { _, err := s.UpdateObject(ctx, clusterRoleObject("scraper", "list"), 0); return err }},
		{"delete cluster role", func() error { _, err := s.DeleteObject(ctx, clusterRoleKey("scraper"), 0, ""); return err }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		moved(st.what, st.what != "create token") // a new token changes nothing cached
	}
	if err := s.RevokeToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	moved("revoke token", true)
	if err := s.DeleteProject(ctx, "p2"); err != nil {
		t.Fatal(err)
	}
	moved("delete project", true)
}

func clusterRoleKey(name string) store.ObjectKey {
	return store.ObjectKey{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: name}
}

func clusterRoleObject(name, verb string) store.Object {
	return store.Object{ObjectKey: clusterRoleKey(name), Body: []byte(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",` +
		`"metadata":{"name":"` + name + `"},"rules":[{"apiGroups":["image.openshift.io"],"resources":["registry/metrics"],"verbs":["` + verb + `"]}]}`)}
}

func testClusterRoles(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	if roles, err := s.ClusterRoles(ctx); err != nil || len(roles) != 0 {
		t.Fatalf("ClusterRoles of an empty store = %v, %v", roles, err)
	}
	for _, name := range []string{"scraper", "other"} {
		if _, err := s.CreateObject(ctx, clusterRoleObject(name, "get")); err != nil {
			t.Fatal(err)
		}
	}
	roles, err := s.ClusterRoles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Rule{APIGroups: []string{"image.openshift.io"}, Resources: []string{"registry/metrics"}, Verbs: []string{"get"}}
	if r := roles["scraper"].Rules; len(roles) != 2 || len(r) != 1 || !slices.Equal(r[0].Verbs, want.Verbs) ||
		!slices.Equal(r[0].Resources, want.Resources) || !slices.Equal(r[0].APIGroups, want.APIGroups) {
		t.Fatalf("ClusterRoles = %+v", roles)
	}
}

// AccessChanged wakes a waiter at each access change, inside a
// transaction or not, and by then the generation has moved; other
// commits leave it waiting.
func testAccessChangedWakesAfterTheGenerationMoved(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	must(t, s.CreateToken(ctx, store.Token{ID: "t1", SecretHash: []byte("h"), User: "alice", Expires: time.Now().Add(time.Hour)}))
	steps := []struct {
		what   string
		access bool
		do     func() error
	}{
		{"a blob link", false, func() error { return s.LinkBlob(ctx, store.DefaultStorage, "p/app", digest.FromString("x"), 1) }},
		{"add binding", true, func() error { return s.AddBinding(ctx, "p", "registry-viewer", "User", "bob") }},
		{"revoke token", true, func() error { return s.RevokeToken(ctx, "t1") }},
		{"set password", true, func() error { return s.SetUserPassword(ctx, "admin", "x") }},
	}
	must(t, s.CreateUser(ctx, store.User{Name: "admin"}))
	must(t, s.CreateProject(ctx, store.Project{Name: "p", Creator: "alice"}))
	for _, st := range steps {
		woken := s.AccessChanged()
		gen := s.AccessGeneration()
		must(t, st.do())
		select {
		case <-woken:
			if !st.access {
				t.Errorf("%s woke the access waiter", st.what)
			} else if s.AccessGeneration() == gen {
				t.Errorf("%s woke the access waiter before the generation moved", st.what)
			}
		default:
			if st.access {
				t.Errorf("%s did not wake the access waiter", st.what)
			}
		}
	}
}
