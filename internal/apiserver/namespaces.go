package apiserver

import (
	"errors"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Namespaces are projects seen through the core API (as on the reference
// platform): the same rows, the same visibility, the same rights.

func namespaceObject(p store.Project) *corev1.Namespace {
	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, CreationTimestamp: metav1.NewTime(p.Created)},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	if p.Creator != "" {
		ns.Annotations = map[string]string{"openshift.io/requester": p.Creator}
	}
	return ns
}

var namespaceColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "Status", Type: "string", Description: "The phase of the namespace."}, columnAge}

func namespaceTable(items []*corev1.Namespace) metav1.Table {
	t := newTable(namespaceColumns, "", "")
	for _, ns := range items {
		t.Rows = append(t.Rows, metaRow(ns.ObjectMeta, ns.Name, string(ns.Status.Phase), age(ns)))
	}
	return t
}

func (s *Server) namespaceRoutes() {
	s.handle("GET /api/v1/namespaces", s.listNamespaces)
	s.handle("POST /api/v1/namespaces", s.createNamespace)
	s.handle("GET /api/v1/namespaces/{name}", s.getNamespace)
	s.handle("DELETE /api/v1/namespaces/{name}", s.deleteProject)
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	projects, err := s.projectsOfCaller(r)
	if err != nil {
		return err
	}
	items := make([]*corev1.Namespace, 0, len(projects))
	for _, p := range projects {
		items = append(items, namespaceObject(p))
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, namespaceTable(items))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "NamespaceList", "apiVersion": "v1", "metadata": metav1.ListMeta{}, "items": items,
	})
}

func (s *Server) getNamespace(w http.ResponseWriter, r *http.Request) error {
	p, err := s.visibleProject(r, r.PathValue("name"), "namespaces")
	if err != nil {
		return err
	}
	ns := namespaceObject(p)
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, namespaceTable([]*corev1.Namespace{ns}))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, ns)
}

// createNamespace is a project request in the core API's shape.
func (s *Server) createNamespace(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "create", resProjectRequests, ""); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/vnd.kubernetes.protobuf") {
		k := &storedKind{info: resourceInfo{Version: "v1", Kind: "Namespace"}, new: func() object { return &corev1.Namespace{} }}
		obj, err := k.decodeObject(r, body)
		if err != nil {
			return err
		}
		ns = obj.(*corev1.Namespace)
	} else if err := decodeStrictJSON(body, ns, r.URL.Query().Get("fieldValidation") != "Ignore"); err != nil {
		return err
	}
	if !validName(ns.Name) {
		return invalid("Namespace %q is invalid: metadata.name: use %s, at most %d characters", ns.Name, nameRule, maxProjectName)
	}
	if auth.ReservedProject(ns.Name) {
		// System namespaces are a cluster administrator's, not a request;
		// refused, it is the answer a hidden project's name gets.
		if err := s.authorize(r, "create", auth.Resource{Resource: "namespaces"}, ""); err != nil {
			if se, ok := errors.AsType[*StatusError](err); ok && se.Code == http.StatusForbidden {
				return nameUnavailable(ns.Name)
			}
			return err
		}
	}
	u := caller(r).User
	if err := s.opts.Store.CreateProject(r.Context(), store.Project{Name: ns.Name, Creator: u.Name}); err != nil {
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			return s.nameTaken(r, ns.Name, &StatusError{http.StatusConflict, "AlreadyExists", `namespaces "` + ns.Name + `" already exists`})
		}
		return err
	}
	p, err := s.opts.Store.Project(r.Context(), ns.Name)
	if err != nil {
		return err
	}
	s.log.Info("project created", "project", ns.Name, "by", u.Name)
	return writeJSONOrYAML(w, r, http.StatusCreated, namespaceObject(p))
}
