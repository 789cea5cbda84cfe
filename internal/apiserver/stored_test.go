package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/store"
)

const cms = "/api/v1/namespaces/team/configmaps"

func cm(name string, data map[string]string) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"app": name}}, "data": data}
}

func (c client) raw(method, path, contentType string, body []byte, header ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return send(c.t, req)
}

func TestConfigMapsCRUD(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))

	created := alice.expect(201, "POST", cms, cm("a", map[string]string{"k": "1"}))
	rv := created.str("metadata", "resourceVersion")
	if rv == "" || created.str("metadata", "uid") == "" || created.str("metadata", "creationTimestamp") == "" {
		t.Fatalf("created object lacks server fields: %s", created.raw)
	}
	alice.expect(409, "POST", cms, cm("a", nil))

	// PUT with the current resourceVersion works; with the old one, 409.
	upd := cm("a", map[string]string{"k": "2"})
	upd["metadata"].(map[string]any)["resourceVersion"] = rv
	newer := alice.expect(200, "PUT", cms+"/a", upd)
	if newer.str("metadata", "resourceVersion") == rv || newer.str("metadata", "uid") != created.str("metadata", "uid") {
		t.Fatalf("update: %s", newer.raw)
	}
	if a := alice.expect(409, "PUT", cms+"/a", upd); a.str("reason") != "Conflict" {
		t.Fatalf("stale update: %s", a.raw)
	}
	// A no-op patch changes nothing, not even the resourceVersion.
	same := alice.raw("PATCH", cms+"/a", "application/merge-patch+json", []byte(`{"data":{"k":"2"}}`))
	if same.code != 200 || same.str("metadata", "resourceVersion") != newer.str("metadata", "resourceVersion") {
		t.Fatalf("no-op patch: %d %s", same.code, same.raw)
	}
	for ct, patch := range map[string]string{
		"application/merge-patch+json":           `{"data":{"m":"merge"}}`,
		"application/json-patch+json":            `[{"op":"add","path":"/data/j","value":"json"}]`,
		"application/strategic-merge-patch+json": `{"data":{"s":"strategic"}}`,
	} {
		if a := alice.raw("PATCH", cms+"/a", ct, []byte(patch)); a.code != 200 {
			t.Fatalf("%s: %d %s", ct, a.code, a.raw)
		}
	}
	got := alice.expect(200, "GET", cms+"/a", nil)
	data := got.body["data"].(map[string]any)
	if data["m"] != "merge" || data["j"] != "json" || data["s"] != "strategic" || data["k"] != "2" {
		t.Fatalf("after the patches: %s", got.raw)
	}
	// A resourceVersion in a patch is a precondition.
	if a := alice.raw("PATCH", cms+"/a", "application/merge-patch+json", []byte(`{"metadata":{"resourceVersion":"`+rv+`"},"data":{"x":"1"}}`)); a.code != 409 {
		t.Fatalf("patch at a stale version: %d %s", a.code, a.raw)
	}

	alice.expect(201, "POST", cms, cm("b", nil))
	list := alice.expect(200, "GET", cms+"?labelSelector=app%3Db", nil)
	if names := list.names(); len(names) != 1 || names[0] != "b" || list.str("kind") != "ConfigMapList" {
		t.Fatalf("list by label: %s", list.raw)
	}
	if names := alice.expect(200, "GET", cms+"?fieldSelector=metadata.name%3Da", nil).names(); len(names) != 1 || names[0] != "a" {
		t.Fatalf("list by name: %v", names)
	}
	page := alice.expect(200, "GET", cms+"?limit=1", nil)
	next := page.body["metadata"].(map[string]any)["continue"].(string)
	if names := page.names(); len(names) != 1 || names[0] != "a" || next == "" {
		t.Fatalf("first page: %s", page.raw)
	}
	if names := alice.expect(200, "GET", cms+"?limit=1&continue="+next, nil).names(); len(names) != 1 || names[0] != "b" {
		t.Fatalf("second page: %v", names)
	}

	table := alice.raw("GET", cms, "", nil, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if table.str("kind") != "Table" || !strings.Contains(string(table.raw), `"cells":["a",4,`) {
		t.Fatalf("table: %s", table.raw)
	}

	del := alice.expect(200, "DELETE", cms+"/a", nil)
	if del.str("status") != "Success" {
		t.Fatalf("delete: %s", del.raw)
	}
	alice.expect(404, "GET", cms+"/a", nil)
}

func TestStoredKindsRefuseBadInput(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("other"))
	for _, tc := range []struct {
		name, contentType string
		body              string
		code              int
		says              string
	}{
		{"unknown field", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dta":{}}`, 400, "unknown field"},
		{"field name in another case", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"Data":{"a":"1"}}`, 400, `unknown field "Data"`},
		{"field given twice", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1"},"data":{"b":"2"}}`, 400, `duplicate field "data"`},
		{"wrong kind", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`, 400, "not a ConfigMap"},
		{"wrong apiVersion", "application/json", `{"apiVersion":"v2","kind":"ConfigMap","metadata":{"name":"x"}}`, 400, "apiVersion"},
		{"name not DNS-1123", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}`, 422, "RFC 1123"},
		{"no name", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}`, 422, "name or generateName is required"},
		{"another namespace in the body", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}`, 400, "does not match"},
		{"bad data key", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a/b":"1"}}`, 422, "data[a/b]"},
		{"not JSON", "application/json", `{"apiVersion":`, 400, "not a valid object"},
		{"unsupported media type", "text/plain", `x`, 415, "not supported"},
		{"10 MiB body", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":"` + strings.Repeat("x", 10<<20) + `"}}`, 413, "larger than"},
	} {
		a := alice.raw("POST", cms, tc.contentType, []byte(tc.body))
		if a.code != tc.code || a.str("kind") != "Status" || !strings.Contains(a.str("message"), tc.says) {
			t.Errorf("%s: %d %.300s; want %d mentioning %q", tc.name, a.code, a.raw, tc.code, tc.says)
		}
	}
	if names := alice.expect(200, "GET", cms, nil).body["items"].([]any); len(names) != 0 {
		t.Fatalf("refused requests stored objects: %v", names)
	}
	// Secrets: a TLS secret needs its keys; stringData lands in data.
	secrets := "/api/v1/namespaces/team/secrets"
	tls := map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
		"metadata": map[string]any{"name": "cert"}, "stringData": map[string]string{"tls.crt": "x"}}
	if a := alice.expect(422, "POST", secrets, tls); !strings.Contains(a.str("message"), "tls.key") {
		t.Fatalf("TLS secret without a key: %s", a.raw)
	}
	ok := alice.expect(201, "POST", secrets, map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "db"}, "stringData": map[string]string{"password": "s3cr3t"}})
	if ok.str("type") != "Opaque" || ok.body["data"].(map[string]any)["password"] != "czNjcjN0" || ok.body["stringData"] != nil {
		t.Fatalf("secret: %s", ok.raw)
	}
	// A strategic merge patch is for built-in kinds; a bad patch is a 400.
	if a := alice.raw("PATCH", secrets+"/db", "application/json-patch+json", []byte(`[{"op":"nope"}]`)); a.code != 400 {
		t.Fatalf("bad JSON patch: %d %s", a.code, a.raw)
	}
}

func TestStoredKindsAreAuthorized(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", "/api/v1/namespaces/team/secrets", map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "db"}, "stringData": map[string]string{"password": "x"}})
	if a := bob.expect(403, "GET", "/api/v1/namespaces/team/secrets", nil); !strings.Contains(a.str("message"), `cannot list resource "secrets"`) {
		t.Fatalf("bob listing secrets: %s", a.raw)
	}
	alice.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("registry-viewer", user("bob")))
	bob.expect(403, "GET", "/api/v1/namespaces/team/secrets/db", nil)
	anon := client{t: t, base: s.URL}
	anon.expect(401, "GET", "/api/v1/namespaces/team/configmaps", nil)
}

// A watch replays what happened after its resourceVersion and streams
// what happens next; from before the kept history it is 410 Gone.
func TestWatchConfigMaps(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	first := alice.expect(201, "POST", cms, cm("first", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+cms+"?watch=true&resourceVersion="+first.str("metadata", "resourceVersion"), nil)
	req.Header.Set("Authorization", "Bearer "+alice.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("watch = %d", resp.StatusCode)
	}
	alice.expect(201, "POST", cms, cm("second", nil))
	alice.expect(200, "DELETE", cms+"/first", nil)
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	for len(seen) < 2 && sc.Scan() {
		var e struct {
			Type   string
			Object struct{ Metadata struct{ Name string } }
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("watch line %q: %v", sc.Text(), err)
		}
		seen = append(seen, e.Type+" "+e.Object.Metadata.Name)
	}
	if strings.Join(seen, ", ") != "ADDED second, DELETED first" {
		t.Fatalf("watch saw %v", seen)
	}
	if a := alice.expect(400, "GET", cms+"?watch=true&resourceVersion=abc", nil); !strings.Contains(a.str("message"), "resourceVersion") {
		t.Fatalf("bad resourceVersion: %s", a.raw)
	}
}

// The reference procedure "enable the default route": a merge patch of
// the one Config; only cluster admins may, and bad values are refused.
func TestRegistryConfig(t *testing.T) {
	s := newServer(t)
	const cfg = "/apis/imageregistry.operator.openshift.io/v1/configs"
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	createConfig(t, admin)
	def := admin.expect(200, "GET", cfg+"/cluster", nil)
	if g := def.body["metadata"].(map[string]any)["generation"]; g != float64(1) {
		t.Fatalf("a new Config has generation %v, want 1: %s", g, def.raw)
	}
	patched := admin.raw("PATCH", cfg+"/cluster", "application/merge-patch+json", []byte(`{"spec":{"defaultRoute":true}}`))
	if patched.code != 200 || patched.body["spec"].(map[string]any)["defaultRoute"] != true {
		t.Fatalf("patch defaultRoute: %d %s", patched.code, patched.raw)
	}
	// The generation counts changes of the spec, and only those.
	generation := func(a answer) any { return a.body["metadata"].(map[string]any)["generation"] }
	if g := generation(patched); g != float64(2) {
		t.Errorf("generation after a spec change = %v, want 2", g)
	}
	for _, p := range []string{`{"metadata":{"labels":{"a":"b"}}}`, `{"spec":{"defaultRoute":true}}`} {
		if a := admin.raw("PATCH", cfg+"/cluster", "application/merge-patch+json", []byte(p)); a.code != 200 || generation(a) != float64(2) {
			t.Errorf("patch %s: %d, generation %v, want 2", p, a.code, generation(a))
		}
	}
	if a := admin.raw("PATCH", cfg+"/cluster/status", "application/merge-patch+json", []byte(`{"status":{"readyReplicas":3}}`)); a.code != 200 || generation(a) != float64(2) {
		t.Errorf("a status write: %d, generation %v, want 2", a.code, generation(a))
	}
	for patch, says := range map[string]string{
		`{"spec":{"managementState":"Bogus"}}`:                     "spec.managementState",
		`{"spec":{"replicas":-1}}`:                                 "spec.replicas",
		`{"spec":{"routes":[{"name":"r","hostname":"Bad Host"}]}}`: "spec.routes[0].hostname",
		`{"spec":{"storage":{"emptyDir":{},"pvc":{}}}}`:            "exactly one storage type should be configured at the same time, got 2: [EmptyDir PVC]",
		`{"spec":{"requests":{"read":{"maxRunning":-1}}}}`:         "spec.requests.read.maxRunning",
		`{"spec":{"nodeSelector":{"a":"b"}}}`:                      "spec.nodeSelector: Forbidden",
		`{"spec":{"routes":[{"name":"a"},{"name":"a"}]}}`:          "spec.routes[1].name: Duplicate value",
		`{"spec":{"unknown":1}}`:                                   "unknown field",
	} {
		if a := admin.raw("PATCH", cfg+"/cluster", "application/merge-patch+json", []byte(patch)); a.code < 400 || !strings.Contains(a.str("message"), says) {
			t.Errorf("patch %s: %d %s", patch, a.code, a.raw)
		}
	}
	if a := admin.raw("PATCH", cfg+"/cluster", "application/strategic-merge-patch+json", []byte(`{"spec":{}}`)); a.code != 415 {
		t.Errorf("strategic merge on a custom kind: %d, want 415", a.code)
	}
	other := cm("other", nil)
	other["apiVersion"], other["kind"] = "imageregistry.operator.openshift.io/v1", "Config"
	delete(other, "data")
	if a := admin.expect(422, "POST", cfg, other); !strings.Contains(a.str("message"), `only "cluster"`) {
		t.Errorf("a second Config: %s", a.raw)
	}
	bob := login(t, s, "bob", "bob-pw")
	bob.expect(403, "PATCH", cfg+"/cluster", map[string]any{})
	bob.expect(403, "GET", cfg+"/cluster", nil)
}

// A cluster starts with its system projects (an administrator's only) and
// the cluster image settings the reference's "add a CA" procedure edits;
// nobody may request a reserved project name.
func TestClusterObjectsAndReservedProjects(t *testing.T) {
	s := newServer(t)
	// A user created a system project before its name was reserved: at the
	// next start it becomes an administrator's only.
	if err := s.Store.CreateProject(context.Background(), store.Project{Name: "openshift-image-registry", Creator: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Store.AddBinding(context.Background(), "openshift-image-registry", "registry-viewer", "User", "alice"); err != nil {
		t.Fatal(err)
	}
	robot := auth.ServiceAccountUser("openshift-image-registry", "robot")
	if err := s.Store.CreateUser(context.Background(), store.User{Name: robot}); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	if err := apiserver.EnsureClusterObjects(context.Background(), s.Store, slog.New(slog.NewTextHandler(&logged, nil))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.User(context.Background(), robot); err == nil {
		t.Error("the old owner's service account survived the reclaim")
	}
	if !strings.Contains(logged.String(), "admin: admin to User bob") || !strings.Contains(logged.String(), "registry-viewer to User alice") ||
		!strings.Contains(logged.String(), "service account robot") {
		t.Errorf("the removed grants are not logged: %s", logged.String())
	}
	if b, _ := s.Store.Bindings(context.Background(), "openshift-image-registry"); slices.ContainsFunc(b, func(x auth.Binding) bool { return x.Project != "" }) {
		t.Errorf("grants left in the system project: %+v", b)
	}
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	for _, ns := range apiserver.SystemProjects {
		admin.expect(200, "GET", "/api/v1/namespaces/"+ns, nil)
		bob.expect(404, "GET", "/api/v1/namespaces/"+ns, nil)
		bob.expect(403, "POST", "/api/v1/namespaces/"+ns+"/configmaps", cm("x", nil))
	}
	admin.expect(201, "POST", "/api/v1/namespaces/openshift-config/configmaps", cm("registry-config", map[string]string{"myregistry.corp.com..5000": "PEM"}))

	const images = "/apis/config.openshift.io/v1/images"
	c := admin.expect(200, "GET", images+"/cluster", nil)
	if c.str("kind") != "Image" || c.str("apiVersion") != "config.openshift.io/v1" {
		t.Fatalf("cluster image settings: %s", c.raw)
	}
	p := admin.raw("PATCH", images+"/cluster", "application/merge-patch+json", []byte(`{"spec":{"additionalTrustedCA":{"name":"registry-config"}}}`))
	if p.code != 200 || p.body["spec"].(map[string]any)["additionalTrustedCA"].(map[string]any)["name"] != "registry-config" {
		t.Fatalf("set additionalTrustedCA: %d %s", p.code, p.raw)
	}
	for patch, says := range map[string]string{
		`{"spec":{"additionalTrustedCA":{"name":"Bad Name"}}}`:                               "spec.additionalTrustedCA.name",
		`{"spec":{"allowedRegistriesForImport":[{"insecure":true}]}}`:                        "domainName: Required",
		`{"spec":{"registrySources":{"allowedRegistries":["a"],"blockedRegistries":["b"]}}}`: "only one of",
	} {
		if a := admin.raw("PATCH", images+"/cluster", "application/merge-patch+json", []byte(patch)); a.code != 422 || !strings.Contains(a.str("message"), says) {
			t.Errorf("patch %s: %d %s", patch, a.code, a.raw)
		}
	}
	bob.expect(403, "GET", images+"/cluster", nil)

	// kubectl resolves a bare "images" to the first group serving it: the
	// registry's images must come before the cluster settings.
	groups := admin.expect(200, "GET", "/apis", nil)
	var order []string
	for _, g := range groups.body["groups"].([]any) {
		order = append(order, g.(map[string]any)["name"].(string))
	}
	if slices.Index(order, "image.openshift.io") > slices.Index(order, "config.openshift.io") {
		t.Errorf("group order %v puts config.openshift.io first", order)
	}

	for _, name := range []string{"openshift-mine", "kube-x", "default", "openshift"} {
		if a := bob.expect(403, "POST", projects+"/projectrequests", projectRequest(name)); !strings.Contains(a.str("message"), "reserved") {
			t.Errorf("project request %s: %s", name, a.raw)
		}
		bob.expect(403, "POST", "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}})
	}
	admin.expect(201, "POST", "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "kube-system"}})
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("openshiftish"))
}

// The registry Config has a status subresource: the operator writes the
// status through /status, users the spec through the object, and neither
// path changes what the other owns.
func TestConfigStatusSubresource(t *testing.T) {
	s := newServer(t)
	const cfg = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	createConfig(t, admin)
	merge := func(path, patch string) answer {
		t.Helper()
		return admin.raw("PATCH", path, "application/merge-patch+json", []byte(patch))
	}
	a := merge(cfg+"/status", `{"spec":{"readOnly":true},"status":{"readyReplicas":2,"conditions":[{"type":"Available","status":"True","reason":"Ready","message":"","lastTransitionTime":"2026-11-27T00:00:00Z"}]}}`)
	if a.code != 200 || a.body["status"].(map[string]any)["readyReplicas"] != float64(2) || a.body["spec"].(map[string]any)["readOnly"] != nil {
		t.Fatalf("patch status: %d %s", a.code, a.raw)
	}
	a = merge(cfg, `{"spec":{"readOnly":true},"status":{"readyReplicas":9}}`)
	if a.code != 200 || a.body["spec"].(map[string]any)["readOnly"] != true || a.body["status"].(map[string]any)["readyReplicas"] != float64(2) {
		t.Fatalf("patch the object with a status: %d %s", a.code, a.raw)
	}
	got := admin.expect(200, "GET", cfg+"/status", nil)
	if got.body["status"].(map[string]any)["readyReplicas"] != float64(2) || got.body["spec"].(map[string]any)["readOnly"] != true {
		t.Fatalf("get status: %s", got.raw)
	}
	// PUT /status with a stale resourceVersion is a conflict.
	stale := got.body
	stale["metadata"].(map[string]any)["resourceVersion"] = "1"
	admin.expect(409, "PUT", cfg+"/status", stale)
	// /status is its own resource to the authorizer.
	bob := login(t, s, "bob", "bob-pw")
	bob.expect(403, "PATCH", cfg+"/status", map[string]any{})
	res := admin.expect(200, "GET", "/apis/imageregistry.operator.openshift.io/v1", nil)
	found := false
	for _, r := range res.body["resources"].([]any) {
		found = found || r.(map[string]any)["name"] == "configs/status"
	}
	if !found {
		t.Errorf("discovery lacks configs/status: %s", res.raw)
	}
}

// createConfig creates the registry Config as the operator would at start.
func createConfig(t *testing.T, admin client) {
	t.Helper()
	admin.expect(201, "POST", "/apis/imageregistry.operator.openshift.io/v1/configs", map[string]any{
		"apiVersion": "imageregistry.operator.openshift.io/v1", "kind": "Config",
		"metadata": map[string]any{"name": "cluster"},
		"spec":     map[string]any{"managementState": "Managed", "replicas": 1, "storage": map[string]any{"emptyDir": map[string]any{}}},
	})
}
