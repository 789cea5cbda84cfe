package apiserver

import (
	"errors"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Service accounts are a stored kind (core ServiceAccount): the generic
// handlers serve them with watch, patch and resourceVersions, and the
// store keeps their users (system:serviceaccount:<project>:<name>, with no
// password: they authenticate only with tokens from TokenRequest) in the
// same transaction; deleting one takes its tokens and grants with it.

var serviceAccountKind = &storedKind{
	info:    servedResource("", "serviceaccounts"),
	new:     func() object { return &corev1.ServiceAccount{} },
	builtin: true,
	columns: []metav1.TableColumnDefinition{columnName,
		column("Secrets", "The number of secrets of the account (Berth keeps none: its tokens are requested).", 0), columnAge},
	cells: func(o object) []any {
		return []any{o.GetName(), int64(len(o.(*corev1.ServiceAccount).Secrets)), age(o)}
	},
}

var (
	resSATokens = auth.Resource{Group: "", Resource: "serviceaccounts/token"}
)

// Lifetimes of service-account tokens, as Kubernetes bounds them (its
// minimum is 10 minutes); the maximum is Berth's.
const (
	DefaultServiceAccountTokenTTL = time.Hour
	MinServiceAccountTokenTTL     = 10 * time.Minute
	MaxServiceAccountTokenTTL     = 365 * 24 * time.Hour
)

const serviceAccountsResource = "serviceaccounts"

// inProject authorizes verb on res in the URL's namespace, then checks
// that the project exists.
func (s *Server) inProject(r *http.Request, verb string, res auth.Resource) (string, error) {
	ns := r.PathValue("ns")
	if err := s.authorize(r, verb, res, ns); err != nil {
		return "", err
	}
	return ns, s.requireProject(r, ns)
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
	if errors.Is(err, errdefs.ErrNotFound) {
		// Deleted between the lookup and the write.
		return notFound(serviceAccountsResource, r.PathValue("name"))
	}
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
