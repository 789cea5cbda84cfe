package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/store"
)

// ClusterRoles are of two sorts, listed side by side. The built-in roles
// (internal/auth/roles.go) are data of the binary: served read-only, and
// their names cannot be taken. Cluster administrators create others, such
// as the reference's prometheus-scraper; those are a stored kind on the
// generic handlers, and nobody writes one granting more than they hold.

var resClusterRoles = auth.Resource{Group: groupRBAC, Resource: "clusterroles"}

// rolesEpoch stands for the built-in roles' creation time: they are as
// old as the binary's table.
var rolesEpoch = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

func clusterRole(name string, role auth.Role) *rbacv1.ClusterRole {
	cr := &rbacv1.ClusterRole{
		TypeMeta: metav1.TypeMeta{APIVersion: groupRBAC + "/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(newUIDFrom("clusterrole\x00" + name)),
			ResourceVersion: "1", CreationTimestamp: rolesEpoch,
			Annotations: map[string]string{"berth.io/built-in": "true"}},
	}
	for _, r := range role.Rules {
		cr.Rules = append(cr.Rules, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
	}
	return cr
}

var clusterRoleKind = func() *storedKind {
	k := &storedKind{
		info:    servedResource(groupRBAC, "clusterroles"),
		builtin: true,
		new:     func() object { return &rbacv1.ClusterRole{} },
		// Role names hold ':' (system:image-puller), as binding names do.
		nameProblems: bindingNameProblems,
		validate:     func(o object) []string { return clusterRoleProblems(o.(*rbacv1.ClusterRole)) },
		columns:      clusterRoleColumns,
		cells: func(o object) []any {
			return []any{o.GetName(), o.GetCreationTimestamp().UTC().Format(time.RFC3339)}
		},
	}
	k.admit = func(ctx context.Context, s *Server, o object) error {
		if _, ok := auth.BuiltinRoles[o.GetName()]; ok {
			return &StatusError{http.StatusConflict, "AlreadyExists", fmt.Sprintf(
				"clusterroles.%s %q already exists: it is built into Berth and cannot be replaced; give your role another name",
				groupRBAC, o.GetName())}
		}
		return s.mayDefineRole(ctx, o.(*rbacv1.ClusterRole))
	}
	return k
}()

// clusterRoleProblems checks the rules of a ClusterRole: Berth's rules
// name API groups, resources and verbs, nothing narrower or wider.
func clusterRoleProblems(cr *rbacv1.ClusterRole) []string {
	var problems []string
	if cr.AggregationRule != nil {
		problems = append(problems, "aggregationRule: Forbidden: Berth does not aggregate roles; list the rules")
	}
	for i, r := range cr.Rules {
		if len(r.Verbs) == 0 {
			problems = append(problems, fmt.Sprintf("rules[%d].verbs: Required value: verbs must contain at least one value", i))
		}
		if len(r.APIGroups) == 0 {
			problems = append(problems, fmt.Sprintf(`rules[%d].apiGroups: Required value: name the API groups ("" is the core group, "*" all)`, i))
		}
		if len(r.Resources) == 0 {
			problems = append(problems, fmt.Sprintf("rules[%d].resources: Required value: name the resources (\"*\" for all)", i))
		}
		if len(r.ResourceNames) > 0 {
			problems = append(problems, fmt.Sprintf("rules[%d].resourceNames: Forbidden: Berth's rules cover whole resources", i))
		}
		if len(r.NonResourceURLs) > 0 {
			problems = append(problems, fmt.Sprintf("rules[%d].nonResourceURLs: Forbidden: Berth's rules are about resources only", i))
		}
	}
	return problems
}

// mayDefineRole is escalation prevention for roles, Kubernetes' rule: the
// caller must already hold every permission cr grants, cluster-wide, or
// they could bind it to themselves and gain what they lack.
func (s *Server) mayDefineRole(ctx context.Context, cr *rbacv1.ClusterRole) error {
	u := auth.IdentityFrom(ctx).User
	rules := make([]auth.Rule, len(cr.Rules))
	for i, r := range cr.Rules {
		rules[i] = auth.Rule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs}
	}
	ok, err := s.opts.Authorizer.CoversRules(ctx, u, rules, "")
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
		"clusterroles.%s %q is forbidden: User %q may not define a role granting permissions they do not hold cluster-wide themselves (no escalation)",
		groupRBAC, cr.Name, u.Name)}
}

func (s *Server) clusterRoleRoutes() {
	const base = "/apis/" + groupRBAC + "/v1/clusterroles"
	k := clusterRoleKind
	s.handle("GET "+base, s.listClusterRoles)
	s.handleDryRun("POST "+base, s.createStored(k))
	s.handle("GET "+base+"/{name}", s.getClusterRole)
	s.handleDryRun("PUT "+base+"/{name}", refuseBuiltinRole("update", s.updateStored(k)))
	s.handleDryRun("PATCH "+base+"/{name}", refuseBuiltinRole("patch", s.patchStored(k)))
	s.handleDryRun("DELETE "+base+"/{name}", refuseBuiltinRole("delete", s.deleteStored(k)))
}

// refuseBuiltinRole answers a write to a built-in role with why it
// cannot be made (the generic handler would say it does not exist).
func refuseBuiltinRole(verb string, next func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := r.PathValue("name")
		if _, ok := auth.BuiltinRoles[name]; ok {
			return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
				"clusterroles.%s %q is forbidden: cannot %s it: it is built into Berth (its rules are part of the binary); create a ClusterRole of another name",
				groupRBAC, name, verb)}
		}
		return next(w, r)
	}
}

var clusterRoleColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "Created At", Type: "date", Description: "When the role was created."}}

// builtinRoleObjects are the built-in roles as objects, sorted by name.
func builtinRoleObjects() []object {
	names := make([]string, 0, len(auth.BuiltinRoles))
	for name := range auth.BuiltinRoles {
		names = append(names, name)
	}
	slices.Sort(names)
	objs := make([]object, len(names))
	for i, name := range names {
		objs[i] = clusterRole(name, auth.BuiltinRoles[name])
	}
	return objs
}

// listClusterRoles lists (or watches) the built-in roles and the stored
// ones together, in name order. There are few of them: the page a limit
// asks for is cut from the whole list.
func (s *Server) listClusterRoles(w http.ResponseWriter, r *http.Request) error {
	k := clusterRoleKind
	q, err := parseListQuery(r)
	if err != nil {
		return err
	}
	verb := "list"
	if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
		verb = "watch"
	}
	if err := s.authorize(r, verb, resClusterRoles, ""); err != nil {
		return err
	}
	if verb == "watch" {
		feed := s.storedWatchFeed(r, k, q)
		stored := feed.current
		feed.current = func(ctx context.Context) ([]object, int64, error) {
			objs, rv, err := stored(ctx)
			return append(builtinRoleObjects(), objs...), rv, err
		}
		return serveWatch(s, w, r, q, feed)
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return badRequest("limit %q is not a count", v)
		}
	}
	after, err := decodeContinue(r.URL.Query().Get("continue"))
	if err != nil {
		return err
	}
	recs, _, rv, err := s.opts.Store.ListObjects(r.Context(), store.ObjectQuery{Group: k.info.Group, Resource: k.info.Resource})
	if err != nil {
		return err
	}
	all := builtinRoleObjects()
	for _, rec := range recs {
		if _, builtin := auth.BuiltinRoles[rec.Name]; builtin {
			continue // the built-in wins, as in the authorizer
		}
		obj, err := k.fromStored(rec)
		if err != nil {
			return err
		}
		all = append(all, obj)
	}
	slices.SortFunc(all, func(a, b object) int { return strings.Compare(a.GetName(), b.GetName()) })
	objs := []object{}
	next := ""
	for _, o := range all {
		if o.GetName() <= after.Name || !q.selects(o) {
			continue
		}
		if limit > 0 && len(objs) == limit {
			// More follow: the next page starts after this one's last.
			next = encodeContinue(store.ObjectCursor{Name: objs[len(objs)-1].GetName()})
			break
		}
		objs = append(objs, o)
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, k.table(objs, rv, next, r))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "ClusterRoleList", "apiVersion": k.apiVersion(),
		"metadata": metav1.ListMeta{ResourceVersion: strconv.FormatInt(rv, 10), Continue: next},
		"items":    objs,
	})
}

func (s *Server) getClusterRole(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	role, ok := auth.BuiltinRoles[name]
	if !ok {
		return s.getStored(clusterRoleKind)(w, r)
	}
	if err := s.authorize(r, "get", resClusterRoles, ""); err != nil {
		return err
	}
	cr := clusterRole(name, role)
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, clusterRoleKind.table([]object{cr}, 1, "", r))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, cr)
}
