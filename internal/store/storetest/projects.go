package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

func testDeleteProjectAndRepositories(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "alice"}))
	must(t, s.CreateProject(ctx, store.Project{Name: "other", Creator: "bob"}))
	shared := Image(t, s, "team/app", "shared")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", shared, []string{"v1"}))
	only := Image(t, s, "team/db", "only")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "team/db", only, []string{"latest"}))
	// The same manifest in another project must survive.
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "other/app", shared.References[0].Digest, 10))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "other/app", shared.References[1].Digest, 20))
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "other/app", shared, []string{"v1"}))
	// A service account of team, bound in other too, with a token.
	sa := auth.ServiceAccountUser("team", "ci")
	must(t, s.CreateUser(ctx, store.User{Name: sa}))
	must(t, s.AddBinding(ctx, "other", "registry-viewer", "User", sa))
	must(t, s.AddGroupMember(ctx, "robots", sa))
	must(t, s.CreateToken(ctx, store.Token{ID: "t1", SecretHash: []byte("h1"), User: sa, Expires: time.Now().Add(time.Hour)}))
	// team-b's accounts share a prefix with team's only up to the colon.
	other := auth.ServiceAccountUser("team-b", "ci")
	must(t, s.CreateProject(ctx, store.Project{Name: "team-b"}))
	must(t, s.CreateUser(ctx, store.User{Name: other}))

	gone, err := s.DeleteProjectAndRepositories(ctx, "team")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone.Repositories, []string{"team/app", "team/db"}) {
		t.Errorf("deleted repositories %v", gone.Repositories)
	}
	if _, err := s.Project(ctx, "team"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("project after delete: %v", err)
	}
	for _, repo := range []string{"team/app", "team/db"} {
		if ok, err := s.RepositoryExists(ctx, repo); ok || err != nil {
			t.Errorf("%s exists after delete: %v %v", repo, ok, err)
		}
		if _, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), repo, shared.References[0].Digest); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("blob link of %s survived: %v", repo, err)
		}
	}
	if _, err := s.Manifest(ctx, "team/app", "v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("tag of a deleted repository: %v", err)
	}
	if m, err := s.Manifest(ctx, "other/app", "v1"); err != nil || m.Digest != shared.Digest {
		t.Errorf("other project's manifest: %v %v", m.Digest, err)
	}
	if size, err := s.BlobSize(ctx, store.Only(store.DefaultStorage), "other/app", shared.References[1].Digest); err != nil || size != 20 {
		t.Errorf("other project's blob: %d %v", size, err)
	}
	// Recreating the repository must not resurrect the old tags.
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "team/db", digest.FromString("x"), 1))
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

// Bindings are objects; the store keeps their index (what the authorizer
// reads) in step with every write: by the API's object writes, by its own
// grants, and by removals of a subject everywhere.
func testRoleBindings(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "bob"}))
	rb := func(name, role string, subjects ...string) store.Object {
		body := fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":%q,"namespace":"team","labels":{"keep":"me"}},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":%q},"subjects":[%s]}`,
			name, role, strings.Join(subjects, ","))
		return store.Object{ObjectKey: store.BindingKey("team", name), UID: name + "-uid", Body: []byte(body)}
	}
	const alice, qa, ci = `{"kind":"User","name":"alice"}`, `{"kind":"Group","name":"qa"}`, `{"kind":"ServiceAccount","name":"ci"}`
	viewers, err := s.CreateObject(ctx, rb("viewers", "registry-viewer", alice, qa, ci))
	must(t, err)
	got := func() map[string]string {
		t.Helper()
		b, err := s.Bindings(ctx, "team")
		must(t, err)
		out := map[string]string{}
		for _, x := range b {
			out[x.Name] = x.Role + " " + strings.Join(x.Users, ",") + " " + strings.Join(x.Groups, ",")
		}
		return out
	}
	if g := got(); g["viewers"] != "registry-viewer alice,system:serviceaccount:team:ci qa" || g["admin"] != "admin bob " {
		t.Fatalf("index after create: %v", g)
	}
	// An update re-indexes; AddBinding adds to the binding named after the
	// role (creating it), never to another binding.
	viewers.Body = rb("viewers", "registry-viewer", qa).Body
	_, err = s.UpdateObject(ctx, viewers, viewers.ResourceVersion)
	must(t, err)
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", "carol"))
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", "carol"))
	if g := got(); g["viewers"] != "registry-viewer  qa" || g["registry-viewer"] != "registry-viewer carol " {
		t.Fatalf("index after update and AddBinding: %v", g)
	}
	if err := s.AddBinding(ctx, "team", "viewers", "User", "x"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("AddBinding into a binding of another role: %v", err)
	}
	// RemoveBinding takes the subject out of every binding of the role,
	// keeping the objects' other fields, and deletes emptied bindings.
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "Group", "qa"))
	must(t, s.RemoveBinding(ctx, "team", "registry-viewer", "Group", "qa"))
	if g := got(); g["viewers"] != "" || g["registry-viewer"] != "registry-viewer carol " {
		t.Fatalf("index after RemoveBinding: %v", g)
	}
	if _, err := s.GetObject(ctx, store.BindingKey("team", "viewers")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the emptied binding is still there: %v", err)
	}
	if err := s.RemoveBinding(ctx, "team", "registry-viewer", "Group", "qa"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second RemoveBinding: %v", err)
	}
	both, err := s.CreateObject(ctx, rb("both", "registry-editor", alice, `{"kind":"User","name":"dave"}`))
	must(t, err)
	must(t, s.CreateUser(ctx, store.User{Name: "dave"}))
	must(t, s.DeleteUser(ctx, "dave"))
	o, err := s.GetObject(ctx, both.ObjectKey)
	must(t, err)
	if strings.Contains(string(o.Body), "dave") || !strings.Contains(string(o.Body), `"keep":"me"`) || o.ResourceVersion == both.ResourceVersion {
		t.Fatalf("after deleting dave: %s", o.Body)
	}
	// Deleting the object removes its grants.
	_, err = s.DeleteObject(ctx, both.ObjectKey, 0, "")
	must(t, err)
	if g := got(); g["both"] != "" {
		t.Fatalf("index after delete: %v", g)
	}
	// A subject kind the index cannot hold is refused, and nothing is kept.
	if _, err := s.CreateObject(ctx, rb("robots", "view", `{"kind":"Robot","name":"x"}`)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad subject kind: %v", err)
	}
	if _, err := s.GetObject(ctx, store.BindingKey("team", "robots")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the refused binding was stored: %v", err)
	}
}

func testGroups(t *testing.T, open Opener) {
	s := open(t)
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

// Groups are objects; group_members is their index, kept in step by every
// write, and deleting a user edits the groups that name it.
// A service account is an object whose user is its index: deleting the
// object takes the user, its tokens and its grants.
func testServiceAccountObjects(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	user := auth.ServiceAccountUser("team", "ci")
	body := `{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"ci","namespace":"team","labels":{"a":"b"}}}`
	_, err := s.CreateObject(ctx, store.Object{ObjectKey: store.ServiceAccountKey("team", "ci"), UID: "u", Body: []byte(body)})
	must(t, err)
	if _, err := s.User(ctx, user); err != nil {
		t.Fatalf("the account's user: %v", err)
	}
	must(t, s.CreateToken(ctx, store.Token{ID: "t1", SecretHash: []byte("h"), User: user, Expires: time.Now().Add(time.Hour)}))
	must(t, s.AddBinding(ctx, "team", "registry-viewer", "User", user))
	if err := s.CreateUser(ctx, store.User{Name: user}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("creating the user again: %v", err)
	}
	_, err = s.DeleteObject(ctx, store.ServiceAccountKey("team", "ci"), 0, "")
	must(t, err)
	if _, err := s.User(ctx, user); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the user after the object went: %v", err)
	}
	if _, err := s.TokenByHash(ctx, []byte("h")); err == nil {
		t.Error("the account's token survived")
	}
	if b, _ := s.Bindings(ctx, "team"); len(b) != 0 {
		t.Errorf("the account's grant survived: %+v", b)
	} // A token requested as the account went (the handler looked before the
	// deletion) is not written: it would outlive the account, and pass to
	// an account or project of the same name later.
	err = s.CreateToken(ctx, store.Token{ID: "t2", SecretHash: []byte("h2"), User: user, Expires: time.Now().Add(time.Hour)})
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a token for the deleted account: %v", err)
	}
	if _, err := s.TokenByHash(ctx, []byte("h2")); err == nil {
		t.Error("the token for the deleted account was stored")
	}
}

func testGroupObjectsAndTheirIndex(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateUser(ctx, store.User{Name: "dave"}))
	body := `{"apiVersion":"user.openshift.io/v1","kind":"Group","metadata":{"name":"ops","labels":{"keep":"me"}},"users":["dave","erin"]}`
	created, err := s.CreateObject(ctx, store.Object{ObjectKey: store.GroupKey("ops"), UID: "u1", Body: []byte(body)})
	must(t, err)
	if g, _ := s.GroupsOf(ctx, "erin"); !slices.Equal(g, []string{"ops"}) {
		t.Fatalf("erin's groups after create: %v", g)
	}
	gen := s.AccessGeneration()
	must(t, s.DeleteUser(ctx, "dave"))
	if s.AccessGeneration() == gen {
		t.Error("deleting a group member did not move the access generation")
	}
	o, err := s.GetObject(ctx, store.GroupKey("ops"))
	must(t, err)
	if strings.Contains(string(o.Body), "dave") || !strings.Contains(string(o.Body), `"keep":"me"`) || o.ResourceVersion == created.ResourceVersion {
		t.Fatalf("ops after deleting dave: %s", o.Body)
	}
	if g, _ := s.GroupsOf(ctx, "dave"); len(g) != 0 {
		t.Fatalf("dave's groups: %v", g)
	}
	_, err = s.DeleteObject(ctx, o.ObjectKey, 0, "")
	must(t, err)
	if g, _ := s.GroupsOf(ctx, "erin"); len(g) != 0 {
		t.Fatalf("erin's groups after the group went: %v", g)
	}
}

func testDeleteProjectEndsItsUploads(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "alice"}))
	must(t, s.CreateUpload(ctx, store.Upload{ID: "u-team", Repository: "team/app", Storage: store.DefaultStorage}, store.UploadLimits{}))
	must(t, s.CreateUpload(ctx, store.Upload{ID: "u-teamb", Repository: "team-b/app", Storage: store.DefaultStorage}, store.UploadLimits{}))
	must(t, s.AdvanceUpload(ctx, store.Upload{ID: "u-team", Size: 5, DriverState: []byte("part 1")}, 0, false))
	gone, err := s.DeleteProjectAndRepositories(ctx, "team")
	must(t, err)
	if len(gone.Uploads) != 1 || gone.Uploads[0].ID != "u-team" || gone.Uploads[0].Storage != store.DefaultStorage || string(gone.Uploads[0].DriverState) != "part 1" {
		t.Errorf("ended uploads %+v, want u-team with its storage and driver state (the caller discards their bytes)", gone.Uploads)
	}
	if _, err := s.Upload(ctx, "team/app", "u-team"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("upload of the deleted project: %v, want not found", err)
	}
	if _, err := s.Upload(ctx, "team-b/app", "u-teamb"); err != nil {
		t.Errorf("upload of another project: %v", err)
	}
	// A commit of the ended session (its last chunk was still arriving)
	// links nothing: the repository does not come back.
	err = s.CommitUpload(ctx, "u-team", "team/app", store.Unclaimed(digest.FromString("late"), 4))
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("commit of an ended session = %v, want not found", err)
	}
	if ok, err := s.RepositoryExists(ctx, "team/app"); ok || err != nil {
		t.Errorf("the deleted project's repository came back: %v, %v", ok, err)
	}
	// Whatever did come back (a monolithic upload that ended late) is not
	// inherited by the next project of the name.
	must(t, s.LinkBlob(ctx, store.DefaultStorage, "team/app", digest.FromString("late"), 4))
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "bob"}))
	if ok, err := s.RepositoryExists(ctx, "team/app"); ok || err != nil {
		t.Errorf("a new project inherited a leftover repository: %v, %v", ok, err)
	}
}

// A project re-created under a deleted one's name inherits no grant made
// elsewhere to the old project's service accounts, created or not.
func testDeleteProjectForgetsGrantsToItsServiceAccounts(t *testing.T, open Opener) {
	s := open(t)
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
// interleaves with other writes: once a change has returned, the
// generation differs from any read before it began (so a cache filled
// before is not used after). Changes committed together may share a move.
func testAccessGenerationCountsConcurrentChanges(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p")
	ctx := context.Background()
	start := s.AccessGeneration()
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			before := s.AccessGeneration()
			if err := s.AddBinding(ctx, "p", "registry-viewer", "User", fmt.Sprintf("u%d", i)); err != nil {
				t.Error(err)
			}
			if after := s.AccessGeneration(); after == before {
				t.Errorf("binding change %d returned with the generation still at %d", i, after)
			}
		})
		wg.Go(func() {
			if err := s.LinkBlob(ctx, store.DefaultStorage, "p/app", digest.FromString(fmt.Sprint(i)), 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if moved := s.AccessGeneration() - start; moved < 1 || moved > n {
		t.Fatalf("generation moved %d times for %d binding changes", moved, n)
	}
	// Blob links alone change no access.
	quiet := s.AccessGeneration()
	for i := range 20 {
		if err := s.LinkBlob(ctx, store.DefaultStorage, "p/app", digest.FromString(fmt.Sprint("quiet", i)), 1); err != nil {
			t.Fatal(err)
		}
	}
	if s.AccessGeneration() != quiet {
		t.Fatal("blob links moved the access generation")
	}
}
