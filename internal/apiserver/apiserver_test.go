package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/store"
)

type client struct {
	t     *testing.T
	base  string
	token string
}

type answer struct {
	code int
	body map[string]any
	raw  []byte
	hdr  http.Header
}

func (a answer) str(path ...string) string {
	var v any = a.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (a answer) strings(key string) []string {
	var out []string
	for _, v := range a.body[key].([]any) {
		out = append(out, v.(string))
	}
	return out
}

// names lists metadata.name of the items of a list.
func (a answer) names() []string {
	var out []string
	for _, it := range a.body["items"].([]any) {
		out = append(out, it.(map[string]any)["metadata"].(map[string]any)["name"].(string))
	}
	return out
}

func (c client) do(method, path string, body any) answer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return send(c.t, req)
}

func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, raw: raw, hdr: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (c client) expect(code int, method, path string, body any) answer {
	c.t.Helper()
	a := c.do(method, path, body)
	if a.code != code {
		c.t.Fatalf("%s %s as %q = %d, want %d: %s", method, path, c.token, a.code, code, a.raw)
	}
	if code >= 400 && a.str("kind") != "Status" && !strings.HasPrefix(path, "/oauth/") {
		c.t.Fatalf("%s %s: error is not a Status: %s", method, path, a.raw)
	}
	return a
}

func tokenRequest(t *testing.T, base string, form url.Values) answer {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return send(t, req)
}

func login(t *testing.T, s *apiservertest.Server, user, password string) client {
	t.Helper()
	a := tokenRequest(t, s.URL, url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}})
	if a.code != 200 || a.str("token_type") != "Bearer" || !strings.HasPrefix(a.str("access_token"), "sha256~") {
		t.Fatalf("login %s = %d %s", user, a.code, a.raw)
	}
	return client{t: t, base: s.URL, token: a.str("access_token")}
}

func newServer(t *testing.T) *apiservertest.Server {
	return apiservertest.New(t, apiservertest.Options{
		Users:         map[string]string{"bob": "bob-pw", "alice": "alice-pw"},
		LoginAttempts: 3,
	})
}

const (
	projects = "/apis/project.openshift.io/v1"
	rbac     = "/apis/rbac.authorization.k8s.io/v1"
	tokens   = "/apis/oauth.openshift.io/v1/useroauthaccesstokens"
	me       = "/apis/user.openshift.io/v1/users/~"
)

func TestOAuthToken(t *testing.T) {
	s := newServer(t)
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"password"}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, c := range []struct {
		name      string
		form      url.Values
		code      int
		err       string
		expiresIn float64
	}{
		{"default lifetime", form("username", "bob", "password", "bob-pw"), 200, "", 86400},
		{"shorter", form("username", "bob", "password", "bob-pw", "expires_in", "60"), 200, "", 60},
		{"capped", form("username", "bob", "password", "bob-pw", "expires_in", "99999999999"), 200, "", 30 * 86400},
		{"bad lifetime", form("username", "bob", "password", "bob-pw", "expires_in", "-1"), 400, "invalid_request", 0},
		{"wrong password", form("username", "bob", "password", "nope"), 400, "invalid_grant", 0},
		{"unknown user", form("username", "zed", "password", "nope"), 400, "invalid_grant", 0},
		{"no password", form("username", "bob"), 400, "invalid_request", 0},
		{"other grant", url.Values{"grant_type": {"client_credentials"}}, 400, "unsupported_grant_type", 0},
	} {
		a := tokenRequest(t, s.URL, c.form)
		if a.code != c.code || a.str("error") != c.err {
			t.Errorf("%s: %d %s", c.name, a.code, a.raw)
			continue
		}
		if c.code == 200 {
			if a.body["expires_in"] != c.expiresIn || a.hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: %s %v", c.name, a.raw, a.hdr)
			}
			who := client{t: t, base: s.URL, token: a.str("access_token")}.expect(200, "GET", me, nil)
			if who.str("metadata", "name") != "bob" {
				t.Errorf("%s: token is for %s", c.name, who.raw)
			}
		}
	}
	// Throttling: alice's wrong passwords lock her out, the right one too.
	for range 3 {
		tokenRequest(t, s.URL, form("username", "alice", "password", "wrong"))
	}
	a := tokenRequest(t, s.URL, form("username", "alice", "password", "alice-pw"))
	if a.code != 429 || a.hdr.Get("Retry-After") == "" || a.str("error") != "invalid_grant" {
		t.Errorf("throttled login = %d %v %s", a.code, a.hdr, a.raw)
	}
	// The API refuses the anonymous user with 401, to send them to log in.
	if a := (client{t: t, base: s.URL}).do("GET", projects+"/projects", nil); a.code != 401 {
		t.Errorf("anonymous project list = %d", a.code)
	}
}

func TestWhoAmIAndTokens(t *testing.T) {
	s := newServer(t)
	anon := client{t: t, base: s.URL}
	anon.expect(401, "GET", me, nil)
	anon.expect(401, "GET", tokens, nil)
	bob := login(t, s, "bob", "bob-pw")
	a := bob.expect(200, "GET", me, nil)
	if a.str("kind") != "User" || a.str("metadata", "name") != "bob" || !slices.Contains(a.strings("groups"), "system:authenticated") {
		t.Fatalf("users/~ = %s", a.raw)
	}
	bob2 := login(t, s, "bob", "bob-pw")
	list := bob.expect(200, "GET", tokens, nil)
	if len(list.names()) != 2 || strings.Contains(string(list.raw), "sha256~") {
		t.Fatalf("token list = %s", list.raw)
	}
	// The token of the request, and only that one, is marked current.
	var current []string
	for _, it := range list.body["items"].([]any) {
		meta := it.(map[string]any)["metadata"].(map[string]any)
		if ann, _ := meta["annotations"].(map[string]any); ann["berth.io/current"] == "true" {
			current = append(current, meta["name"].(string))
		}
	}
	if len(current) != 1 {
		t.Fatalf("tokens marked current: %v in %s", current, list.raw)
	}
	alice := login(t, s, "alice", "alice-pw")
	// Someone else's token is not there to delete.
	alice.expect(404, "DELETE", tokens+"/"+list.names()[0], nil)
	// ~ is the token of the request.
	bob.expect(200, "DELETE", tokens+"/~", nil)
	bob.expect(401, "GET", me, nil)
	bob2.expect(200, "GET", me, nil)
	if n := bob2.expect(200, "GET", tokens, nil).names(); len(n) != 1 || n[0] == current[0] {
		t.Fatalf("after logout: %v (the revoked one was %s)", n, current[0])
	}
	// A request authenticated by password carries no token to revoke.
	req, _ := http.NewRequest("DELETE", s.URL+tokens+"/~", nil)
	req.SetBasicAuth("alice", "alice-pw")
	if a := send(t, req); a.code != 400 {
		t.Fatalf("DELETE ~ with a password = %d %s", a.code, a.raw)
	}
	// Admin may look up users by name; bob may not.
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	if a := admin.expect(200, "GET", "/apis/user.openshift.io/v1/users/bob", nil); a.str("metadata", "name") != "bob" {
		t.Fatalf("users/bob = %s", a.raw)
	}
	bob2.expect(403, "GET", "/apis/user.openshift.io/v1/users/alice", nil)
	admin.expect(404, "GET", "/apis/user.openshift.io/v1/users/nobody", nil)
	bob2.expect(404, "GET", "/apis/nothing/here", nil)
}

func projectRequest(name string) map[string]any {
	return map[string]any{"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": map[string]any{"name": name}}
}

func TestProjects(t *testing.T) {
	s := newServer(t)
	ctx := context.Background()
	anon := client{t: t, base: s.URL}
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	alice := login(t, s, "alice", "alice-pw")

	anon.expect(401, "POST", projects+"/projectrequests", projectRequest("team"))
	a := bob.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	if a.str("kind") != "Project" || a.str("metadata", "name") != "team" || a.str("status", "phase") != "Active" {
		t.Fatalf("project = %s", a.raw)
	}
	if a := bob.expect(409, "POST", projects+"/projectrequests", projectRequest("team")); a.str("reason") != "AlreadyExists" {
		t.Fatalf("second request = %s", a.raw)
	}
	for _, bad := range []string{"", "Team", "-x", "a/b", "a:b", strings.Repeat("a", 254)} {
		if a := bob.expect(422, "POST", projects+"/projectrequests", projectRequest(bad)); a.str("reason") != "Invalid" {
			t.Fatalf("name %q: %s", bad, a.raw)
		}
	}
	bob.expect(400, "POST", projects+"/projectrequests", "not an object")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("alices.images_v2"))

	// Listing shows what each may see.
	for _, c := range []struct {
		who  client
		want []string
	}{{bob, []string{"team"}}, {alice, []string{"alices.images_v2"}}, {admin, []string{"alices.images_v2", "team"}}} {
		if got := c.who.expect(200, "GET", projects+"/projects", nil).names(); !slices.Equal(got, c.want) {
			t.Errorf("projects = %v, want %v", got, c.want)
		}
	}
	bob.expect(200, "GET", projects+"/projects/team", nil)
	admin.expect(200, "GET", projects+"/projects/team", nil)
	// Invisible is exactly missing.
	invisible := alice.expect(404, "GET", projects+"/projects/team", nil)
	missing := alice.expect(404, "GET", projects+"/projects/nope", nil)
	if strings.ReplaceAll(invisible.str("message"), "team", "X") != strings.ReplaceAll(missing.str("message"), "nope", "X") {
		t.Errorf("invisible %s vs missing %s", invisible.raw, missing.raw)
	}
	alice.expect(404, "DELETE", projects+"/projects/team", nil)
	// A viewer sees the project but may not delete it.
	must(t, s.Store.AddBinding(ctx, "team", "registry-viewer", "User", "alice"))
	alice.expect(200, "GET", projects+"/projects/team", nil)
	if a := alice.expect(403, "DELETE", projects+"/projects/team", nil); a.str("reason") != "Forbidden" {
		t.Fatalf("viewer delete = %s", a.raw)
	}

	// Deleting a project deletes its repositories' metadata.
	payload := []byte(`{"schemaVersion":2}`)
	cfg := digest.FromString("cfg")
	must(t, s.Store.LinkBlob(ctx, store.DefaultStorage, "team/app", cfg, 3))
	must(t, s.Store.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", store.Manifest{Digest: digest.FromBytes(payload),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: cfg, Size: 3, Required: true}}}, []string{"v1"}))
	if a := bob.expect(200, "DELETE", projects+"/projects/team", nil); a.str("status") != "Success" {
		t.Fatalf("delete = %s", a.raw)
	}
	if ok, err := s.Store.RepositoryExists(ctx, "team/app"); ok || err != nil {
		t.Fatalf("repository outlived its project: %v %v", ok, err)
	}
	bob.expect(404, "GET", projects+"/projects/team", nil)
	admin.expect(404, "DELETE", projects+"/projects/team", nil)
	// A service account may not request projects.
	sa := saToken(t, alice, "alices.images_v2", "robot")
	if a := sa.expect(403, "POST", projects+"/projectrequests", projectRequest("robots")); !strings.Contains(a.str("message"), "projectrequests") {
		t.Fatalf("SA project request = %s", a.raw)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func saToken(t *testing.T, owner client, project, name string) client {
	t.Helper()
	owner.expect(201, "POST", "/api/v1/namespaces/"+project+"/serviceaccounts",
		map[string]any{"metadata": map[string]any{"name": name}})
	a := owner.expect(201, "POST", "/api/v1/namespaces/"+project+"/serviceaccounts/"+name+"/token",
		map[string]any{"spec": map[string]any{}})
	return client{t: t, base: owner.base, token: a.str("status", "token")}
}

func binding(role string, subjects ...map[string]any) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"name": role},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
		"subjects": subjects,
	}
}

func user(name string) map[string]any  { return map[string]any{"kind": "User", "name": name} }
func group(name string) map[string]any { return map[string]any{"kind": "Group", "name": name} }

func subjectsOf(a answer) []string {
	var out []string
	for _, s := range a.body["subjects"].([]any) {
		m := s.(map[string]any)
		out = append(out, m["kind"].(string)+":"+m["name"].(string))
	}
	slices.Sort(out)
	return out
}

func TestRoleBindings(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	alice := login(t, s, "alice", "alice-pw")
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	rb := rbac + "/namespaces/team/rolebindings"

	a := bob.expect(201, "POST", rb, binding("registry-viewer", user("alice")))
	if a.str("kind") != "RoleBinding" || a.str("metadata", "namespace") != "team" || a.str("roleRef", "name") != "registry-viewer" {
		t.Fatalf("created %s", a.raw)
	}
	bob.expect(409, "POST", rb, binding("registry-viewer", user("carol")))
	a = bob.expect(200, "PUT", rb+"/registry-viewer", binding("registry-viewer", user("alice"), group("qa"),
		map[string]any{"kind": "ServiceAccount", "name": "ci"}))
	if got := subjectsOf(a); !slices.Equal(got, []string{"Group:qa", "ServiceAccount:ci", "User:alice"}) {
		t.Fatalf("subjects after PUT: %v (%s)", got, a.raw)
	}
	a = bob.expect(200, "GET", rb+"/registry-viewer", nil)
	if got := subjectsOf(a); len(got) != 3 {
		t.Fatalf("GET: %s", a.raw)
	}
	if got := bob.expect(200, "GET", rb, nil).names(); !slices.Equal(got, []string{"admin", "registry-viewer"}) {
		t.Fatalf("list = %v", got)
	}
	// Invalid bindings.
	for _, c := range []struct {
		method, path string
		body         map[string]any
	}{
		{"POST", rb, binding("no-such-role", user("x"))},
		{"POST", rb, binding("view")},
		{"POST", rb, map[string]any{"metadata": map[string]any{"name": "bad/name"},
			"roleRef": map[string]any{"kind": "ClusterRole", "name": "view"}, "subjects": []any{user("x")}}},
		{"POST", rb, map[string]any{"roleRef": map[string]any{"kind": "Role", "name": "view"}, "subjects": []any{user("x")}}},
		{"POST", rb, binding("view", map[string]any{"kind": "Robot", "name": "x"})},
	} {
		if a := bob.do(c.method, c.path, c.body); a.code != 422 || a.str("reason") != "Invalid" {
			t.Errorf("%s %s %v = %d %s", c.method, c.path, c.body, a.code, a.raw)
		}
	}
	if a := bob.do("PUT", rb+"/edit", binding("view", user("x"))); a.code != 400 || !strings.Contains(a.str("message"), "does not match the name on the URL") {
		t.Errorf("PUT with another name in the body: %s", a.raw)
	}
	// Bindings have names of their own: a second binding of a role, which
	// the authorizer honours, and whose role cannot change.
	named := map[string]any{"metadata": map[string]any{"name": "pullers"},
		"roleRef": map[string]any{"kind": "ClusterRole", "name": "registry-viewer"}, "subjects": []any{user("alice")}}
	if a := bob.expect(201, "POST", rb, named); a.str("metadata", "name") != "pullers" || a.str("metadata", "creationTimestamp") == "" {
		t.Fatalf("named binding: %s", a.raw)
	}
	bob.expect(200, "DELETE", rb+"/registry-viewer", nil)
	alice.expect(200, "GET", "/apis/image.openshift.io/v1/namespaces/team/imagestreams", nil)
	// Two writers from the same read: the second gets 409 and changes nothing.
	read := bob.expect(200, "GET", rb+"/pullers", nil)
	rv := read.str("metadata", "resourceVersion")
	first := map[string]any{"metadata": map[string]any{"name": "pullers", "resourceVersion": rv},
		"roleRef": map[string]any{"kind": "ClusterRole", "name": "registry-viewer"}, "subjects": []any{user("alice"), user("x1")}}
	if a := bob.expect(200, "PUT", rb+"/pullers", first); a.str("metadata", "resourceVersion") == rv {
		t.Fatalf("the resourceVersion did not change: %s", a.raw)
	}
	second := map[string]any{"metadata": map[string]any{"name": "pullers", "resourceVersion": rv},
		"roleRef": map[string]any{"kind": "ClusterRole", "name": "registry-viewer"}, "subjects": []any{user("alice"), user("x2")}}
	if a := bob.expect(409, "PUT", rb+"/pullers", second); a.str("reason") != "Conflict" {
		t.Fatalf("a write from a stale read: %s", a.raw)
	}
	if got := subjectsOf(bob.expect(200, "GET", rb+"/pullers", nil)); !slices.Equal(got, []string{"User:alice", "User:x1"}) {
		t.Fatalf("after the refused write: %v", got)
	}
	named["roleRef"] = map[string]any{"kind": "ClusterRole", "name": "registry-editor"}
	if a := bob.expect(422, "PUT", rb+"/pullers", named); !strings.Contains(a.str("message"), "cannot change roleRef") {
		t.Errorf("changing roleRef: %s", a.raw)
	}
	if got := bob.expect(200, "GET", rb, nil).names(); !slices.Equal(got, []string{"admin", "pullers"}) {
		t.Fatalf("list = %v", got)
	}
	bob.expect(200, "DELETE", rb+"/pullers", nil)
	alice.expect(403, "GET", "/apis/image.openshift.io/v1/namespaces/team/imagestreams", nil)
	bob.expect(201, "POST", rb, binding("registry-viewer", user("alice")))
	// Escalation: bob administers team but may not grant cluster-admin
	// there, nor anything cluster-wide.
	if a := bob.expect(403, "POST", rb, binding("cluster-admin", user("alice"))); !strings.Contains(a.str("message"), "escalation") {
		t.Fatalf("escalation = %s", a.raw)
	}
	bob.expect(403, "POST", rbac+"/clusterrolebindings", binding("registry-viewer", user("alice")))
	// A registry-viewer may not manage bindings at all.
	alice.expect(403, "POST", rb, binding("registry-viewer", user("carol")))
	alice.expect(403, "GET", rb, nil)
	// Another project: bob may not, whether or not it exists; for admin a
	// missing one has no bindings.
	bob.expect(403, "GET", rbac+"/namespaces/other/rolebindings", nil)
	admin.expect(200, "GET", rbac+"/namespaces/other/rolebindings", nil) // an empty list, as Kubernetes answers
	bob.expect(200, "DELETE", rb+"/registry-viewer", nil)
	bob.expect(404, "DELETE", rb+"/registry-viewer", nil)
	bob.expect(404, "GET", rb+"/registry-viewer", nil)

	// Cluster role bindings.
	crb := rbac + "/clusterrolebindings"
	a = admin.expect(201, "POST", crb, binding("registry-viewer", group("qa")))
	if a.str("kind") != "ClusterRoleBinding" || a.str("metadata", "namespace") != "" {
		t.Fatalf("cluster binding = %s", a.raw)
	}
	if got := admin.expect(200, "GET", crb, nil).names(); !slices.Equal(got, []string{"cluster-admin", "registry-viewer", "self-provisioner"}) {
		t.Fatalf("cluster bindings = %v", got)
	}
	admin.expect(200, "DELETE", crb+"/registry-viewer", nil)
	bob.expect(403, "DELETE", crb+"/self-provisioner", nil)
}

func TestRegistryAdminGrants(t *testing.T) {
	s := apiservertest.New(t, apiservertest.Options{Users: map[string]string{"bob": "bob-pw", "carol": "carol-pw"}})
	bob := login(t, s, "bob", "bob-pw")
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	rb := rbac + "/namespaces/team/rolebindings"
	bob.expect(201, "POST", rb, binding("registry-admin", user("carol")))
	carol := login(t, s, "carol", "carol-pw")
	carol.expect(201, "POST", rb, binding("registry-editor", user("dave")))
	carol.expect(201, "POST", rb, binding("registry-viewer", group("system:unauthenticated")))
	carol.expect(403, "POST", rb, binding("edit", user("dave")))
	carol.expect(403, "PUT", rb+"/admin", binding("admin", user("bob"), user("carol")))
}

func TestResourceAccessReview(t *testing.T) {
	s := newServer(t)
	bob := login(t, s, "bob", "bob-pw")
	alice := login(t, s, "alice", "alice-pw")
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	bob.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("registry-viewer", user("alice")))
	review := map[string]any{"verb": "get", "resource": "imagestreams/layers", "resourceAPIGroup": "image.openshift.io"}
	path := "/apis/authorization.openshift.io/v1/namespaces/team/resourceaccessreviews"
	a := bob.expect(201, "POST", path, review)
	if got := a.strings("users"); !slices.Equal(got, []string{"admin", "alice", "bob"}) {
		t.Errorf("users = %v", got)
	}
	if got := a.strings("groups"); !slices.Equal(got, []string{"system:serviceaccounts:team"}) {
		t.Errorf("groups = %v", got)
	}
	review["verb"] = "update"
	if got := bob.expect(201, "POST", path, review).strings("users"); !slices.Equal(got, []string{"admin", "bob"}) {
		t.Errorf("update users = %v", got)
	}
	alice.expect(403, "POST", path, review)
	bob.expect(422, "POST", path, map[string]any{"verb": "get"})
	bob.expect(403, "POST", "/apis/authorization.openshift.io/v1/resourceaccessreviews", review)
}

func TestServiceAccounts(t *testing.T) {
	s := newServer(t)
	bob := login(t, s, "bob", "bob-pw")
	alice := login(t, s, "alice", "alice-pw")
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	sas := "/api/v1/namespaces/team/serviceaccounts"
	a := bob.expect(201, "POST", sas, map[string]any{"metadata": map[string]any{"name": "ci"}})
	if a.str("kind") != "ServiceAccount" || a.str("metadata", "namespace") != "team" {
		t.Fatalf("created %s", a.raw)
	}
	bob.expect(409, "POST", sas, map[string]any{"metadata": map[string]any{"name": "ci"}})
	bob.expect(422, "POST", sas, map[string]any{"metadata": map[string]any{"name": "a:b"}})
	bob.expect(201, "POST", sas, map[string]any{"metadata": map[string]any{"name": "deploy"}})
	if got := bob.expect(200, "GET", sas, nil).names(); !slices.Equal(got, []string{"ci", "deploy"}) {
		t.Fatalf("list = %v", got)
	}
	bob.expect(200, "GET", sas+"/ci", nil)
	bob.expect(404, "GET", sas+"/nope", nil)
	alice.expect(403, "GET", sas, nil)
	alice.expect(403, "POST", sas+"/ci/token", map[string]any{})
	bob.expect(404, "POST", "/api/v1/namespaces/team/serviceaccounts/nope/token", map[string]any{})
	bob.expect(403, "POST", "/api/v1/namespaces/other/serviceaccounts", map[string]any{"metadata": map[string]any{"name": "x"}})

	a = bob.expect(201, "POST", sas+"/ci/token", map[string]any{"spec": map[string]any{"expirationSeconds": 7200}})
	if a.str("kind") != "TokenRequest" || a.str("status", "expirationTimestamp") == "" {
		t.Fatalf("token request = %s", a.raw)
	}
	ci := client{t: t, base: s.URL, token: a.str("status", "token")}
	who := ci.expect(200, "GET", me, nil)
	if who.str("metadata", "name") != "system:serviceaccount:team:ci" || !slices.Contains(who.strings("groups"), "system:serviceaccounts:team") {
		t.Fatalf("SA identity = %s", who.raw)
	}
	for _, secs := range []int{5, 400 * 86400} {
		bob.expect(422, "POST", sas+"/ci/token", map[string]any{"spec": map[string]any{"expirationSeconds": secs}})
	}
	// Who may request an account's tokens sees when each expires (never
	// the secret); nobody else does.
	const tokens = "/apis/oauth.openshift.io/v1/useroauthaccesstokens"
	ciTokens := bob.expect(200, "GET", tokens+"?fieldSelector=userName%3Dsystem%3Aserviceaccount%3Ateam%3Aci", nil)
	if items := ciTokens.body["items"].([]any); len(items) != 1 || strings.Contains(string(ciTokens.raw), a.str("status", "token")) ||
		items[0].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)["berth.io/expires"] != a.str("status", "expirationTimestamp") {
		t.Fatalf("tokens of ci: %s", ciTokens.raw)
	}
	alice.expect(403, "GET", tokens+"?fieldSelector=userName%3Dsystem%3Aserviceaccount%3Ateam%3Aci", nil)
	bob.expect(403, "GET", tokens+"?fieldSelector=userName%3Dalice", nil)
	bob.expect(400, "GET", tokens+"?fieldSelector=metadata.name%3Dx", nil)
	// And revokes one: the account's requests then fail.
	ciSel := "?fieldSelector=userName%3Dsystem%3Aserviceaccount%3Ateam%3Aci"
	ciID := ciTokens.body["items"].([]any)[0].(map[string]any)["metadata"].(map[string]any)["name"].(string)
	alice.expect(403, "DELETE", tokens+"/"+ciID+ciSel, nil)
	bob.expect(404, "DELETE", tokens+"/"+ciID, nil) // not bob's own
	bob.expect(200, "DELETE", tokens+"/"+ciID+ciSel, nil)
	ci.expect(401, "GET", me, nil)
	bob.expect(404, "DELETE", tokens+"/"+ciID+ciSel, nil)
	// An editor may create accounts and request their tokens.
	bob.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("edit", user("alice")))
	alice.expect(201, "POST", sas+"/deploy/token", map[string]any{})
	alice.expect(200, "GET", tokens+"?fieldSelector=userName%3Dsystem%3Aserviceaccount%3Ateam%3Adeploy", nil)
	bob.expect(200, "DELETE", sas+"/ci", nil)
	ci.expect(401, "GET", me, nil)
	bob.expect(404, "DELETE", sas+"/ci", nil)
}

func TestGroups(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	groups := "/apis/user.openshift.io/v1/groups"
	qa := map[string]any{"metadata": map[string]any{"name": "qa"}, "users": []string{"bob", "alice"}}
	bob.expect(403, "POST", groups, qa)
	a := admin.expect(201, "POST", groups, qa)
	if got := a.strings("users"); !slices.Equal(got, []string{"bob", "alice"}) || a.str("metadata", "resourceVersion") == "" {
		t.Fatalf("group = %s", a.raw)
	}
	admin.expect(409, "POST", groups, qa)
	admin.expect(422, "POST", groups, map[string]any{"metadata": map[string]any{"name": "system:serviceaccounts:team"}, "users": []string{"bob"}})
	if !slices.Contains(bob.expect(200, "GET", me, nil).strings("groups"), "qa") {
		t.Fatal("bob is not in qa")
	}
	admin.expect(200, "PUT", groups+"/qa", map[string]any{"metadata": map[string]any{"name": "qa"}, "users": []string{"alice"}})
	if slices.Contains(bob.expect(200, "GET", me, nil).strings("groups"), "qa") {
		t.Fatal("bob is still in qa")
	}
	if got := admin.expect(200, "GET", groups, nil).names(); !slices.Equal(got, []string{"qa"}) {
		t.Fatalf("groups = %v", got)
	}
	admin.expect(404, "PUT", groups+"/ops", map[string]any{"metadata": map[string]any{"name": "ops"}, "users": []string{"alice"}})
	// A group is an object like any: patch, labels, a stale write refused.
	p := admin.raw("PATCH", groups+"/qa", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"team":"a"}},"users":["alice","carol"]}`))
	if p.code != 200 || p.str("metadata", "labels", "team") != "a" || !slices.Equal(p.strings("users"), []string{"alice", "carol"}) {
		t.Fatalf("patch a group: %d %s", p.code, p.raw)
	}
	stale := map[string]any{"metadata": map[string]any{"name": "qa", "resourceVersion": a.str("metadata", "resourceVersion")}, "users": []string{"dave"}}
	admin.expect(409, "PUT", groups+"/qa", stale)
	admin.expect(200, "DELETE", groups+"/qa", nil)
	admin.expect(404, "GET", groups+"/qa", nil)
	bob.expect(403, "GET", groups, nil)
}
