package apiserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/store"
)

var (
	resProjects        = auth.Resource{Group: groupProject, Resource: "projects"}
	resProjectRequests = auth.Resource{Group: groupProject, Resource: "projectrequests"}
)

const projectsResource = "projects.project.openshift.io"

func projectObject(p store.Project) Project {
	meta := ObjectMeta{Name: p.Name, CreationTimestamp: timestamp(p.Created)}
	if p.Creator != "" {
		meta.Annotations = map[string]string{"openshift.io/requester": p.Creator}
	}
	return Project{
		TypeMeta: TypeMeta{APIVersion: groupProject + "/v1", Kind: "Project"},
		Metadata: meta, Status: ProjectStatus{Phase: "Active"},
	}
}

// createProject is a project request: the caller needs create
// projectrequests cluster-wide (self-provisioner) and becomes the new
// project's admin in the same transaction.
func (s *Server) createProject(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "create", resProjectRequests, ""); err != nil {
		return err
	}
	var req ProjectRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	name := req.Metadata.Name
	if !validName(name) {
		return invalid("project name %q is invalid: use %s, at most %d characters", name, nameRule, maxProjectName)
	}
	if auth.ReservedProject(name) {
		reqlog.FromContext(r.Context()).Decide(reqlog.Denied)
		return nameUnavailable(name)
	}
	u := caller(r).User
	p := store.Project{Name: name, Creator: u.Name}
	if err := s.opts.Store.CreateProject(r.Context(), p); err != nil {
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			return s.nameTaken(r, name, &StatusError{http.StatusConflict, "AlreadyExists", `project "` + name + `" already exists`})
		}
		return err
	}
	created, err := s.opts.Store.Project(r.Context(), name)
	if err != nil {
		return err
	}
	s.log.Info("project created", "project", name, "by", u.Name)
	writeJSON(w, http.StatusCreated, projectObject(created))
	return nil
}

// nameUnavailable refuses a project request for a name reserved for the
// system or taken by a project the caller may not see: one answer for
// both, so that the refusal does not tell which. That the name is not free
// is inherent (a free name is granted), as Kubernetes answers a request
// for an existing namespace AlreadyExists; see docs/SECURITY.md.
func nameUnavailable(name string) *StatusError {
	return &StatusError{http.StatusForbidden, "Forbidden",
		fmt.Sprintf("cannot request a project named %q: the name is reserved for the system or already taken", name)}
}

// nameTaken answers a project request for a name already taken: exists
// when the caller may see that project, nameUnavailable when not.
func (s *Server) nameTaken(r *http.Request, name string, exists *StatusError) error {
	seen, err := s.mayGetProject(r, name)
	if err != nil {
		return err
	}
	if !seen {
		reqlog.FromContext(r.Context()).Decide(reqlog.Hidden)
		return nameUnavailable(name)
	}
	return exists
}

// visibleProjects returns a test of whether the caller may see a project:
// one where they may get projects, or hold any binding (as the reference
// lists the projects you have access to). Project-scoped permissions come
// from bindings in the project or cluster-wide ones, so a caller who may
// not get projects cluster-wide sees exactly the projects they are bound in.
func (s *Server) visibleProjects(ctx context.Context, u auth.User) (func(string) bool, error) {
	all, err := s.opts.Authorizer.Authorize(ctx, u, "get", resProjects, "")
	if err != nil {
		return nil, err
	}
	if all {
		return func(string) bool { return true }, nil
	}
	bound, err := s.opts.Store.ProjectsBoundTo(ctx, u.Name, u.Groups)
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(bound))
	for _, p := range bound {
		set[p] = true
	}
	return func(p string) bool { return set[p] }, nil
}

// projectsOfCaller lists the projects the caller may see.
func (s *Server) projectsOfCaller(r *http.Request) ([]store.Project, error) {
	u := caller(r).User
	if isAnonymous(u) {
		return nil, unauthorized()
	}
	visible, err := s.visibleProjects(r.Context(), u)
	if err != nil {
		return nil, err
	}
	all, err := s.opts.Store.Projects(r.Context())
	if err != nil {
		return nil, err
	}
	var out []store.Project
	for _, p := range all {
		if visible(p.Name) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) error {
	projects, err := s.projectsOfCaller(r)
	if err != nil {
		return err
	}
	page, err := parsePageQuery(r, projectSorts)
	if err != nil {
		return err
	}
	// What is shared is counted among the projects the caller sees: that
	// a project they do not see holds some content is not theirs to learn.
	var among []string
	if all, err := s.opts.Authorizer.Authorize(r.Context(), caller(r).User, "get", resProjects, ""); err != nil {
		return err
	} else if !all {
		among = []string{}
		for _, p := range projects {
			among = append(among, p.Name)
		}
	}
	sums, err := s.opts.Store.ProjectSummaries(r.Context(), among)
	if err != nil {
		return err
	}
	var items []Project
	for _, p := range projects {
		if !page.matchesSearch(p.Name) {
			continue
		}
		o := projectObject(p)
		sum := sums[p.Name]
		o.Status.Images = &ProjectImages{ImageStreams: sum.Streams, Tags: sum.Tags, StorageBytes: sum.Storage, SharedBytes: sum.Shared}
		if !sum.LastPush.IsZero() {
			o.Status.Images.LastPush = timestamp(sum.LastPush)
		}
		items = append(items, o)
	}
	sortProjects(items, page.sortBy, page.desc)
	from, to := page.window(len(items))
	list := newList(groupProject+"/v1", "ProjectList", items[from:to])
	list.Metadata.Continue, list.Metadata.RemainingItemCount = page.pageMeta(to-from, len(items))
	return writeList(w, r, list, projectColumns, projectRow)
}

// projectSorts are the keys projects sort by, the default first.
var projectSorts = []string{"name", "imageStreams", "tags", "storage", "lastPush"}

// sortProjects orders projects (in name order) by key; ties stay in name
// order whichever the direction.
func sortProjects(items []Project, key string, desc bool) {
	sortItems(items, desc, func(a, b Project) int {
		x, y := a.Status.Images, b.Status.Images
		switch key {
		case "imageStreams":
			return cmp.Compare(x.ImageStreams, y.ImageStreams)
		case "tags":
			return cmp.Compare(x.Tags, y.Tags)
		case "storage":
			return cmp.Compare(x.StorageBytes, y.StorageBytes)
		case "lastPush":
			return cmp.Compare(x.LastPush, y.LastPush) // RFC 3339 in UTC sorts as time
		}
		return cmp.Compare(a.Metadata.Name, b.Metadata.Name)
	})
}

// mayGetProject: a project the caller may get, or is bound in.
func (s *Server) mayGetProject(r *http.Request, name string) (bool, error) {
	u := caller(r).User
	ok, err := s.opts.Authorizer.Authorize(r.Context(), u, "get", resProjects, name)
	if err != nil || ok {
		return ok, err
	}
	visible, err := s.visibleProjects(r.Context(), u)
	if err != nil {
		return false, err
	}
	return visible(name), nil
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) error {
	p, err := s.visibleProject(r, r.PathValue("name"), projectsResource)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, projectObject(p))
	return nil
}

// visibleProject returns project name if the caller may see it; one it
// may not see is not found, as a missing one (named as resource).
func (s *Server) visibleProject(r *http.Request, name, resource string) (store.Project, error) {
	if isAnonymous(caller(r).User) {
		return store.Project{}, unauthorized()
	}
	ok, err := s.mayGetProject(r, name)
	if err != nil {
		return store.Project{}, err
	}
	if !ok {
		reqlog.FromContext(r.Context()).Decide(reqlog.Hidden)
		return store.Project{}, notFound(resource, name)
	}
	p, err := s.opts.Store.Project(r.Context(), name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return store.Project{}, notFound(resource, name)
	}
	return p, err
}

// mayLiftBounds refuses the deletion of project name to a caller who may
// not delete the quotas it holds: the deletion takes them with it, and a
// project requested again would start without them.
func (s *Server) mayLiftBounds(r *http.Request, name string) error {
	for _, k := range []*storedKind{resourceQuotaKind, limitRangeKind} {
		objs, _, _, err := s.opts.Store.ListObjects(r.Context(), store.ObjectQuery{Group: k.info.Group, Resource: k.info.Resource, Namespace: name, Limit: 1})
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			continue
		}
		if err := s.authorize(r, "delete", k.resource(), name); err != nil {
			return &StatusError{http.StatusForbidden, "Forbidden", fmt.Sprintf(
				"project %q holds %s %q, which bounds its pushes: deleting the project would lift it, and only who may delete %s there (a cluster administrator) may",
				name, k.info.Kind, objs[0].Name, k.info.Resource)}
		}
	}
	return nil
}

// deleteProject deletes a project and its repositories' metadata (blob
// bytes are left for the garbage collector). Without delete rights the
// caller is told 403 if they can see the project and 404 if not.
func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	u := caller(r).User
	if err := s.authorize(r, "delete", resProjects, name); err != nil {
		if se, ok := errors.AsType[*StatusError](err); !ok || se.Code != http.StatusForbidden {
			return err
		}
		seen, verr := s.mayGetProject(r, name)
		if verr != nil {
			return verr
		}
		if !seen {
			reqlog.FromContext(r.Context()).Decide(reqlog.Hidden)
			return notFound(projectsResource, name)
		}
		return err
	}
	if err := s.mayLiftBounds(r, name); err != nil {
		return err
	}
	if err := refuseWhenReadOnly(r, "deleting project "+name+" would delete its images"); err != nil {
		return err
	}
	gone, err := s.opts.Store.DeleteProjectAndRepositories(r.Context(), name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return notFound(projectsResource, name)
	}
	if err != nil {
		return err
	}
	if s.opts.Blobs != nil {
		for _, u := range gone.Uploads {
			if err := s.opts.Blobs.AbortUpload(context.WithoutCancel(r.Context()), u); err != nil {
				s.log.Warn("discard an upload of a deleted project", "project", name, "upload", u.ID, "err", err)
			}
		}
	}
	s.log.Info("project deleted", "project", name, "by", u.Name, "repositories", len(gone.Repositories), "uploads", len(gone.Uploads))
	writeSuccess(w, name, groupProject, "projects")
	return nil
}
