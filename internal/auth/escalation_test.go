package auth

import (
	"context"
	"slices"
	"testing"
)

func TestCovers(t *testing.T) {
	bindings := staticBindings{
		{Role: "cluster-admin", Users: []string{"root"}},
		{Role: "admin", Project: "team", Users: []string{"alice"}},
		{Role: "registry-admin", Project: "team", Users: []string{"ra"}},
		{Role: "registry-viewer", Project: "team", Groups: []string{"qa"}},
		{Role: "system:image-pusher", Project: "team", Users: []string{"qa-lead"}},
	}
	a := NewRBAC(bindings)
	qa := func(name string) User { return User{Name: name, Groups: []string{"qa"}} }
	cases := []struct {
		user    User
		role    string
		project string
		want    bool
	}{
		{User{Name: "root"}, "cluster-admin", "", true},
		{User{Name: "root"}, "admin", "anywhere", true},
		{User{Name: "alice"}, "admin", "team", true},
		{User{Name: "alice"}, "edit", "team", true},
		{User{Name: "alice"}, "registry-admin", "team", true},
		{User{Name: "alice"}, "registry-viewer", "team", true},
		{User{Name: "alice"}, "admin", "other", false},
		// admin holds every verb on image.openshift.io but not "*" groups.
		{User{Name: "alice"}, "cluster-admin", "team", false},
		{User{Name: "alice"}, "self-provisioner", "", false},
		{User{Name: "ra"}, "registry-viewer", "team", true},
		{User{Name: "ra"}, "registry-editor", "team", true},
		{User{Name: "ra"}, "registry-admin", "team", true},
		{User{Name: "ra"}, "admin", "team", false},
		{User{Name: "ra"}, "edit", "team", false},
		{qa("carol"), "registry-viewer", "team", true},
		{qa("carol"), "system:image-puller", "team", true},
		{qa("carol"), "system:image-pusher", "team", false},
		// The union of roles counts: viewer (get layers) + pusher (update).
		{qa("qa-lead"), "system:image-pusher", "team", true},
		{qa("qa-lead"), "system:image-builder", "team", false},
		// A project's service accounts hold the implicit pull right.
		{User{Name: ServiceAccountUser("team", "ci"), Groups: []string{GroupServiceAccountsPrefix + "team"}}, "system:image-puller", "team", true},
		{User{Name: ServiceAccountUser("team", "ci"), Groups: []string{GroupServiceAccountsPrefix + "team"}}, "system:image-puller", "other", false},
		{Anonymous, "system:image-puller", "team", false},
	}
	for _, c := range cases {
		got, err := a.Covers(context.Background(), c.user, c.role, c.project)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Covers(%s, %s, %q) = %v, want %v", c.user.Name, c.role, c.project, got, c.want)
		}
	}
	if _, err := a.Covers(context.Background(), User{Name: "root"}, "no-such-role", ""); err == nil {
		t.Error("Covers of an unknown role: no error")
	}
	if _, err := NewRBAC(failingBindings{}).Covers(context.Background(), User{Name: "root"}, "admin", "team"); err == nil {
		t.Error("Covers with the store down: no error")
	}
}

// TestCoversWildcards: a wildcard in the granted role is covered only by a
// wildcard, even when every concrete value is held.
func TestCoversWildcards(t *testing.T) {
	roles := map[string]Role{
		"all-verbs-listed": {Rules: []Rule{{APIGroups: one("g"), Resources: one("r"),
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}}}},
		"star-verbs":    {Rules: []Rule{{APIGroups: one("g"), Resources: one("r"), Verbs: one("*")}}},
		"sub-star":      {Rules: []Rule{{APIGroups: one("g"), Resources: one("r/*"), Verbs: one("get")}}},
		"one-sub":       {Rules: []Rule{{APIGroups: one("g"), Resources: one("r/status"), Verbs: one("get")}}},
		"star-resource": {Rules: []Rule{{APIGroups: one("g"), Resources: one("*"), Verbs: one("*")}}},
	}
	a := &RBAC{Roles: roles, Bindings: staticBindings{
		{Role: "all-verbs-listed", Users: []string{"lister"}},
		{Role: "sub-star", Users: []string{"subber"}},
		{Role: "star-resource", Users: []string{"star"}},
	}}
	for _, c := range []struct {
		user, role string
		want       bool
	}{
		{"lister", "star-verbs", false},
		{"lister", "all-verbs-listed", true},
		{"subber", "one-sub", true},
		{"subber", "sub-star", true},
		{"lister", "sub-star", false},
		{"star", "star-verbs", true},
		{"star", "sub-star", true},
		{"star", "all-verbs-listed", true},
	} {
		got, err := a.Covers(context.Background(), User{Name: c.user}, c.role, "p")
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s covers %s = %v, want %v", c.user, c.role, got, c.want)
		}
	}
}

func TestWhoCan(t *testing.T) {
	a := NewRBAC(staticBindings{
		{Role: "cluster-admin", Users: []string{"root"}},
		{Role: "self-provisioner", Groups: []string{GroupPeople}},
		{Role: "registry-viewer", Project: "team", Users: []string{"bob", "carol"}, Groups: []string{"qa"}},
		{Role: "registry-editor", Project: "team", Users: []string{"carol"}},
		{Role: "admin", Project: "other", Users: []string{"dave"}},
	})
	ctx := context.Background()
	check := func(verb string, res Resource, project string, wantUsers, wantGroups []string) {
		t.Helper()
		users, groups, err := a.WhoCan(ctx, verb, res, project)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(users, wantUsers) || !slices.Equal(groups, wantGroups) {
			t.Errorf("who can %s %s in %q = %v %v, want %v %v", verb, res.Resource, project, users, groups, wantUsers, wantGroups)
		}
	}
	check("get", ImageStreamLayers, "team", []string{"bob", "carol", "root"}, []string{"qa", "system:serviceaccounts:team"})
	check("update", ImageStreamLayers, "team", []string{"carol", "root"}, nil)
	check("get", ImageStreamLayers, "other", []string{"dave", "root"}, []string{"system:serviceaccounts:other"})
	check("create", Resource{"project.openshift.io", "projectrequests"}, "", []string{"root"}, []string{GroupPeople})
	if _, _, err := NewRBAC(failingBindings{}).WhoCan(ctx, "get", ImageStreamLayers, "team"); err == nil {
		t.Error("WhoCan with the store down: no error")
	}
}
