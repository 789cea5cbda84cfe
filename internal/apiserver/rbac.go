package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-registry/berth/internal/auth"
)

// Role bindings (RoleBinding in a project, ClusterRoleBinding everywhere)
// are stored kinds: the generic handlers serve them with watch, patch,
// selectors and resourceVersions, and the store keeps the index the
// authorizer reads in the same transaction. What is particular to them is
// here: a binding grants one of Berth's cluster roles to users, groups and
// service accounts; its role never changes; and nobody grants what they do
// not hold themselves.

func bindingKind(resource string) *storedKind {
	k := &storedKind{
		info:    servedResource(groupRBAC, resource),
		builtin: true,
		new:     func() object { return &rbacv1.RoleBinding{} },
		prepare: func(o object) {
			// A service account subject without a namespace is one of the
			// binding's project, as kubectl create rolebinding --serviceaccount
			// cannot leave it out but hand-written objects do.
			_, subjects := bindingParts(o)
			for i := range subjects {
				if subjects[i].Kind == "ServiceAccount" && subjects[i].Namespace == "" {
					subjects[i].Namespace = o.GetNamespace()
				}
			}
		},
		nameProblems: bindingNameProblems,
		validate: func(o object) []string {
			ref, subjects := bindingParts(o)
			problems := bindingProblems(ref, subjects)
			for i, sub := range subjects {
				// Only a cluster-wide binding can leave it out (prepare fills
				// in a project's).
				if sub.Kind == "ServiceAccount" && sub.Namespace == "" {
					problems = append(problems, fmt.Sprintf("subjects[%d].namespace: Required value: a service account of a cluster-wide binding needs its project", i))
				}
			}
			return problems
		},
		validateUpdate: func(old, new object) []string {
			oldRef, _ := bindingParts(old)
			newRef, _ := bindingParts(new)
			return roleRefChange(oldRef, newRef)
		},
		columns: bindingColumns,
		cells: func(o object) []any {
			ref, subjects := bindingParts(o)
			return bindingCells(o, ref, subjects)
		},
	}
	k.admit = func(ctx context.Context, s *Server, o object) error {
		ref, _ := bindingParts(o)
		if err := s.roleExists(ctx, k, o.GetName(), ref.Name); err != nil {
			return err
		}
		return s.mayGrant(ctx, k, o.GetNamespace(), ref.Name)
	}
	if resource == "clusterrolebindings" {
		k.new = func() object { return &rbacv1.ClusterRoleBinding{} }
	}
	return k
}

// bindingParts are the role and subjects of a RoleBinding or a
// ClusterRoleBinding (the subjects as the object's own slice).
func bindingParts(o object) (rbacv1.RoleRef, []rbacv1.Subject) {
	switch rb := o.(type) {
	case *rbacv1.RoleBinding:
		return rb.RoleRef, rb.Subjects
	case *rbacv1.ClusterRoleBinding:
		return rb.RoleRef, rb.Subjects
	}
	panic(fmt.Sprintf("apiserver: %T is not a binding", o)) // the kind table is wrong: a programming error
}

var (
	roleBindingKind        = bindingKind("rolebindings")
	clusterRoleBindingKind = bindingKind("clusterrolebindings")
)

// bindingProblems checks a binding's role and subjects.
func bindingProblems(ref rbacv1.RoleRef, subjects []rbacv1.Subject) []string {
	var problems []string
	if ref.Kind != "ClusterRole" {
		problems = append(problems, fmt.Sprintf("roleRef.kind: Unsupported value: %q: Berth's roles are cluster roles; use ClusterRole", ref.Kind))
	}
	if ref.APIGroup != "" && ref.APIGroup != groupRBAC {
		problems = append(problems, fmt.Sprintf("roleRef.apiGroup: Unsupported value: %q: must be %s", ref.APIGroup, groupRBAC))
	}
	if len(subjects) == 0 {
		problems = append(problems, "subjects: Required value: a binding needs at least one subject (to take the role from everyone, delete the binding)")
	}
	for i, sub := range subjects {
		if sub.Name == "" || strings.ContainsAny(sub.Name, "\x00\n") {
			problems = append(problems, fmt.Sprintf("subjects[%d].name: Required value", i))
		}
		switch sub.Kind {
		case "User", "Group":
		case "ServiceAccount":
			if strings.Contains(sub.Namespace, ":") || strings.Contains(sub.Name, ":") {
				problems = append(problems, fmt.Sprintf("subjects[%d]: Invalid value: a service account's name and namespace have no ':'", i))
			}
		default:
			problems = append(problems, fmt.Sprintf("subjects[%d].kind: Unsupported value: %q: must be User, Group or ServiceAccount", i, sub.Kind))
		}
	}
	return problems
}

func roleRefChange(old, new rbacv1.RoleRef) []string {
	if old.Name != new.Name || old.Kind != new.Kind {
		return []string{"roleRef: Invalid value: cannot change roleRef"}
	}
	return nil
}

// bindingNameProblems checks a binding's name as Kubernetes checks names
// that are path segments (binding names often hold ':', as
// system:image-puller does).
func bindingNameProblems(name string) []string {
	switch {
	case name == "." || name == "..":
		return []string{"may not be '.' or '..'"}
	case strings.ContainsAny(name, "/%"):
		return []string{"may not contain '/' or '%'"}
	case len(name) > 253:
		return []string{"must be no more than 253 characters"}
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return []string{"may contain printable ASCII characters only, no spaces"}
	}
	return nil
}

var bindingColumns = []metav1.TableColumnDefinition{columnName,
	column("Role", "The role the binding grants.", 0),
	columnAge,
	column("Users", "The users the role is granted to.", 1),
	column("Groups", "The groups the role is granted to.", 1),
	column("ServiceAccounts", "The service accounts the role is granted to.", 1),
}

func bindingCells(o object, ref rbacv1.RoleRef, subjects []rbacv1.Subject) []any {
	var users, groups, accounts []string
	for _, s := range subjects {
		switch s.Kind {
		case "User":
			users = append(users, s.Name)
		case "Group":
			groups = append(groups, s.Name)
		case "ServiceAccount":
			accounts = append(accounts, s.Namespace+"/"+s.Name)
		}
	}
	return []any{o.GetName(), ref.Kind + "/" + ref.Name, age(o),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(accounts, ", ")}
}

// roleExists refuses a binding of a role that is neither built in nor a
// stored ClusterRole (a typo would otherwise grant nothing, silently).
func (s *Server) roleExists(ctx context.Context, k *storedKind, binding, role string) error {
	_, ok, err := s.opts.Authorizer.Role(ctx, role)
	if err != nil || ok {
		return err
	}
	names, err := s.opts.Authorizer.RoleNames(ctx)
	if err != nil {
		return err
	}
	return invalid("%s %q is invalid: roleRef.name: Not found: %q: the roles are: %s", k.info.Kind, binding, role, strings.Join(names, ", "))
}

// mayGrant is escalation prevention: the caller must hold every
// permission of role in project ("" for cluster-wide) already.
func (s *Server) mayGrant(ctx context.Context, k *storedKind, project, role string) error {
	u := auth.IdentityFrom(ctx).User
	ok, err := s.opts.Authorizer.Covers(ctx, u, role, project)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	where := "cluster-wide"
	if project != "" {
		where = fmt.Sprintf("in project %q", project)
	}
	return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
		"%s.%s is forbidden: User %q may not grant role %q %s: they do not hold every permission of that role there themselves (no escalation)",
		k.info.Resource, groupRBAC, u.Name, role, where)}
}

// resourceAccessReview answers who may do a verb on a resource in a
// project (or cluster-wide on the route without a namespace).
func (s *Server) resourceAccessReview(w http.ResponseWriter, r *http.Request) error {
	project := r.PathValue("ns")
	if err := s.authorize(r, "create", auth.Resource{Group: groupAuthz, Resource: "resourceaccessreviews"}, project); err != nil {
		return err
	}
	if project != "" {
		if err := s.requireProject(r, project); err != nil {
			return err
		}
	}
	var review ResourceAccessReview
	if err := decode(w, r, &review); err != nil {
		return err
	}
	if review.Verb == "" || review.Resource == "" {
		return invalid("verb and resource are required")
	}
	users, groups, err := s.opts.Authorizer.WhoCan(r.Context(), review.Verb,
		auth.Resource{Group: review.ResourceAPIGroup, Resource: review.Resource}, project)
	if err != nil {
		return err
	}
	if users == nil {
		users = []string{}
	}
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, http.StatusCreated, ResourceAccessReviewResponse{
		TypeMeta:  TypeMeta{APIVersion: groupAuthz + "/v1", Kind: "ResourceAccessReviewResponse"},
		Namespace: project, Users: users, Groups: groups,
	})
	return nil
}
