package apiserver

import (
	"net/http"
	"slices"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-registry/berth/internal/auth"
)

// ClusterRoles are the built-in roles (internal/auth/roles.go), read-only:
// roles are data in one file, not objects to edit.

var resClusterRoles = auth.Resource{Group: groupRBAC, Resource: "clusterroles"}

// rolesEpoch stands for the roles' creation time: they are as old as the
// binary's table.
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

func (s *Server) clusterRoleRoutes() {
	const base = "/apis/" + groupRBAC + "/v1/clusterroles"
	s.handle("GET "+base, s.listClusterRoles)
	s.handle("GET "+base+"/{name}", s.getClusterRole)
}

var clusterRoleColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "Created At", Type: "date", Description: "When the role was created."}}

func clusterRoleTable(items []*rbacv1.ClusterRole) metav1.Table {
	t := newTable(clusterRoleColumns, "1", "")
	for _, cr := range items {
		t.Rows = append(t.Rows, metaRow(cr.ObjectMeta, cr.Name, cr.CreationTimestamp.UTC().Format(time.RFC3339)))
	}
	return t
}

func (s *Server) listClusterRoles(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "list", resClusterRoles, ""); err != nil {
		return err
	}
	q, err := parseListQuery(r)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(auth.BuiltinRoles))
	for name := range auth.BuiltinRoles {
		names = append(names, name)
	}
	slices.Sort(names)
	items := []*rbacv1.ClusterRole{}
	for _, name := range names {
		cr := clusterRole(name, auth.BuiltinRoles[name])
		if q.fields.Matches(fieldSet(cr.ObjectMeta)) && q.labels.Matches(labelSet(cr.Labels)) {
			items = append(items, cr)
		}
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, clusterRoleTable(items))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "ClusterRoleList", "apiVersion": groupRBAC + "/v1",
		"metadata": metav1.ListMeta{ResourceVersion: "1"}, "items": items,
	})
}

func (s *Server) getClusterRole(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, "get", resClusterRoles, ""); err != nil {
		return err
	}
	role, ok := auth.BuiltinRoles[name]
	if !ok {
		return notFound("clusterroles.rbac.authorization.k8s.io", name)
	}
	cr := clusterRole(name, role)
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, clusterRoleTable([]*rbacv1.ClusterRole{cr}))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, cr)
}
