package apiserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	routev1 "github.com/berth-registry/berth/internal/api/route/v1"
	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/store"
)

// Routes are the operator's view of the Config: readable as any kind,
// and every write refused with where to make the change instead.
func TestRoutesAreReadOnly(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	if err := apiserver.EnsureClusterObjects(ctx, s.Store, nil); err != nil {
		t.Fatal(err)
	}
	r := routev1.Route{
		TypeMeta:   metav1.TypeMeta{APIVersion: "route.openshift.io/v1", Kind: "Route"},
		ObjectMeta: metav1.ObjectMeta{Name: "default-route", Namespace: "openshift-image-registry", UID: "u1", Annotations: map[string]string{"imageregistry.openshift.io": "true"}},
		Spec: routev1.RouteSpec{Host: "localhost:5000", To: routev1.RouteTargetReference{Kind: "Service", Name: "image-registry"},
			TLS: &routev1.TLSConfig{Termination: "reencrypt"}, WildcardPolicy: "None"},
	}
	body, _ := json.Marshal(r)
	if _, err := s.Store.CreateObject(ctx, store.Object{ObjectKey: operator.RouteKey("default-route"), UID: "u1", Created: time.Now(), Body: body}); err != nil {
		t.Fatal(err)
	}
	const routes = "/apis/route.openshift.io/v1/namespaces/openshift-image-registry/routes"
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	if got := admin.expect(200, "GET", routes+"/default-route", nil); got.str("spec", "host") != "localhost:5000" || got.str("kind") != "Route" {
		t.Fatalf("get route: %s", got.raw)
	}
	if names := admin.expect(200, "GET", "/apis/route.openshift.io/v1/routes", nil).names(); len(names) != 1 || names[0] != "default-route" {
		t.Fatalf("routes in all projects: %v", names)
	}
	for _, w := range []struct{ method, path string }{
		{"POST", routes}, {"PUT", routes + "/default-route"}, {"PATCH", routes + "/default-route"}, {"DELETE", routes + "/default-route"},
	} {
		a := admin.do(w.method, w.path, map[string]any{})
		if a.code != 405 || a.str("reason") != "MethodNotAllowed" || !strings.Contains(a.str("message"), "spec.defaultRoute or spec.routes") {
			t.Errorf("%s %s as admin: %d %s", w.method, w.path, a.code, a.raw)
		}
	}
	admin.expect(200, "GET", routes+"/default-route", nil)
	bob := login(t, s, "bob", "bob-pw")
	bob.expect(403, "GET", routes+"/default-route", nil)
	bob.expect(403, "DELETE", routes+"/default-route", nil)

	disc := admin.expect(200, "GET", "/apis/route.openshift.io/v1", nil)
	var found bool
	for _, res := range disc.body["resources"].([]any) {
		m := res.(map[string]any)
		if m["name"] == "routes" {
			found = true
			verbs, _ := json.Marshal(m["verbs"])
			if string(verbs) != `["get","list","watch"]` || m["namespaced"] != true || m["kind"] != "Route" {
				t.Errorf("discovery of routes: %v", m)
			}
		}
	}
	if !found {
		t.Fatalf("routes not in discovery: %s", disc.raw)
	}
}
