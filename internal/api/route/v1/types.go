// Package routev1 holds route.openshift.io/v1 Route, with the reference's
// JSON field names. Berth has no router: its Routes are a read-only view
// the operator generates from the registry Config (spec.defaultRoute,
// spec.routes) and the registry serves their hosts itself.
package routev1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// GroupName is the API group of Route.
const GroupName = "route.openshift.io"

// Fixed values of the routes the registry's operator owns.
const (
	// OwnerAnnotation marks a Route the operator generated (value "true").
	OwnerAnnotation = "imageregistry.openshift.io"
	// RouterName is the router named in a Route's status: the registry
	// itself, which serves the host.
	RouterName = "berth"
	// ServiceName is the Service a route leads to, as on the reference.
	ServiceName = "image-registry"
	// TerminationReencrypt is the TLS termination of the registry's routes.
	TerminationReencrypt = "reencrypt"
	// ConditionAdmitted says whether the host is served.
	ConditionAdmitted = "Admitted"
)

// Route is route.openshift.io/v1 Route.
type Route struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RouteSpec   `json:"spec"`
	Status            RouteStatus `json:"status,omitempty"`
}

// RouteSpec is where the route leads.
type RouteSpec struct {
	Host           string               `json:"host,omitempty" description:"The host name (and, when the registry does not listen on 443, the port) clients reach the registry at."`
	To             RouteTargetReference `json:"to" description:"The service the route leads to: the registry."`
	TLS            *TLSConfig           `json:"tls,omitempty" description:"How TLS is terminated (absent when the registry serves plain HTTP)."`
	WildcardPolicy string               `json:"wildcardPolicy,omitempty"`
}

// RouteTargetReference names the route's backend.
type RouteTargetReference struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Weight *int32 `json:"weight,omitempty"`
}

// TLSConfig is the route's TLS termination. Berth never copies the
// certificate or key of a route's secret here: they stay in the Secret.
type TLSConfig struct {
	Termination string `json:"termination"`
}

// RouteStatus says whether the host is served.
type RouteStatus struct {
	Ingress []RouteIngress `json:"ingress,omitempty"`
}

// RouteIngress is the route as one router (the registry) serves it.
type RouteIngress struct {
	Host           string                  `json:"host,omitempty"`
	RouterName     string                  `json:"routerName,omitempty"`
	Conditions     []RouteIngressCondition `json:"conditions,omitempty"`
	WildcardPolicy string                  `json:"wildcardPolicy,omitempty"`
}

// RouteIngressCondition is Admitted: True when the host is served, False
// with why when it is not (a missing or unusable certificate).
type RouteIngressCondition struct {
	Type               string       `json:"type"`
	Status             string       `json:"status"`
	Reason             string       `json:"reason,omitempty"`
	Message            string       `json:"message,omitempty"`
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// DeepCopyObject implements runtime.Object: the kind is plain data, so a
// JSON round trip copies it.
func (r *Route) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(r)
	if err != nil {
		return nil
	}
	out := new(Route)
	if err := json.Unmarshal(b, out); err != nil {
		return nil
	}
	return out
}
