package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

func TestDeleteProjectAndRepositories(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "alice"}))
	must(t, s.CreateProject(ctx, store.Project{Name: "other", Creator: "bob"}))
	shared := image(t, s, "team/app", "shared")
	must(t, s.PutManifest(ctx, "team/app", shared, []string{"v1"}))
	only := image(t, s, "team/db", "only")
	must(t, s.PutManifest(ctx, "team/db", only, []string{"latest"}))
	// The same manifest in another project must survive.
	must(t, s.LinkBlob(ctx, "other/app", shared.References[0].Digest, 10))
	must(t, s.LinkBlob(ctx, "other/app", shared.References[1].Digest, 20))
	must(t, s.PutManifest(ctx, "other/app", shared, []string{"v1"}))
	// A service account of team, bound in other too, with a token.
	sa := auth.ServiceAccountUser("team", "ci")
	must(t, s.CreateUser(ctx, store.User{Name: sa}))
	must(t, s.AddBinding(ctx, "other", "registry-viewer", "User", sa))
	must(t, s.AddGroupMember(ctx, "robots", sa))
	must(t, s.CreateToken(ctx, store.Token{ID: "t1", SecretHash: []byte("h1"), User: sa, Expires: time.Now().Add(time.Hour)}))
	// team-b's accounts share a prefix with team's only up to the colon.
	other := auth.ServiceAccountUser("team-b", "ci")
	must(t, s.CreateUser(ctx, store.User{Name: other}))

	repos, err := s.DeleteProjectAndRepositories(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(repos, []string{"team/app", "team/db"}) {
		t.Errorf("deleted repositories %v", repos)
	}
	if _, err := s.Project(ctx, "team"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("project after delete: %v", err)
	}
	for _, repo := range []string{"team/app", "team/db"} {
		if ok, err := s.RepositoryExists(ctx, repo); ok || err != nil {
			t.Errorf("%s exists after delete: %v %v", repo, ok, err)
		}
		if _, err := s.BlobSize(ctx, repo, shared.References[0].Digest); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("blob link of %s survived: %v", repo, err)
		}
	}
	if _, err := s.Manifest(ctx, "team/app", "v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("tag of a deleted repository: %v", err)
	}
	if m, err := s.Manifest(ctx, "other/app", "v1"); err != nil || m.Digest != shared.Digest {
		t.Errorf("other project's manifest: %v %v", m.Digest, err)
	}
	if size, err := s.BlobSize(ctx, "other/app", shared.References[1].Digest); err != nil || size != 20 {
		t.Errorf("other project's blob: %d %v", size, err)
	}
	// Recreating the repository must not resurrect the old tags.
	must(t, s.LinkBlob(ctx, "team/db", digest.FromString("x"), 1))
	if tags, _, err := s.Tags(ctx, "team/db", "", 10); err != nil || len(tags) != 0 {
		t.Errorf("tags of a recreated repository: %v %v", tags, err)
	}
	if _, err := s.User(ctx, sa); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("service account survived its project: %v", err)
	}
	if _, err := s.User(ctx, other); err != nil {
		t.Errorf("another project's service account went: %v", err)
	}
	if toks, _ := s.TokensOf(ctx, sa); len(toks) != 0 {
		t.Errorf("tokens of a deleted service account: %+v", toks)
	}
	if g, _ := s.GroupsOf(ctx, sa); len(g) != 0 {
		t.Errorf("groups of a deleted service account: %v", g)
	}
	if b, _ := s.Bindings(ctx, "other"); len(b) != 1 || b[0].Role != "admin" {
		t.Errorf("bindings in other: %+v", b)
	}
	if _, err := s.DeleteProjectAndRepositories(ctx, "team"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestRoleBindings(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	bob, qa := store.Subject{Kind: "User", Name: "bob"}, store.Subject{Kind: "Group", Name: "qa"}
	carol := store.Subject{Kind: "User", Name: "carol"}
	if err := s.UpdateRoleBinding(ctx, "team", "viewers", "registry-viewer", []store.Subject{bob}, ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update of a missing binding: %v", err)
	}
	must(t, s.CreateRoleBinding(ctx, "team", "viewers", "registry-viewer", []store.Subject{bob, qa, bob}))
	if err := s.CreateRoleBinding(ctx, "team", "viewers", "registry-editor", []store.Subject{carol}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	if err := s.CreateRoleBinding(ctx, "team", "view", "view", []store.Subject{{Kind: "Robot", Name: "x"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad kind: %v", err)
	}
	if err := s.UpdateRoleBinding(ctx, "team", "viewers", "registry-editor", []store.Subject{bob}, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("changing a binding's role: %v", err)
	}
	must(t, s.UpdateRoleBinding(ctx, "team", "viewers", "registry-viewer", []store.Subject{carol, qa}, ""))
	// A second binding of the same role, and the role's own binding.
	must(t, s.CreateRoleBinding(ctx, "team", "more-viewers", "registry-viewer", []store.Subject{bob}))
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", "dave"))
	b, err := s.Bindings(ctx, "team")
	if err != nil || len(b) != 3 {
		t.Fatalf("bindings: %+v %v", b, err)
	}
	want := map[string][]string{"more-viewers": {"bob"}, "registry-viewer": {"dave"}, "viewers": {"carol"}}
	for _, x := range b {
		if x.Role != "registry-viewer" || !slices.Equal(x.Users, want[x.Name]) || x.Created.IsZero() {
			t.Errorf("binding %+v, want users %v", x, want[x.Name])
		}
	}
	// A write based on a stale read is refused; one based on the current
	// version goes through.
	v := b[slices.IndexFunc(b, func(x auth.Binding) bool { return x.Name == "viewers" })].Version
	if v == "" || v != store.BindingVersion("registry-viewer", []store.Subject{qa, carol}) {
		t.Fatalf("version of viewers = %q", v)
	}
	must(t, s.UpdateRoleBinding(ctx, "team", "viewers", "registry-viewer", []store.Subject{carol, qa, bob}, v))
	if err := s.UpdateRoleBinding(ctx, "team", "viewers", "registry-viewer", []store.Subject{carol}, v); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("update from a stale read: %v", err)
	}
	must(t, s.UpdateRoleBinding(ctx, "team", "viewers", "registry-viewer", []store.Subject{carol, qa}, store.BindingVersion("registry-viewer", []store.Subject{bob, carol, qa})))
	// Taking the role from bob takes it from every binding that grants it.
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", "bob"))
	must(t, s.RemoveBinding(ctx, "team", "registry-viewer", "User", "bob"))
	if b, _ := s.Bindings(ctx, "team"); len(b) != 2 {
		t.Fatalf("after removing bob everywhere: %+v", b)
	}
	must(t, s.CreateRoleBinding(ctx, "", "registry-viewer", "registry-viewer", []store.Subject{bob}))
	must(t, s.DeleteRoleBinding(ctx, "team", "viewers"))
	must(t, s.DeleteRoleBinding(ctx, "team", "registry-viewer"))
	if err := s.DeleteRoleBinding(ctx, "team", "viewers"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if b, _ := s.Bindings(ctx, "team"); len(b) != 1 || b[0].Project != "" {
		t.Fatalf("bindings after delete: %+v", b)
	}
}

func TestGroups(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	if _, err := s.GroupMembers(ctx, "qa"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("members of a missing group: %v", err)
	}
	if err := s.SetGroupMembers(ctx, "qa", []string{"bob"}, false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update of a missing group: %v", err)
	}
	must(t, s.SetGroupMembers(ctx, "qa", []string{"carol", "bob", "bob"}, true))
	if err := s.SetGroupMembers(ctx, "qa", []string{"dave"}, true); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	if m, err := s.GroupMembers(ctx, "qa"); err != nil || !slices.Equal(m, []string{"bob", "carol"}) {
		t.Fatalf("members = %v %v", m, err)
	}
	must(t, s.SetGroupMembers(ctx, "qa", []string{"dave"}, false))
	must(t, s.AddGroupMember(ctx, "ops", "erin"))
	g, err := s.Groups(ctx)
	if err != nil || len(g) != 2 || !slices.Equal(g["qa"], []string{"dave"}) || !slices.Equal(g["ops"], []string{"erin"}) {
		t.Fatalf("groups = %v %v", g, err)
	}
	if gs, _ := s.GroupsOf(ctx, "bob"); len(gs) != 0 {
		t.Fatalf("bob still in %v", gs)
	}
}

func TestDeleteProjectEndsItsUploads(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "alice"}))
	must(t, s.CreateUpload(ctx, store.Upload{ID: "u-team", Repository: "team/app"}))
	must(t, s.CreateUpload(ctx, store.Upload{ID: "u-teamb", Repository: "team-b/app"}))
	must(t, s.DeleteProject(ctx, "team"))
	if _, err := s.Upload(ctx, "team/app", "u-team"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("upload of the deleted project: %v, want not found", err)
	}
	if _, err := s.Upload(ctx, "team-b/app", "u-teamb"); err != nil {
		t.Errorf("upload of another project: %v", err)
	}
}

// A project re-created under a deleted one's name inherits no grant made
// elsewhere to the old project's service accounts, created or not.
func TestDeleteProjectForgetsGrantsToItsServiceAccounts(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "secret", Creator: "alice"}))
	must(t, s.CreateProject(ctx, store.Project{Name: "ci", Creator: "alice"}))
	must(t, s.AddBinding(ctx, "secret", "system:image-puller", "Group", "system:serviceaccounts:ci"))
	must(t, s.AddBinding(ctx, "secret", "registry-viewer", "User", auth.ServiceAccountUser("ci", "never-created")))
	must(t, s.AddBinding(ctx, "secret", "registry-viewer", "Group", "system:serviceaccounts:ci-other"))
	must(t, s.DeleteProject(ctx, "ci"))
	bindings, err := s.Bindings(ctx, "secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings {
		for _, g := range b.Groups {
			if g == "system:serviceaccounts:ci" {
				t.Errorf("binding to the deleted project's service-account group survived: %+v", b)
			}
		}
		for _, u := range b.Users {
			if u == auth.ServiceAccountUser("ci", "never-created") {
				t.Errorf("binding to a deleted project's service account survived: %+v", b)
			}
		}
	}
	var kept bool
	for _, b := range bindings {
		kept = kept || slices.Contains(b.Groups, "system:serviceaccounts:ci-other")
	}
	if !kept {
		t.Error("a binding of another project's service accounts went too")
	}
}

// Every committed access change moves the generation, however it
// interleaves with other writes.
func TestAccessGenerationCountsConcurrentChanges(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	before := s.AccessGeneration()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.AddBinding(ctx, "p", "registry-viewer", "User", fmt.Sprintf("u%d", i)); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := s.LinkBlob(ctx, "p/app", digest.FromString(fmt.Sprint(i)), 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if moved := s.AccessGeneration() - before; moved != n {
		t.Fatalf("generation moved %d times for %d binding changes", moved, n)
	}
}
