package apiserver

import (
	"net/http"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-registry/berth/internal/auth"
)

// SelfSubjectAccessReview (authorization.k8s.io/v1) asks whether the
// caller may do a verb on a resource: what kubectl auth can-i sends, and
// how the console decides which actions to offer. Anyone signed in may
// ask about themselves; the answer comes from the authorizer every
// request goes through.

const groupAuthorizationK8s = "authorization.k8s.io"

func (s *Server) selfReviewRoutes() {
	s.handle("POST /apis/"+groupAuthorizationK8s+"/v1/selfsubjectaccessreviews", s.selfSubjectAccessReview)
}

func (s *Server) selfSubjectAccessReview(w http.ResponseWriter, r *http.Request) error {
	u := caller(r).User
	if isAnonymous(u) {
		return unauthorized()
	}
	var review authorizationv1.SelfSubjectAccessReview
	if err := decodeBuiltin(w, r, &review, func() object { return &authorizationv1.SelfSubjectAccessReview{} }); err != nil {
		return err
	}
	attrs := review.Spec.ResourceAttributes
	if attrs == nil {
		// Non-resource URLs (/healthz, /metrics) are not rules of Berth's
		// roles: nobody is granted them by a role.
		if review.Spec.NonResourceAttributes == nil {
			return invalid("spec.resourceAttributes: Required value: what to review")
		}
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: false, Reason: "Berth's roles grant no non-resource URLs"}
	} else {
		if attrs.Verb == "" || attrs.Resource == "" {
			return invalid("spec.resourceAttributes: verb and resource are required")
		}
		resource := attrs.Resource
		if attrs.Subresource != "" {
			resource += "/" + attrs.Subresource
		}
		ok, err := s.opts.Authorizer.Authorize(r.Context(), u, strings.ToLower(attrs.Verb), auth.Resource{Group: attrs.Group, Resource: resource}, attrs.Namespace)
		if err != nil {
			return err
		}
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: ok}
		if ok {
			review.Status.Reason = "allowed by a role bound to " + u.Name
		}
	}
	review.TypeMeta = metav1.TypeMeta{APIVersion: groupAuthorizationK8s + "/v1", Kind: "SelfSubjectAccessReview"}
	return writeJSONOrYAML(w, r, http.StatusCreated, &review)
}
