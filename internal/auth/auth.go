// Package auth decides who may do what. Identities are users and their
// groups; roles are data (roles.go); bindings grant a role to users and
// groups in one project or, with no project, cluster-wide. Everything that
// needs a decision — the /v2 registry, the management API, background jobs
// — asks one Authorizer.
package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/gencache"
	"github.com/berth-registry/berth/internal/reqlog"
)

// Well-known users and groups.
const (
	AnonymousUser        = "system:anonymous"
	GroupAuthenticated   = "system:authenticated"
	GroupUnauthenticated = "system:unauthenticated"
	// GroupPeople is every authenticated user that is not a service
	// account (the reference's name): project self-provisioning is bound
	// to it, so robots cannot create projects.
	GroupPeople = "system:authenticated:oauth"
	// GroupServiceAccountsPrefix + project is the group of a project's
	// service accounts.
	GroupServiceAccountsPrefix = "system:serviceaccounts:"
)

// User is an authenticated identity (or the anonymous one).
type User struct {
	Name   string
	Groups []string
}

// Anonymous is who a request without credentials is.
var Anonymous = User{Name: AnonymousUser, Groups: []string{GroupUnauthenticated}}

// Rule grants Verbs on Resources of APIGroups; "*" matches anything.
type Rule struct {
	APIGroups []string
	Resources []string
	Verbs     []string
}

// Role is a named set of rules.
type Role struct {
	Rules []Rule
}

// Resource names what a request acts on: an API group and a resource,
// with a subresource after a slash ("imagestreams/layers").
type Resource struct {
	Group    string
	Resource string
}

// String is the resource as logs name it: "group/resource", or the
// resource alone in the core group.
func (r Resource) String() string {
	if r.Group == "" {
		return r.Resource
	}
	return r.Group + "/" + r.Resource
}

// Registry operations as resources.
var (
	ImageStreamLayers = Resource{groupImage, "imagestreams/layers"}
	ImageStreams      = Resource{groupImage, "imagestreams"}
	Images            = Resource{groupImage, "images"}
	RegistryMetrics   = Resource{groupImage, "registry/metrics"}
)

// Binding grants Role to Users and Groups in Project, or everywhere when
// Project is "".
type Binding struct {
	Name    string // unique in its project
	Role    string
	Project string
	Created time.Time // of its oldest grant
	Users   []string
	Groups  []string
}

// BindingSource returns the bindings that apply in project: its own and
// the cluster-wide ones.
type BindingSource interface {
	Bindings(ctx context.Context, project string) ([]Binding, error)
}

// RoleSource returns the ClusterRoles that users created (stored objects),
// by name, beside the built-in ones.
type RoleSource interface {
	ClusterRoles(ctx context.Context) (map[string]Role, error)
}

// Authorizer is the one place decisions are made.
type Authorizer interface {
	// Authorize reports whether user may do verb on resource in project
	// ("" for cluster-scoped resources). An error means no decision could
	// be made (the caller must deny).
	Authorize(ctx context.Context, user User, verb string, resource Resource, project string) (bool, error)
}

// RBAC is the Authorizer over role bindings.
type RBAC struct {
	// Roles are the built-in roles; their names cannot be stored.
	Roles    map[string]Role
	Bindings BindingSource
	// Stored, when set, holds the ClusterRoles users created: a binding
	// of a role that Roles does not hold is resolved there, and grants
	// nothing while no such role exists.
	Stored RoleSource
	// Generation, when set, is the store's access generation: bindings
	// and stored roles read are cached while it stands still, for at most
	// CacheTTL (0: 10s). A store counts a change to a ClusterRole as an
	// access change, so a role deleted or narrowed applies at once.
	Generation func(context.Context) int64
	CacheTTL   time.Duration

	cacheOnce sync.Once
	cache     *gencache.Cache[string, []Binding]
	roles     *gencache.Cache[struct{}, map[string]Role]
}

// NewRBAC returns an authorizer with the built-in roles and, when
// bindings can also list stored ClusterRoles (the metadata store can),
// those.
func NewRBAC(bindings BindingSource) *RBAC {
	a := &RBAC{Roles: BuiltinRoles, Bindings: bindings}
	if rs, ok := bindings.(RoleSource); ok {
		a.Stored = rs
	}
	return a
}

// Authorize implements Authorizer.
func (a *RBAC) Authorize(ctx context.Context, user User, verb string, resource Resource, project string) (bool, error) {
	if e := reqlog.FromContext(ctx); e.Debug() {
		e.NoteCheck(reqlog.Check{Verb: verb, Resource: resource.String(), Project: project})
	}
	// A project's service accounts may pull from it, as on the reference
	// platform, without a stored binding.
	if project != "" && slices.Contains(user.Groups, GroupServiceAccountsPrefix+project) &&
		rulesAllow(a.Roles["system:image-puller"].Rules, verb, resource) {
		return true, nil
	}
	bindings, err := a.bindingsOf(ctx, project)
	if err != nil {
		return false, fmt.Errorf("authorize %s %s/%s in %q: %w", verb, resource.Group, resource.Resource, project, err)
	}
	// Built-in roles first: a decision they allow never waits for, or
	// fails with, the stored roles.
	custom := false
	for _, b := range bindings {
		if (b.Project != "" && b.Project != project) || !binds(b, user) {
			continue
		}
		if r, ok := a.Roles[b.Role]; ok {
			if rulesAllow(r.Rules, verb, resource) {
				return true, nil
			}
		} else {
			custom = true
		}
	}
	if !custom {
		return false, nil
	}
	stored, err := a.storedRoles(ctx)
	if err != nil {
		return false, fmt.Errorf("authorize %s %s/%s in %q: %w", verb, resource.Group, resource.Resource, project, err)
	}
	for _, b := range bindings {
		if (b.Project != "" && b.Project != project) || !binds(b, user) {
			continue
		}
		if _, builtin := a.Roles[b.Role]; !builtin && rulesAllow(stored[b.Role].Rules, verb, resource) {
			return true, nil
		}
	}
	return false, nil
}

func (a *RBAC) bindingsOf(ctx context.Context, project string) ([]Binding, error) {
	if a.Generation == nil {
		return a.Bindings.Bindings(ctx, project)
	}
	a.cacheOnce.Do(a.makeCaches)
	return a.cache.Fetch(project, func() int64 { return a.Generation(ctx) }, func() ([]Binding, error) {
		return a.Bindings.Bindings(ctx, project)
	})
}

func (a *RBAC) makeCaches() {
	ttl := a.CacheTTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	a.cache = &gencache.Cache[string, []Binding]{TTL: ttl, Max: 100000}
	a.roles = &gencache.Cache[struct{}, map[string]Role]{TTL: ttl, Max: 1}
}

// storedRoles are the ClusterRoles users created (none without Stored),
// read through the same generation-checked cache as bindings.
func (a *RBAC) storedRoles(ctx context.Context) (map[string]Role, error) {
	if a.Stored == nil {
		return nil, nil
	}
	if a.Generation == nil {
		return a.Stored.ClusterRoles(ctx)
	}
	a.cacheOnce.Do(a.makeCaches)
	roles, err := a.roles.Fetch(struct{}{}, func() int64 { return a.Generation(ctx) }, func() (map[string]Role, error) {
		return a.Stored.ClusterRoles(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("read the stored cluster roles: %w", err)
	}
	return roles, nil
}

// Role returns the role named name: a built-in one, or a ClusterRole a
// user created. ok is false when there is none.
func (a *RBAC) Role(ctx context.Context, name string) (role Role, ok bool, err error) {
	if r, ok := a.Roles[name]; ok {
		return r, true, nil
	}
	stored, err := a.storedRoles(ctx)
	if err != nil {
		return Role{}, false, err
	}
	r, ok := stored[name]
	return r, ok, nil
}

// RoleNames lists every role, built-in and stored, sorted.
func (a *RBAC) RoleNames(ctx context.Context) ([]string, error) {
	stored, err := a.storedRoles(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(a.Roles)+len(stored))
	for n := range a.Roles {
		names = append(names, n)
	}
	for n := range stored {
		if _, builtin := a.Roles[n]; !builtin {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func binds(b Binding, u User) bool {
	if slices.Contains(b.Users, u.Name) {
		return true
	}
	for _, g := range b.Groups {
		if slices.Contains(u.Groups, g) {
			return true
		}
	}
	return false
}

// rulesAllow reports whether any of rules grants verb on resource.
func rulesAllow(rules []Rule, verb string, resource Resource) bool {
	for _, rule := range rules {
		if matches(rule.APIGroups, resource.Group) && matchesResource(rule.Resources, resource.Resource) && matches(rule.Verbs, verb) {
			return true
		}
	}
	return false
}

func matches(set []string, v string) bool {
	return slices.Contains(set, "*") || slices.Contains(set, v)
}

// matchesResource also lets "*" cover subresources and "x/*" cover every
// subresource of x.
func matchesResource(set []string, res string) bool {
	if matches(set, res) {
		return true
	}
	if base, _, ok := strings.Cut(res, "/"); ok {
		return slices.Contains(set, base+"/*")
	}
	return false
}
