package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type staticBindings []Binding

func (s staticBindings) Bindings(_ context.Context, project string) ([]Binding, error) {
	var out []Binding
	for _, b := range s {
		if b.Project == "" || b.Project == project {
			out = append(out, b)
		}
	}
	return out, nil
}

type failingBindings struct{}

func (failingBindings) Bindings(context.Context, string) ([]Binding, error) {
	return nil, errors.New("store down")
}

// op is a registry operation as the /v2 layer will ask it.
type op struct {
	name     string
	verb     string
	resource Resource
	project  string
}

var ops = []op{
	{"pull", "get", ImageStreamLayers, "team"},
	{"push", "update", ImageStreamLayers, "team"},
	{"create-repo", "create", ImageStreams, "team"},
	{"delete", "delete", Images, "team"},
	{"catalog", "list", ImageStreams, "team"},
	{"pull-other", "get", ImageStreamLayers, "other"},
	{"metrics", "get", RegistryMetrics, ""},
}

// TestRoleMatrix pins what each role may do; a changed cell fails. Each
// subject holds one role in project "team" (cluster-admin cluster-wide).
func TestRoleMatrix(t *testing.T) {
	bindings := staticBindings{
		{Role: "cluster-admin", Users: []string{"root"}},
		{Role: "self-provisioner", Groups: []string{GroupAuthenticated}},
	}
	subjects := []string{"registry-viewer", "registry-editor", "registry-admin", "system:image-puller",
		"system:image-pusher", "system:image-builder", "system:image-pruner", "system:registry", "view", "edit", "admin"}
	for _, role := range subjects {
		bindings = append(bindings, Binding{Role: role, Project: "team", Users: []string{"u-" + role}})
	}
	a := NewRBAC(bindings)
	// pull push create-repo delete catalog pull-other metrics
	want := map[string]string{
		"anonymous":            "- - - - - - -",
		"stranger":             "- - - - - - -",
		"sa-of-team":           "Y - - - - - -",
		"root":                 "Y Y Y Y Y Y Y",
		"registry-viewer":      "Y - - - Y - -",
		"registry-editor":      "Y Y Y Y Y - -",
		"registry-admin":       "Y Y Y Y Y - -",
		"system:image-puller":  "Y - - - - - -",
		"system:image-pusher":  "Y Y - - - - -",
		"system:image-builder": "Y Y Y - - - -",
		"system:image-pruner":  "- - - Y Y - -",
		"system:registry":      "Y - - - Y - -",
		"view":                 "Y - - - Y - -",
		"edit":                 "Y Y Y Y Y - -",
		"admin":                "Y Y Y Y Y - -",
	}
	users := map[string]User{
		"anonymous":  Anonymous,
		"stranger":   {Name: "stranger", Groups: []string{GroupAuthenticated}},
		"sa-of-team": {Name: "system:serviceaccount:team:robot", Groups: []string{GroupAuthenticated, "system:serviceaccounts", GroupServiceAccountsPrefix + "team"}},
		"root":       {Name: "root", Groups: []string{GroupAuthenticated}},
	}
	for _, role := range subjects {
		users[role] = User{Name: "u-" + role, Groups: []string{GroupAuthenticated}}
	}
	for name, row := range want {
		var got []string
		for _, o := range ops {
			ok, err := a.Authorize(context.Background(), users[name], o.verb, o.resource, o.project)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, map[bool]string{true: "Y", false: "-"}[ok])
		}
		if g := strings.Join(got, " "); g != row {
			t.Errorf("%-22s got %s, want %s (columns: pull push create-repo delete catalog pull-other metrics)", name, g, row)
		}
	}
}

func TestPublicProject(t *testing.T) {
	a := NewRBAC(staticBindings{{Role: "system:image-puller", Project: "public", Groups: []string{GroupUnauthenticated, GroupAuthenticated}}})
	for _, u := range []User{Anonymous, {Name: "x", Groups: []string{GroupAuthenticated}}} {
		if ok, _ := a.Authorize(context.Background(), u, "get", ImageStreamLayers, "public"); !ok {
			t.Errorf("%s cannot pull from a public project", u.Name)
		}
		if ok, _ := a.Authorize(context.Background(), u, "update", ImageStreamLayers, "public"); ok {
			t.Errorf("%s can push to a public project", u.Name)
		}
	}
}

func TestStoreErrorDenies(t *testing.T) {
	ok, err := NewRBAC(failingBindings{}).Authorize(context.Background(), Anonymous, "get", ImageStreamLayers, "p")
	if ok || err == nil {
		t.Fatalf("Authorize with a failing store = %v, %v; want false and an error", ok, err)
	}
}

func TestEveryRoleIsWellFormed(t *testing.T) {
	for name, r := range BuiltinRoles {
		if len(r.Rules) == 0 {
			t.Errorf("%s has no rules", name)
		}
		for i, rule := range r.Rules {
			if len(rule.APIGroups) == 0 || len(rule.Resources) == 0 || len(rule.Verbs) == 0 {
				t.Errorf("%s rule %d is empty somewhere: %s", name, i, fmt.Sprint(rule))
			}
		}
	}
}
