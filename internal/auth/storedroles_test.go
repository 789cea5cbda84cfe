package auth

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// memRoles is a RoleSource over a map, counting its reads; fail makes
// them fail.
type memRoles struct {
	roles map[string]Role
	reads int
	fail  bool
}

func (m *memRoles) ClusterRoles(context.Context) (map[string]Role, error) {
	m.reads++
	if m.fail {
		return nil, errors.New("store down")
	}
	return m.roles, nil
}

var scraper = Role{Rules: []Rule{{APIGroups: []string{groupImage}, Resources: []string{"registry/metrics"}, Verbs: []string{"get"}}}}

func TestStoredClusterRoleGrantsItsRules(t *testing.T) {
	ctx := context.Background()
	stored := &memRoles{roles: map[string]Role{"prometheus-scraper": scraper}}
	a := NewRBAC(staticBindings{
		{Role: "prometheus-scraper", Users: []string{"prom"}},
		{Role: "gone", Users: []string{"ghost"}},
		{Role: "registry-viewer", Project: "team", Users: []string{"prom"}},
	})
	a.Stored = stored
	prom, ghost := User{Name: "prom"}, User{Name: "ghost"}
	for _, c := range []struct {
		user    User
		verb    string
		res     Resource
		project string
		want    bool
	}{
		{prom, "get", RegistryMetrics, "", true},
		{prom, "list", RegistryMetrics, "", false},
		{prom, "get", ImageStreamLayers, "other", false},
		{ghost, "get", RegistryMetrics, "", false}, // a binding of a role that does not exist grants nothing
		{User{Name: "stranger"}, "get", RegistryMetrics, "", false},
	} {
		got, err := a.Authorize(ctx, c.user, c.verb, c.res, c.project)
		if err != nil || got != c.want {
			t.Errorf("Authorize(%s, %s %s, %q) = %v, %v; want %v", c.user.Name, c.verb, c.res, c.project, got, err, c.want)
		}
	}
	// A decision a built-in role allows does not read the stored roles.
	stored.reads = 0
	if ok, err := a.Authorize(ctx, prom, "get", ImageStreamLayers, "team"); !ok || err != nil {
		t.Fatalf("pull as registry-viewer: %v %v", ok, err)
	}
	if stored.reads != 0 {
		t.Errorf("a built-in grant read the stored roles %d times", stored.reads)
	}
	// Nor does it fail when they cannot be read; a decision that needs
	// them does.
	stored.fail = true
	if ok, err := a.Authorize(ctx, prom, "get", ImageStreamLayers, "team"); !ok || err != nil {
		t.Errorf("pull with the stored roles unreadable: %v %v", ok, err)
	}
	if ok, err := a.Authorize(ctx, prom, "get", RegistryMetrics, ""); ok || err == nil {
		t.Errorf("metrics with the stored roles unreadable: %v %v; want false and an error", ok, err)
	}
}

func TestStoredClusterRolesAreCachedPerGeneration(t *testing.T) {
	ctx := context.Background()
	stored := &memRoles{roles: map[string]Role{"prometheus-scraper": scraper}}
	var gen int64 = 1
	a := NewRBAC(staticBindings{{Role: "prometheus-scraper", Users: []string{"prom"}}})
	a.Stored, a.Generation, a.CacheTTL = stored, func(context.Context) int64 { return gen }, time.Hour
	prom := User{Name: "prom"}
	for range 3 {
		if ok, err := a.Authorize(ctx, prom, "get", RegistryMetrics, ""); !ok || err != nil {
			t.Fatalf("Authorize = %v, %v", ok, err)
		}
	}
	if stored.reads != 1 {
		t.Fatalf("%d reads of the stored roles at one generation, want 1", stored.reads)
	}
	// The role is deleted: the next decision after the generation moves
	// sees it gone.
	stored.roles = map[string]Role{}
	gen++
	if ok, err := a.Authorize(ctx, prom, "get", RegistryMetrics, ""); ok || err != nil {
		t.Fatalf("after the role was deleted: %v, %v; want false", ok, err)
	}
}

func TestRoleLookupAndNames(t *testing.T) {
	ctx := context.Background()
	a := NewRBAC(staticBindings{})
	a.Stored = &memRoles{roles: map[string]Role{
		"prometheus-scraper": scraper,
		// A stored role cannot take a built-in name; if one were there,
		// the built-in would win.
		"view": {Rules: []Rule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}},
	}}
	if r, ok, err := a.Role(ctx, "view"); !ok || err != nil || !slices.EqualFunc(r.Rules, BuiltinRoles["view"].Rules, rulesEqual) {
		t.Errorf("Role(view) = %v %v %v; want the built-in", r, ok, err)
	}
	if _, ok, err := a.Role(ctx, "prometheus-scraper"); !ok || err != nil {
		t.Errorf("Role(prometheus-scraper) = %v %v", ok, err)
	}
	if _, ok, err := a.Role(ctx, "nothing"); ok || err != nil {
		t.Errorf("Role(nothing) = %v %v", ok, err)
	}
	names, err := a.RoleNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(BuiltinRoles)+1 || !slices.Contains(names, "prometheus-scraper") || !slices.IsSorted(names) {
		t.Errorf("RoleNames = %v", names)
	}
}

func rulesEqual(a, b Rule) bool {
	return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs)
}

// Nobody writes a ClusterRole granting more than they hold; a binding of
// a stored role counts towards what its holder may grant.
func TestCoversRulesOfStoredRoles(t *testing.T) {
	ctx := context.Background()
	roleWriter := Role{Rules: []Rule{
		{APIGroups: []string{groupRBAC}, Resources: []string{"clusterroles"}, Verbs: []string{"create", "get"}},
		{APIGroups: []string{groupImage}, Resources: []string{"registry/metrics"}, Verbs: []string{"get"}},
	}}
	a := NewRBAC(staticBindings{
		{Role: "cluster-admin", Users: []string{"root"}},
		{Role: "role-writer", Users: []string{"bob"}},
		{Role: "admin", Project: "team", Users: []string{"bob"}},
	})
	a.Stored = &memRoles{roles: map[string]Role{"role-writer": roleWriter, "prometheus-scraper": scraper}}
	bob, root := User{Name: "bob"}, User{Name: "root"}
	wide := []Rule{{APIGroups: []string{groupImage}, Resources: []string{"imagestreams"}, Verbs: []string{"delete"}}}
	star := []Rule{{APIGroups: []string{groupImage}, Resources: []string{"registry/metrics"}, Verbs: []string{"*"}}}
	for _, c := range []struct {
		user  User
		rules []Rule
		want  bool
	}{
		{bob, scraper.Rules, true},
		{bob, roleWriter.Rules, true},
		{bob, wide, false}, // bob may delete image streams in team only, not cluster-wide
		{bob, star, false},
		{root, wide, true},
		{root, star, true},
		{User{Name: "nobody"}, scraper.Rules, false},
	} {
		got, err := a.CoversRules(ctx, c.user, c.rules, "")
		if err != nil || got != c.want {
			t.Errorf("CoversRules(%s, %v) = %v, %v; want %v", c.user.Name, c.rules, got, err, c.want)
		}
	}
	if ok, err := a.Covers(ctx, bob, "prometheus-scraper", ""); !ok || err != nil {
		t.Errorf("Covers(bob, prometheus-scraper) = %v %v", ok, err)
	}
	if ok, err := a.Covers(ctx, bob, "prometheus-scraper", "team"); !ok || err != nil {
		t.Errorf("Covers(bob, prometheus-scraper, team) = %v %v (cluster-wide bindings count in a project)", ok, err)
	}
	users, _, err := a.WhoCan(ctx, "get", RegistryMetrics, "")
	if err != nil || !slices.Equal(users, []string{"bob", "root"}) {
		t.Errorf("WhoCan(get metrics) = %v, %v", users, err)
	}
}
