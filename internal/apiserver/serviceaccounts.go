package apiserver

import (
	"errors"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Service accounts are users named system:serviceaccount:<project>:<name>
// with no password: they authenticate only with tokens from TokenRequest.

var (
	resServiceAccounts = auth.Resource{Group: "", Resource: "serviceaccounts"}
	resSATokens        = auth.Resource{Group: "", Resource: "serviceaccounts/token"}
)

// Lifetimes of service-account tokens, as Kubernetes bounds them (its
// minimum is 10 minutes); the maximum is Berth's.
const (
	DefaultServiceAccountTokenTTL = time.Hour
	MinServiceAccountTokenTTL     = 10 * time.Minute
	MaxServiceAccountTokenTTL     = 365 * 24 * time.Hour
)

const serviceAccountsResource = "serviceaccounts"

func serviceAccountObject(u store.User) (ServiceAccount, bool) {
	project, name, ok := auth.ServiceAccountOf(u.Name)
	return ServiceAccount{
		TypeMeta: TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		Metadata: ObjectMeta{Name: name, Namespace: project, CreationTimestamp: timestamp(u.Created)},
	}, ok
}

// inProject authorizes verb on res in the URL's namespace, then checks
// that the project exists.
func (s *Server) inProject(r *http.Request, verb string, res auth.Resource) (string, error) {
	ns := r.PathValue("ns")
	if err := s.authorize(r, verb, res, ns); err != nil {
		return "", err
	}
	return ns, s.requireProject(r, ns)
}

func (s *Server) createServiceAccount(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.inProject(r, "create", resServiceAccounts)
	if err != nil {
		return err
	}
	var sa ServiceAccount
	if err := decodeBuiltin(w, r, &sa, func() object { return &corev1.ServiceAccount{} }); err != nil {
		return err
	}
	name := sa.Metadata.Name
	if !validName(name) {
		return invalid("service account name %q is invalid: use %s", name, nameRule)
	}
	if sa.Metadata.Namespace != "" && sa.Metadata.Namespace != ns {
		return invalid("metadata.namespace %q does not match the namespace in the URL %q", sa.Metadata.Namespace, ns)
	}
	user := auth.ServiceAccountUser(ns, name)
	if err := s.opts.Store.CreateUser(r.Context(), store.User{Name: user}); err != nil {
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			return &StatusError{http.StatusConflict, "AlreadyExists", `serviceaccounts "` + name + `" already exists`}
		}
		return err
	}
	created, err := s.opts.Store.User(r.Context(), user)
	if err != nil {
		return err
	}
	s.log.Info("service account created", "project", ns, "name", name, "by", caller(r).User.Name)
	obj, _ := serviceAccountObject(created)
	writeJSON(w, http.StatusCreated, obj)
	return nil
}

func (s *Server) listServiceAccounts(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.inProject(r, "list", resServiceAccounts)
	if err != nil {
		return err
	}
	users, err := s.opts.Store.UsersWithPrefix(r.Context(), auth.ServiceAccountUser(ns, ""))
	if err != nil {
		return err
	}
	var items []ServiceAccount
	for _, u := range users {
		if obj, ok := serviceAccountObject(u); ok && obj.Metadata.Namespace == ns {
			items = append(items, obj)
		}
	}
	return writeList(w, r, newList("v1", "ServiceAccountList", items), serviceAccountColumns, serviceAccountRow)
}

// serviceAccount returns the stored service account the URL names, or 404.
func (s *Server) serviceAccount(r *http.Request, ns string) (store.User, error) {
	name := r.PathValue("name")
	if strings.Contains(name, ":") {
		return store.User{}, notFound(serviceAccountsResource, name)
	}
	u, err := s.opts.Store.User(r.Context(), auth.ServiceAccountUser(ns, name))
	if errors.Is(err, errdefs.ErrNotFound) {
		return store.User{}, notFound(serviceAccountsResource, name)
	}
	return u, err
}

func (s *Server) getServiceAccount(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.inProject(r, "get", resServiceAccounts)
	if err != nil {
		return err
	}
	u, err := s.serviceAccount(r, ns)
	if err != nil {
		return err
	}
	obj, _ := serviceAccountObject(u)
	writeJSON(w, http.StatusOK, obj)
	return nil
}

// deleteServiceAccount removes the account with its tokens and bindings.
func (s *Server) deleteServiceAccount(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.inProject(r, "delete", resServiceAccounts)
	if err != nil {
		return err
	}
	u, err := s.serviceAccount(r, ns)
	if err != nil {
		return err
	}
	if err := s.opts.Store.DeleteUser(r.Context(), u.Name); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return notFound(serviceAccountsResource, r.PathValue("name"))
		}
		return err
	}
	s.log.Info("service account deleted", "project", ns, "name", r.PathValue("name"), "by", caller(r).User.Name)
	writeSuccess(w, r.PathValue("name"), "", serviceAccountsResource)
	return nil
}

// createServiceAccountToken is TokenRequest: a token for the account,
// valid spec.expirationSeconds (default one hour).
func (s *Server) createServiceAccountToken(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.inProject(r, "create", resSATokens)
	if err != nil {
		return err
	}
	var req TokenRequest
	if err := decodeBuiltin(w, r, &req, func() object { return &authenticationv1.TokenRequest{} }); err != nil {
		return err
	}
	u, err := s.serviceAccount(r, ns)
	if err != nil {
		return err
	}
	ttl := DefaultServiceAccountTokenTTL
	if secs := req.Spec.ExpirationSeconds; secs != nil {
		if *secs < int64(MinServiceAccountTokenTTL/time.Second) || *secs > int64(MaxServiceAccountTokenTTL/time.Second) {
			return invalid("spec.expirationSeconds must be between %d (%s) and %d (%s)",
				int64(MinServiceAccountTokenTTL/time.Second), MinServiceAccountTokenTTL,
				int64(MaxServiceAccountTokenTTL/time.Second), "one year")
		}
		ttl = time.Duration(*secs) * time.Second
	}
	by := caller(r).User.Name
	secret, rec, err := s.opts.Issuer.Issue(r.Context(), u.Name, ttl, "token request by "+by)
	if err != nil {
		return err
	}
	s.log.Info("issued a service-account token", "project", ns, "name", r.PathValue("name"), "token", rec.ID, "expires", rec.Expires, "by", by)
	secs := int64(ttl / time.Second)
	writeJSON(w, http.StatusCreated, TokenRequest{
		TypeMeta: TypeMeta{APIVersion: groupAuthn + "/v1", Kind: "TokenRequest"},
		Metadata: ObjectMeta{Name: r.PathValue("name"), Namespace: ns, CreationTimestamp: timestamp(time.Now())},
		Spec:     TokenRequestSpec{ExpirationSeconds: &secs},
		Status:   TokenRequestStatus{Token: secret, ExpirationTimestamp: timestamp(rec.Expires)},
	})
	return nil
}
