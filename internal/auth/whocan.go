package auth

import (
	"context"
	"fmt"
	"slices"
)

// WhoCan lists the users and groups that may do verb on resource in
// project ("" for cluster-wide): the subjects of every binding in force
// there whose role allows it, and, when a project's service accounts may
// pull implicitly, their group. It answers from the same rules Authorize
// applies, so the two cannot disagree. Both lists are sorted, without
// duplicates.
func (a *RBAC) WhoCan(ctx context.Context, verb string, resource Resource, project string) (users, groups []string, err error) {
	if project != "" && rulesAllow(a.Roles["system:image-puller"].Rules, verb, resource) {
		groups = append(groups, GroupServiceAccountsPrefix+project)
	}
	bindings, err := a.Bindings.Bindings(ctx, project)
	if err != nil {
		return nil, nil, fmt.Errorf("who can %s %s/%s in %q: %w", verb, resource.Group, resource.Resource, project, err)
	}
	for _, b := range bindings {
		if b.Project != "" && b.Project != project {
			continue
		}
		role, _, err := a.Role(ctx, b.Role)
		if err != nil {
			return nil, nil, fmt.Errorf("who can %s %s/%s in %q: %w", verb, resource.Group, resource.Resource, project, err)
		}
		if rulesAllow(role.Rules, verb, resource) {
			users = append(users, b.Users...)
			groups = append(groups, b.Groups...)
		}
	}
	slices.Sort(users)
	slices.Sort(groups)
	return slices.Compact(users), slices.Compact(groups), nil
}
