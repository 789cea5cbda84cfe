package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/store"
)

// Projects is what access control asks of the metadata store beyond the
// registry's own data: project existence (a push may create one) and the
// indexes that keep listings to what a caller may see.
type Projects interface {
	Project(ctx context.Context, name string) (store.Project, error)
	CreateProject(ctx context.Context, p store.Project) error
	RepositoryExists(ctx context.Context, repo string) (bool, error)
	ProjectsBoundTo(ctx context.Context, user string, groups []string) ([]string, error)
	RepositoriesIn(ctx context.Context, projects []string, last string, n int) ([]string, bool, error)
	RepositoriesWithBlob(ctx context.Context, dgst digest.Digest, n int) ([]string, error)
}

// action is what a /v2 request does to a repository, in the reference's
// terms (see internal/auth/roles.go).
type action int

const (
	actPing action = iota // GET /v2/: any valid credentials
	actPull
	actPush
	actDelete
	actCatalog
)

var (
	verbPull   = check{"get", auth.ImageStreamLayers}
	verbPush   = check{"update", auth.ImageStreamLayers}
	verbCreate = check{"create", auth.ImageStreams}
	verbDelete = check{"delete", auth.Images}
	// Projects are created by users who may request them.
	verbNewProject = check{"create", auth.Resource{Group: "project.openshift.io", Resource: "projectrequests"}}
	// System (reserved) projects are created by cluster administrators only.
	verbNewNamespace = check{"create", auth.Resource{Resource: "namespaces"}}
)

type check struct {
	verb     string
	resource auth.Resource
}

func (r *Registry) may(ctx context.Context, user auth.User, c check, project string) (bool, error) {
	ok, err := r.authz.Authorize(ctx, user, c.verb, c.resource, project)
	if err != nil {
		return false, &Error{Code: codeUnavailable, Message: "cannot decide access now; retry", Err: err}
	}
	return ok, nil
}

// authorize decides a request before its handler runs. Refusals are
// shaped so that a project the caller may not see answers as one that
// does not exist: the decision never reads whether the project exists,
// except for a push the caller is allowed to create the project with.
func (r *Registry) authorize(req *http.Request, ep endpoint, repo string) error {
	if r.authz == nil {
		return nil
	}
	ctx := req.Context()
	id := auth.IdentityFrom(ctx)
	project, _, _ := strings.Cut(repo, "/")
	switch ep.act {
	case actPing:
		// Clients send credentials only after a challenge, so the version
		// check challenges a request that carries none.
		if req.Header.Get("Authorization") == "" {
			return r.challenge(req, "")
		}
		return nil
	case actCatalog:
		if req.Header.Get("Authorization") == "" {
			return r.challenge(req, "registry:catalog:*")
		}
		return nil // the listing itself is filtered
	case actPull:
		ok, err := r.may(ctx, id.User, verbPull, project)
		if err != nil || ok {
			return err
		}
		if id.Name == auth.AnonymousUser {
			return r.challenge(req, "repository:"+repo+":pull")
		}
		return ep.hide(req)
	case actDelete:
		ok, err := r.may(ctx, id.User, verbDelete, project)
		if err != nil || ok {
			return err
		}
		if id.Name == auth.AnonymousUser {
			return r.challenge(req, "repository:"+repo+":delete")
		}
		if visible, err := r.may(ctx, id.User, verbPull, project); err != nil || !visible {
			return errors.Join(err, ep.hide(req))
		}
		return denied("delete from " + repo)
	case actPush:
		return r.authorizePush(req, id.User, ep, repo, project)
	}
	return fmt.Errorf("no access rule for action %d", ep.act)
}

func (r *Registry) authorizePush(req *http.Request, user auth.User, ep endpoint, repo, project string) error {
	ctx := req.Context()
	ok, err := r.may(ctx, user, verbPush, project)
	if err != nil {
		return err
	}
	if user.Name == auth.AnonymousUser && !ok {
		return r.challenge(req, "repository:"+repo+":pull,push")
	}
	if !ok && !ep.createsRepository {
		// An upload session of a repository the caller may not push to: as
		// any session they do not hold, unless they can see the project.
		if visible, err := r.may(ctx, user, verbPull, project); err != nil || !visible {
			return errors.Join(err, ep.hide(req))
		}
		return denied("push to " + repo)
	}
	if !ok {
		created, err := r.provisionProject(ctx, user, project)
		if err != nil {
			return err
		}
		if !created {
			return denied("push to " + repo)
		}
		if ok, err = r.may(ctx, user, verbPush, project); err != nil || !ok {
			return errors.Join(err, denied("push to "+repo))
		}
	}
	if !ep.createsRepository {
		return nil
	}
	exists, err := r.projects.RepositoryExists(ctx, repo)
	if err != nil {
		return &Error{Code: codeUnavailable, Message: "cannot decide access now; retry", Err: err}
	}
	if exists {
		return nil
	}
	if ok, err := r.may(ctx, user, verbCreate, project); err != nil || !ok {
		return errors.Join(err, newError(codeDenied,
			"requested access to the resource is denied: %s does not exist and you may push only to existing repositories of %s", repo, project))
	}
	return r.ensureProject(ctx, user, project)
}

// ensureProject makes sure the project of a new repository exists: a push
// allowed by a cluster-wide grant to a project nobody created creates it,
// with the pusher as admin, only if the pusher may create projects; no
// repository is ever outside a project.
func (r *Registry) ensureProject(ctx context.Context, user auth.User, project string) error {
	_, err := r.projects.Project(ctx, project)
	if errors.Is(err, errdefs.ErrNotFound) {
		create := verbNewProject
		if auth.ReservedProject(project) {
			create = verbNewNamespace
		}
		if ok, err := r.may(ctx, user, create, ""); err != nil || !ok {
			return errors.Join(err, newError(codeDenied,
				"requested access to the resource is denied: project %s does not exist and you may not create projects", project))
		}
		err = r.projects.CreateProject(ctx, store.Project{Name: project, Creator: user.Name})
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			err = nil
		}
	}
	if err != nil {
		return &Error{Code: codeUnavailable, Message: "cannot record project " + project + " now; retry", Err: err}
	}
	return nil
}

// provisionProject creates project for user, who becomes its admin, when
// it does not exist and user may create projects. It reports whether the
// project may now be there for user, to be checked again.
func (r *Registry) provisionProject(ctx context.Context, user auth.User, project string) (bool, error) {
	if auth.ReservedProject(project) {
		return false, nil
	}
	if ok, err := r.may(ctx, user, verbNewProject, ""); err != nil || !ok {
		return false, err
	}
	_, err := r.projects.Project(ctx, project)
	if err == nil {
		// Someone's project: perhaps user's own, created a moment ago by a
		// parallel request.
		return true, nil
	}
	if !errors.Is(err, errdefs.ErrNotFound) {
		return false, &Error{Code: codeUnavailable, Message: "cannot decide access now; retry", Err: err}
	}
	err = r.projects.CreateProject(ctx, store.Project{Name: project, Creator: user.Name})
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		// A concurrent request created it (clients push layers in
		// parallel); the caller's check again tells whose it is.
		return true, nil
	}
	if err != nil {
		return false, &Error{Code: codeUnavailable, Message: "cannot create project " + project + " now; retry", Err: err}
	}
	r.log.InfoContext(ctx, "project created by a push", "project", project, "admin", user.Name)
	return true, nil
}

// accessAnswer names, for the debug log, the answer authorize gave.
func accessAnswer(err error) string {
	if err == nil {
		return reqlog.Allowed
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		case codeUnauthorized:
			return reqlog.Unauthorized
		case codeDenied:
			return reqlog.Denied
		case codeUnavailable:
			return reqlog.Failed
		}
	}
	// What a missing repository, blob, manifest or session answers.
	return reqlog.Hidden
}

func denied(what string) *Error {
	return newError(codeDenied, "requested access to the resource is denied (%s)", what)
}

// challenge answers a request without (enough) credentials with the
// Docker token flow's challenge, pointing at the token endpoint.
func (r *Registry) challenge(req *http.Request, scope string) *Error {
	scheme := "https"
	if req.TLS == nil {
		scheme = "http"
	}
	v := `Bearer realm="` + scheme + "://" + req.Host + r.tokenRealm + `",service="berth"`
	if scope != "" {
		v += `,scope="` + scope + `"`
	}
	return &Error{Code: codeUnauthorized, Message: "authentication required",
		Header: http.Header{"Www-Authenticate": {v}}}
}

// WriteAuthError answers a request whose credentials were refused.
func (r *Registry) WriteAuthError(w http.ResponseWriter, req *http.Request, err error) {
	var throttled *auth.ThrottledError
	if errors.As(err, &throttled) {
		writeError(w, req, r.log, &Error{Code: codeTooManyRequests, Message: err.Error(),
			Header: http.Header{"Retry-After": {strconv.Itoa(int(throttled.RetryAfter.Seconds() + 0.999))}}})
		return
	}
	if !errors.Is(err, auth.ErrUnauthenticated) {
		writeError(w, req, r.log, &Error{Code: codeUnavailable, Message: "cannot check credentials now; retry", Err: err})
		return
	}
	e := r.challenge(req, "")
	e.Message = err.Error()
	e.Header.Set("Www-Authenticate", e.Header.Get("Www-Authenticate")+`,error="invalid_token"`)
	writeError(w, req, r.log, e)
}

// pullable reports whether user may pull from repo's project.
func (r *Registry) pullable(ctx context.Context, user auth.User, repo string) (bool, error) {
	if r.authz == nil {
		return true, nil
	}
	project, _, _ := strings.Cut(repo, "/")
	return r.may(ctx, user, verbPull, project)
}

// visibleProjects returns the projects whose repositories user may list;
// all is true when a cluster-wide grant covers every project.
func (r *Registry) visibleProjects(ctx context.Context, user auth.User) (projects []string, all bool, err error) {
	if r.authz == nil {
		return nil, true, nil
	}
	if ok, err := r.may(ctx, user, verbPull, ""); err != nil || ok {
		return nil, ok, err
	}
	candidates, err := r.projects.ProjectsBoundTo(ctx, user.Name, user.Groups)
	if err != nil {
		return nil, false, err
	}
	if p, _, ok := auth.ServiceAccountOf(user.Name); ok {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		ok, err := r.may(ctx, user, verbPull, p)
		if err != nil {
			return nil, false, err
		}
		if ok {
			projects = append(projects, p)
		}
	}
	return projects, false, nil
}
