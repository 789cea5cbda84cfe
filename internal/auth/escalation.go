package auth

import (
	"context"
	"fmt"
	"slices"
)

// Covers reports whether user already holds every permission of role in
// project ("" for cluster-wide), the check that stops a user from granting
// more than they have (Kubernetes' escalation prevention). Each rule of
// role is split into (group, resource, verb) triples, and each triple must
// be allowed by some role bound to user there — the union of their roles
// counts, not one rule alone. A literal "*" in role is covered only by "*"
// in a held rule: holding every verb that exists today is not holding "*".
// An unknown role is an error.
func (a *RBAC) Covers(ctx context.Context, user User, role, project string) (bool, error) {
	want, ok, err := a.Role(ctx, role)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("role %q does not exist", role)
	}
	return a.CoversRules(ctx, user, want.Rules, project)
}

// CoversRules is Covers for rules that are not (yet) a role: those of a
// ClusterRole being created or changed, which nobody may write unless
// they hold every permission it grants, cluster-wide.
func (a *RBAC) CoversRules(ctx context.Context, user User, rules []Rule, project string) (bool, error) {
	held, err := a.heldRules(ctx, user, project)
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if !coveredBy(held, g, res, v) {
						return false, nil
					}
				}
			}
		}
	}
	return true, nil
}

// heldRules are the rules of every role bound to user in project,
// cluster-wide bindings and the implicit service-account pull included.
func (a *RBAC) heldRules(ctx context.Context, user User, project string) ([]Rule, error) {
	var roles []string
	if project != "" && slices.Contains(user.Groups, GroupServiceAccountsPrefix+project) {
		roles = append(roles, "system:image-puller")
	}
	bindings, err := a.Bindings.Bindings(ctx, project)
	if err != nil {
		return nil, fmt.Errorf("rules of %s in %q: %w", user.Name, project, err)
	}
	for _, b := range bindings {
		if (b.Project == "" || b.Project == project) && binds(b, user) {
			roles = append(roles, b.Role)
		}
	}
	var rules []Rule
	for _, name := range roles {
		// A binding of a role that no longer exists grants nothing.
		r, _, err := a.Role(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("rules of %s in %q: %w", user.Name, project, err)
		}
		rules = append(rules, r.Rules...)
	}
	return rules, nil
}

func coveredBy(held []Rule, group, resource, verb string) bool {
	for _, h := range held {
		if coversValue(h.APIGroups, group, matches) &&
			coversValue(h.Resources, resource, matchesResource) &&
			coversValue(h.Verbs, verb, matches) {
			return true
		}
	}
	return false
}

// coversValue: a wildcard is covered only by a wildcard; anything else as
// the authorizer would match it.
func coversValue(set []string, v string, match func([]string, string) bool) bool {
	if v == "*" {
		return slices.Contains(set, "*")
	}
	return match(set, v)
}
