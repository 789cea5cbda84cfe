package auth

import (
	"context"
	"strings"
	"testing"
)

// TestWebhookAccess pins who may do what with webhooks: a project's admin
// and registry-admin manage its Webhooks and read their status; nobody
// else reads them (a URL may carry a token); the status is the server's
// to write; ClusterWebhooks are cluster-admin's alone, whatever role one
// holds in a project or cluster-wide.
func TestWebhookAccess(t *testing.T) {
	var (
		hooks        = Resource{Group: "berth.io", Resource: "webhooks"}
		hookStatus   = Resource{Group: "berth.io", Resource: "webhooks/status"}
		clusterHooks = Resource{Group: "berth.io", Resource: "clusterwebhooks"}
	)
	checks := []op{
		{"get", "get", hooks, "team"},
		{"list", "list", hooks, "team"},
		{"create", "create", hooks, "team"},
		{"update", "update", hooks, "team"},
		{"delete", "delete", hooks, "team"},
		{"other-project", "get", hooks, "other"},
		{"status-get", "get", hookStatus, "team"},
		{"status-update", "update", hookStatus, "team"},
		{"cluster-get", "get", clusterHooks, ""},
		{"cluster-create", "create", clusterHooks, ""},
	}
	bindings := staticBindings{
		{Role: "cluster-admin", Users: []string{"root"}},
		// Cluster-wide admin and registry-admin reach every project's
		// Webhooks, but still not the ClusterWebhooks.
		{Role: "admin", Users: []string{"cluster-wide-admin"}},
		{Role: "registry-admin", Users: []string{"cluster-wide-registry-admin"}},
	}
	roles := []string{"admin", "registry-admin", "edit", "view", "registry-editor", "registry-viewer",
		"system:image-puller", "system:image-pusher", "system:image-builder", "system:image-pruner", "system:registry"}
	for _, role := range roles {
		bindings = append(bindings, Binding{Role: role, Project: "team", Users: []string{role}})
	}
	a := NewRBAC(bindings)
	// get list create update delete other-project status-get status-update cluster-get cluster-create
	want := map[string]string{
		"root":                        "Y Y Y Y Y Y Y Y Y Y",
		"cluster-wide-admin":          "Y Y Y Y Y Y Y - - -",
		"cluster-wide-registry-admin": "Y Y Y Y Y Y Y - - -",
		"admin":                       "Y Y Y Y Y - Y - - -",
		"registry-admin":              "Y Y Y Y Y - Y - - -",
		"edit":                        "- - - - - - - - - -",
		"view":                        "- - - - - - - - - -",
		"registry-editor":             "- - - - - - - - - -",
		"registry-viewer":             "- - - - - - - - - -",
		"system:image-puller":         "- - - - - - - - - -",
		"system:image-pusher":         "- - - - - - - - - -",
		"system:image-builder":        "- - - - - - - - - -",
		"system:image-pruner":         "- - - - - - - - - -",
		"system:registry":             "- - - - - - - - - -",
	}
	for name, row := range want {
		var got []string
		for _, c := range checks {
			ok, err := a.Authorize(context.Background(), User{Name: name, Groups: []string{GroupAuthenticated}}, c.verb, c.resource, c.project)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, map[bool]string{true: "Y", false: "-"}[ok])
		}
		if g := strings.Join(got, " "); g != row {
			t.Errorf("%-28s got %s, want %s", name, g, row)
		}
	}
}

// A project admin may still grant registry-admin, which now holds rights
// on webhooks; a registry-admin still may not grant admin.
func TestWebhookRightsKeepGrants(t *testing.T) {
	a := NewRBAC(staticBindings{
		{Role: "admin", Project: "team", Users: []string{"alice"}},
		{Role: "registry-admin", Project: "team", Users: []string{"ra"}},
	})
	for _, c := range []struct {
		user, role string
		want       bool
	}{{"alice", "registry-admin", true}, {"alice", "admin", true}, {"ra", "registry-admin", true}, {"ra", "admin", false}} {
		got, err := a.Covers(context.Background(), User{Name: c.user}, c.role, "team")
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("Covers(%s, %s) = %v, want %v", c.user, c.role, got, c.want)
		}
	}
}
