package apiserver

import (
	"errors"
	"fmt"
	rbacv1 "k8s.io/api/rbac/v1"
	"net/http"
	"slices"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Role bindings. Berth keeps one binding per (project, role), named after
// the role: a RoleBinding object is the set of subjects holding that role
// in that project. The cluster-scoped routes (clusterrolebindings) are the
// same with no project.

// bindingScope is what a role-binding route acts on.
type bindingScope struct {
	project  string // "" for cluster-wide
	resource auth.Resource
	kind     string // RoleBinding or ClusterRoleBinding
	plural   string // for messages: rolebindings.rbac.authorization.k8s.io
}

func scopeOf(r *http.Request) bindingScope {
	if ns := r.PathValue("ns"); ns != "" {
		return bindingScope{ns, auth.Resource{Group: groupRBAC, Resource: "rolebindings"}, "RoleBinding",
			"rolebindings.rbac.authorization.k8s.io"}
	}
	return bindingScope{"", auth.Resource{Group: groupRBAC, Resource: "clusterrolebindings"}, "ClusterRoleBinding",
		"clusterrolebindings.rbac.authorization.k8s.io"}
}

// authorize checks verb on the scope's resource, then that its project
// exists.
func (s *Server) authorizeBinding(r *http.Request, sc bindingScope, verb string) error {
	if err := s.authorize(r, verb, sc.resource, sc.project); err != nil {
		return err
	}
	if sc.project != "" {
		return s.requireProject(r, sc.project)
	}
	return nil
}

// bindingObjects turns the store's bindings in scope into objects.
func bindingObjects(sc bindingScope, bindings []auth.Binding) []RoleBinding {
	var out []RoleBinding
	for _, b := range bindings {
		if b.Project != sc.project {
			continue
		}
		rb := RoleBinding{
			TypeMeta: TypeMeta{APIVersion: groupRBAC + "/v1", Kind: sc.kind},
			Metadata: ObjectMeta{Name: b.Name, Namespace: sc.project, CreationTimestamp: timestamp(b.Created), ResourceVersion: b.Version},
			RoleRef:  RoleRef{APIGroup: groupRBAC, Kind: "ClusterRole", Name: b.Role},
			Subjects: []Subject{},
		}
		for _, u := range b.Users {
			if project, name, ok := auth.ServiceAccountOf(u); ok {
				rb.Subjects = append(rb.Subjects, Subject{Kind: "ServiceAccount", Name: name, Namespace: project})
			} else {
				rb.Subjects = append(rb.Subjects, Subject{Kind: "User", APIGroup: groupRBAC, Name: u})
			}
		}
		for _, g := range b.Groups {
			rb.Subjects = append(rb.Subjects, Subject{Kind: "Group", APIGroup: groupRBAC, Name: g})
		}
		out = append(out, rb)
	}
	return out
}

func (s *Server) listRoleBindings(w http.ResponseWriter, r *http.Request) error {
	sc := scopeOf(r)
	if err := s.authorizeBinding(r, sc, "list"); err != nil {
		return err
	}
	bindings, err := s.opts.Store.Bindings(r.Context(), sc.project)
	if err != nil {
		return err
	}
	return writeList(w, r, newList(groupRBAC+"/v1", sc.kind+"List", bindingObjects(sc, bindings)), bindingColumns, bindingRow)
}

// binding returns the binding name in scope, or 404.
func (s *Server) binding(r *http.Request, sc bindingScope, name string) (RoleBinding, error) {
	bindings, err := s.opts.Store.Bindings(r.Context(), sc.project)
	if err != nil {
		return RoleBinding{}, err
	}
	for _, rb := range bindingObjects(sc, bindings) {
		if rb.Metadata.Name == name {
			return rb, nil
		}
	}
	return RoleBinding{}, notFound(sc.plural, name)
}

func (s *Server) getRoleBinding(w http.ResponseWriter, r *http.Request) error {
	sc := scopeOf(r)
	if err := s.authorizeBinding(r, sc, "get"); err != nil {
		return err
	}
	rb, err := s.binding(r, sc, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rb)
	return nil
}

// parsedBinding is a RoleBinding from a client as the store keeps it.
type parsedBinding struct {
	name, role string
	subjects   []store.Subject
}

// parseBinding checks a RoleBinding from a client. urlName is the name in
// the URL of a PUT ("" for a POST); a POST without a name is named after
// its role.
func (s *Server) parseBinding(sc bindingScope, rb RoleBinding, urlName string) (parsedBinding, error) {
	role := rb.RoleRef.Name
	if rb.RoleRef.Kind != "ClusterRole" {
		return parsedBinding{}, invalid("roleRef.kind %q is not supported: Berth's roles are cluster roles; use kind ClusterRole", rb.RoleRef.Kind)
	}
	if rb.RoleRef.APIGroup != "" && rb.RoleRef.APIGroup != groupRBAC {
		return parsedBinding{}, invalid("roleRef.apiGroup must be %s", groupRBAC)
	}
	if _, ok := s.opts.Authorizer.Roles[role]; !ok {
		return parsedBinding{}, invalid("role %q does not exist; the roles are: %s", role, strings.Join(s.roleNames(), ", "))
	}
	name := firstOf(rb.Metadata.Name, firstOf(urlName, role))
	if urlName != "" && name != urlName {
		return parsedBinding{}, badRequest("the name of the object (%s) does not match the name on the URL (%s)", name, urlName)
	}
	if problem := bindingNameProblem(name); problem != "" {
		return parsedBinding{}, invalid("%s %q is invalid: metadata.name: %s", sc.kind, name, problem)
	}
	if rb.Metadata.Namespace != "" && rb.Metadata.Namespace != sc.project {
		return parsedBinding{}, invalid("metadata.namespace %q does not match the namespace in the URL %q", rb.Metadata.Namespace, sc.project)
	}
	if len(rb.Subjects) == 0 {
		return parsedBinding{}, invalid("a %s needs at least one subject (to take the role from everyone, delete the binding)", sc.kind)
	}
	var subjects []store.Subject
	for i, sub := range rb.Subjects {
		if sub.Name == "" || strings.ContainsAny(sub.Name, "\x00\n") {
			return parsedBinding{}, invalid("subjects[%d].name is required", i)
		}
		switch sub.Kind {
		case "User", "Group":
			subjects = append(subjects, store.Subject{Kind: sub.Kind, Name: sub.Name})
		case "ServiceAccount":
			ns := sub.Namespace
			if ns == "" {
				ns = sc.project
			}
			if ns == "" || strings.Contains(ns, ":") || strings.Contains(sub.Name, ":") {
				return parsedBinding{}, invalid("subjects[%d]: a ServiceAccount needs a namespace and a name without ':'", i)
			}
			subjects = append(subjects, store.Subject{Kind: "User", Name: auth.ServiceAccountUser(ns, sub.Name)})
		default:
			return parsedBinding{}, invalid("subjects[%d].kind %q must be User, Group or ServiceAccount", i, sub.Kind)
		}
	}
	return parsedBinding{name: name, role: role, subjects: subjects}, nil
}

// bindingNameProblem checks a binding's name as Kubernetes checks names
// that are path segments (binding names often hold ':', as
// system:image-puller does).
func bindingNameProblem(name string) string {
	switch {
	case name == "." || name == "..":
		return "may not be '.' or '..'"
	case strings.ContainsAny(name, "/%"):
		return "may not contain '/' or '%'"
	case len(name) > 253:
		return "must be no more than 253 characters"
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return "may contain printable ASCII characters only, no spaces"
	}
	return ""
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) roleNames() []string {
	var names []string
	for n := range s.opts.Authorizer.Roles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// mayGrant is escalation prevention: the caller must hold every
// permission of role in the scope already.
func (s *Server) mayGrant(r *http.Request, sc bindingScope, role string) error {
	u := caller(r).User
	ok, err := s.opts.Authorizer.Covers(r.Context(), u, role, sc.project)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	where := "cluster-wide"
	if sc.project != "" {
		where = fmt.Sprintf("in project %q", sc.project)
	}
	return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
		"%s is forbidden: User %q may not grant role %q %s: they do not hold every permission of that role there themselves (no escalation)",
		sc.plural, u.Name, role, where)}
}

func (s *Server) createRoleBinding(w http.ResponseWriter, r *http.Request) error {
	return s.writeBinding(w, r, "create")
}

func (s *Server) updateRoleBinding(w http.ResponseWriter, r *http.Request) error {
	return s.writeBinding(w, r, "update")
}

func (s *Server) writeBinding(w http.ResponseWriter, r *http.Request, verb string) error {
	sc := scopeOf(r)
	if err := s.authorizeBinding(r, sc, verb); err != nil {
		return err
	}
	var rb RoleBinding
	if err := decodeBuiltin(w, r, &rb, func() object { return &rbacv1.RoleBinding{} }); err != nil {
		return err
	}
	b, err := s.parseBinding(sc, rb, r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.mayGrant(r, sc, b.role); err != nil {
		return err
	}
	code := http.StatusOK
	if verb == "create" {
		code = http.StatusCreated
		err = s.opts.Store.CreateRoleBinding(r.Context(), sc.project, b.name, b.role, b.subjects)
	} else {
		err = s.opts.Store.UpdateRoleBinding(r.Context(), sc.project, b.name, b.role, b.subjects, rb.Metadata.ResourceVersion)
	}
	switch {
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return &StatusError{http.StatusConflict, "AlreadyExists", fmt.Sprintf("%s %q already exists", sc.plural, b.name)}
	case errors.Is(err, errdefs.ErrNotFound):
		return notFound(sc.plural, b.name)
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return invalid("%s %q is invalid: roleRef: cannot change roleRef", sc.kind, b.name)
	case errors.Is(err, errdefs.ErrConflict):
		return &StatusError{http.StatusConflict, "Conflict", fmt.Sprintf(
			"Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again", sc.plural, b.name)}
	case err != nil:
		return err
	}
	s.log.Info("role binding "+verb+"d", "project", sc.project, "binding", b.name, "role", b.role, "subjects", len(b.subjects), "by", caller(r).User.Name)
	out, err := s.binding(r, sc, b.name)
	if err != nil {
		return err
	}
	writeJSON(w, code, out)
	return nil
}

func (s *Server) deleteRoleBinding(w http.ResponseWriter, r *http.Request) error {
	sc := scopeOf(r)
	if err := s.authorizeBinding(r, sc, "delete"); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := s.opts.Store.DeleteRoleBinding(r.Context(), sc.project, name); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return notFound(sc.plural, name)
		}
		return err
	}
	s.log.Info("role binding deleted", "project", sc.project, "binding", name, "by", caller(r).User.Name)
	writeSuccess(w, name, groupRBAC, sc.resource.Resource)
	return nil
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
