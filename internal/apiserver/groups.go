package apiserver

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
)

// Groups of users, kept by Berth (a group exists while it has members).
// Managing them is cluster-scoped: only roles granting groups in
// user.openshift.io cluster-wide (cluster-admin) may.

var resGroups = auth.Resource{Group: groupUser, Resource: "groups"}

const groupsResource = "groups.user.openshift.io"

func groupObject(name string, users []string) Group {
	if users == nil {
		users = []string{}
	}
	return Group{TypeMeta: TypeMeta{APIVersion: groupUser + "/v1", Kind: "Group"}, Metadata: ObjectMeta{Name: name}, Users: users}
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "list", resGroups, ""); err != nil {
		return err
	}
	groups, err := s.opts.Store.Groups(r.Context())
	if err != nil {
		return err
	}
	var names []string
	for g := range groups {
		names = append(names, g)
	}
	slices.Sort(names)
	var items []Group
	for _, g := range names {
		items = append(items, groupObject(g, groups[g]))
	}
	return writeList(w, r, newList(groupUser+"/v1", "GroupList", items), groupColumns, groupRow)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "get", resGroups, ""); err != nil {
		return err
	}
	name := r.PathValue("name")
	users, err := s.opts.Store.GroupMembers(r.Context(), name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return notFound(groupsResource, name)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, groupObject(name, users))
	return nil
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	return s.writeGroup(w, r, "create")
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request) error {
	return s.writeGroup(w, r, "update")
}

func (s *Server) writeGroup(w http.ResponseWriter, r *http.Request, verb string) error {
	if err := s.authorize(r, verb, resGroups, ""); err != nil {
		return err
	}
	var g Group
	if err := decode(w, r, &g); err != nil {
		return err
	}
	name := g.Metadata.Name
	if url := r.PathValue("name"); url != "" {
		if name != "" && name != url {
			return invalid("metadata.name %q does not match the name in the URL %q", name, url)
		}
		name = url
	}
	if name == "" {
		return invalid("metadata.name is required")
	}
	if strings.HasPrefix(name, "system:") {
		// The authenticator derives these (system:authenticated,
		// system:serviceaccounts:<project>, …); a stored member would get
		// what they grant without being what they mean.
		return invalid("group names starting with system: are reserved")
	}
	if len(g.Users) == 0 {
		return invalid("a group needs at least one user (Berth keeps a group while it has members; delete it instead)")
	}
	for i, u := range g.Users {
		if u == "" {
			return invalid("users[%d] is empty", i)
		}
	}
	err := s.opts.Store.SetGroupMembers(r.Context(), name, g.Users, verb == "create")
	switch {
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return &StatusError{http.StatusConflict, "AlreadyExists", groupsResource + ` "` + name + `" already exists`}
	case errors.Is(err, errdefs.ErrNotFound):
		return notFound(groupsResource, name)
	case err != nil:
		return err
	}
	s.log.Info("group "+verb+"d", "group", name, "members", len(g.Users), "by", caller(r).User.Name)
	users, err := s.opts.Store.GroupMembers(r.Context(), name)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if verb == "create" {
		code = http.StatusCreated
	}
	writeJSON(w, code, groupObject(name, users))
	return nil
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "delete", resGroups, ""); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := s.opts.Store.SetGroupMembers(r.Context(), name, nil, false); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return notFound(groupsResource, name)
		}
		return err
	}
	s.log.Info("group deleted", "group", name, "by", caller(r).User.Name)
	writeSuccess(w, name, groupUser, "groups")
	return nil
}
