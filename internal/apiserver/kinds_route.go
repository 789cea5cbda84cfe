package apiserver

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	routev1 "github.com/berth-registry/berth/internal/api/route/v1"
)

// Routes (route.openshift.io/v1) are what the operator made of the
// registry Config's spec.defaultRoute and spec.routes: a read-only view,
// as the operator would overwrite any change. The registry serves their
// hosts itself (docs/OPERATOR.md).

const groupRoute = routev1.GroupName

// routesReadOnly is the answer to a write of a Route.
const routesReadOnly = "routes are generated from the registry Config: change spec.defaultRoute or spec.routes of " +
	"configs.imageregistry.operator.openshift.io/cluster instead"

var routeKind = &storedKind{
	info:     servedResource(groupRoute, "routes"),
	new:      func() object { return &routev1.Route{} },
	readOnly: routesReadOnly,
	columns: []metav1.TableColumnDefinition{columnName,
		column("Host/Port", "The host (and port) clients reach the registry at, or why it is not served.", 0),
		column("Path", "The path the route matches (the whole host).", 0),
		column("Services", "The service the route leads to.", 0),
		column("Port", "The service port (all).", 0),
		column("Termination", "How TLS is terminated.", 0),
		column("Wildcard", "The wildcard policy.", 0),
	},
	cells: func(o object) []any {
		r := o.(*routev1.Route)
		host := r.Spec.Host
		for _, in := range r.Status.Ingress {
			for _, c := range in.Conditions {
				if c.Type == routev1.ConditionAdmitted && c.Status == "False" {
					host += " ... not served: " + c.Reason
				}
			}
		}
		termination := ""
		if r.Spec.TLS != nil {
			termination = r.Spec.TLS.Termination
		}
		return []any{r.Name, host, "", r.Spec.To.Name, "<all>", termination, r.Spec.WildcardPolicy}
	},
}

// refuseReadOnly answers the writes of a read-only kind: 405 to a caller
// who could write such objects otherwise, the usual refusal to others.
func (s *Server) refuseReadOnly(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	verbs := map[string]string{http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete"}
	return func(_ http.ResponseWriter, r *http.Request) error {
		if err := s.authorize(r, verbs[r.Method], k.resource(), r.PathValue("ns")); err != nil {
			return err
		}
		return &StatusError{http.StatusMethodNotAllowed, "MethodNotAllowed", k.readOnly}
	}
}
