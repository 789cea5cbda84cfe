package apiserver

import "time"

// The objects of the API, in the shape Kubernetes and the reference
// platform give them, reduced to the fields Berth has.

// TypeMeta says what an object is.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ObjectMeta names an object.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
}

// ListMeta is the metadata of a list.
type ListMeta struct {
	Continue           string `json:"continue,omitempty"`
	RemainingItemCount *int64 `json:"remainingItemCount,omitempty"`
}

type status struct {
	TypeMeta
	Metadata ListMeta `json:"metadata"`
	Status   string   `json:"status"`
	Message  string   `json:"message,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Details  *details `json:"details,omitempty"`
	Code     int      `json:"code"`
}

type details struct {
	Name  string `json:"name"`
	Group string `json:"group,omitempty"`
	Kind  string `json:"kind"`
}

// timestamp formats t as Kubernetes does (RFC 3339, seconds, UTC).
func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// User is user.openshift.io/v1 User.
type User struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
	Groups   []string   `json:"groups"`
}

// UserOAuthAccessToken is oauth.openshift.io/v1 UserOAuthAccessToken
// (never with its secret).
type UserOAuthAccessToken struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
	UserName string     `json:"userName"`
	// ExpiresIn is the token's lifetime in seconds from its creation.
	ExpiresIn int64 `json:"expiresIn"`
}

// Project is project.openshift.io/v1 Project.
type Project struct {
	TypeMeta
	Metadata ObjectMeta    `json:"metadata"`
	Status   ProjectStatus `json:"status"`
}

// ProjectStatus is a project's phase, and in lists what it holds.
type ProjectStatus struct {
	Phase string `json:"phase"`
	// Images is Berth's: what the project's repositories hold, in lists
	// (computed when they are read).
	Images *ProjectImages `json:"images,omitempty"`
}

// ProjectImages is what a project holds.
type ProjectImages struct {
	ImageStreams int `json:"imageStreams"`
	Tags         int `json:"tags"`
	// StorageBytes are the distinct blobs and manifests the project's
	// repositories link (what berth.io/storage quotas count);
	// SharedBytes the part of them other projects link too.
	StorageBytes int64 `json:"storageBytes"`
	SharedBytes  int64 `json:"sharedBytes"`
	// LastPush is when a tag of the project last moved.
	LastPush string `json:"lastPush,omitempty"`
}

// ProjectRequest asks for a project.
type ProjectRequest struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
}

// ResourceAccessReview asks who may do Verb on Resource.
type ResourceAccessReview struct {
	TypeMeta
	Namespace        string `json:"namespace,omitempty"`
	Verb             string `json:"verb"`
	ResourceAPIGroup string `json:"resourceAPIGroup"`
	Resource         string `json:"resource"`
}

// ResourceAccessReviewResponse answers it.
type ResourceAccessReviewResponse struct {
	TypeMeta
	Namespace string   `json:"namespace,omitempty"`
	Users     []string `json:"users"`
	Groups    []string `json:"groups"`
}

// TokenRequest is authentication.k8s.io/v1 TokenRequest.
type TokenRequest struct {
	TypeMeta
	Metadata ObjectMeta         `json:"metadata"`
	Spec     TokenRequestSpec   `json:"spec"`
	Status   TokenRequestStatus `json:"status"`
}

// TokenRequestSpec asks for a lifetime.
type TokenRequestSpec struct {
	ExpirationSeconds *int64 `json:"expirationSeconds,omitempty"`
}

// TokenRequestStatus holds the token.
type TokenRequestStatus struct {
	Token               string `json:"token"`
	ExpirationTimestamp string `json:"expirationTimestamp"`
}

// List is any list: Kind is "<Item>List".
type List[T any] struct {
	TypeMeta
	Metadata ListMeta `json:"metadata"`
	Items    []T      `json:"items"`
}

func newList[T any](apiVersion, kind string, items []T) List[T] {
	if items == nil {
		items = []T{}
	}
	return List[T]{TypeMeta: TypeMeta{APIVersion: apiVersion, Kind: kind}, Items: items}
}
