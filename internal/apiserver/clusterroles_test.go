package apiserver_test

import (
	"bufio"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/auth"
)

const clusterRoles = rbac + "/clusterroles"

func clusterRole(name string, rules ...map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
		"metadata": map[string]any{"name": name}, "rules": rules,
	}
}

func policyRule(group, resource string, verbs ...string) map[string]any {
	return map[string]any{"apiGroups": []string{group}, "resources": []string{resource}, "verbs": verbs}
}

func clusterBinding(name, role string, subjects ...map[string]any) map[string]any {
	b := binding(role, subjects...)
	b["metadata"] = map[string]any{"name": name}
	return b
}

// The reference's procedure, at the API: a cluster administrator creates
// a ClusterRole and binds it; the role is listed beside the built-in
// ones and grants what it says until it is deleted.
func TestCustomClusterRoles(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")

	created := admin.expect(201, "POST", clusterRoles, clusterRole("prometheus-scraper", policyRule("image.openshift.io", "registry/metrics", "get")))
	if created.str("metadata", "uid") == "" || created.str("metadata", "resourceVersion") == "" {
		t.Fatalf("created: %s", created.raw)
	}
	names := admin.expect(200, "GET", clusterRoles, nil).names()
	if len(names) != len(auth.BuiltinRoles)+1 || !slices.Contains(names, "prometheus-scraper") || !slices.Contains(names, "cluster-admin") || !slices.IsSorted(names) {
		t.Fatalf("clusterroles: %v", names)
	}
	if got := admin.expect(200, "GET", clusterRoles+"/prometheus-scraper", nil); !strings.Contains(string(got.raw), `"registry/metrics"`) {
		t.Fatalf("get: %s", got.raw)
	}
	// Pages of a list cover it once, in order.
	var paged []string
	next := ""
	for range 20 {
		a := admin.expect(200, "GET", clusterRoles+"?limit=5&continue="+next, nil)
		paged = append(paged, a.names()...)
		if next = a.str("metadata", "continue"); next == "" {
			break
		}
	}
	if !slices.Equal(paged, names) {
		t.Fatalf("paged list %v, want %v", paged, names)
	}

	// A stored role grants what it says: alice may read ConfigMaps
	// everywhere once bound, and not after the role is gone.
	admin.expect(201, "POST", clusterRoles, clusterRole("configmap-reader", policyRule("", "configmaps", "get", "list")))
	const cms = "/api/v1/namespaces/openshift-config/configmaps"
	alice.expect(403, "GET", cms, nil)
	admin.expect(201, "POST", rbac+"/clusterrolebindings", clusterBinding("alice-reads", "configmap-reader", user("alice")))
	alice.expect(200, "GET", cms, nil)
	// Narrowed: the next request sees it.
	narrowed := clusterRole("configmap-reader", policyRule("", "configmaps", "list"))
	admin.expect(200, "PUT", clusterRoles+"/configmap-reader", narrowed)
	alice.expect(200, "GET", cms, nil)
	alice.expect(403, "GET", cms+"/nothing-here", nil)
	admin.expect(200, "DELETE", clusterRoles+"/configmap-reader", nil)
	alice.expect(403, "GET", cms, nil)
	admin.expect(404, "GET", clusterRoles+"/configmap-reader", nil)

	// A binding must name a role that exists; the message lists the
	// stored ones too.
	bad := admin.expect(422, "POST", rbac+"/clusterrolebindings", clusterBinding("typo", "prometheus-scrapper", user("alice")))
	if msg := bad.str("message"); !strings.Contains(msg, `roleRef.name: Not found: "prometheus-scrapper"`) || !strings.Contains(msg, "prometheus-scraper") {
		t.Fatalf("binding of an unknown role: %s", msg)
	}
}

func TestBuiltinClusterRolesCannotBeWritten(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	everything := clusterRole("view", policyRule("*", "*", "*"))
	if a := admin.expect(409, "POST", clusterRoles, everything); !strings.Contains(a.str("message"), "built into Berth") {
		t.Errorf("create over a built-in role: %s", a.raw)
	}
	if a := admin.expect(403, "PUT", clusterRoles+"/view", everything); !strings.Contains(a.str("message"), "built into Berth") {
		t.Errorf("replace a built-in role: %s", a.raw)
	}
	patch := admin.raw("PATCH", clusterRoles+"/admin", "application/merge-patch+json", []byte(`{"rules":[]}`))
	if patch.code != 403 || !strings.Contains(patch.str("message"), "built into Berth") {
		t.Errorf("patch a built-in role: %d %s", patch.code, patch.raw)
	}
	if a := admin.expect(403, "DELETE", clusterRoles+"/cluster-admin", nil); !strings.Contains(a.str("message"), "cannot delete it") {
		t.Errorf("delete a built-in role: %s", a.raw)
	}
	if got := admin.expect(200, "GET", clusterRoles+"/view", nil); strings.Contains(string(got.raw), `"*"`) {
		t.Fatalf("view changed: %s", got.raw)
	}
	// Rules Berth cannot enforce are refused, not ignored.
	for _, rule := range []map[string]any{
		{"apiGroups": []string{""}, "resources": []string{"secrets"}, "resourceNames": []string{"one"}, "verbs": []string{"get"}},
		{"nonResourceURLs": []string{"/healthz"}, "verbs": []string{"get"}},
		{"apiGroups": []string{""}, "resources": []string{"secrets"}},
	} {
		admin.expect(422, "POST", clusterRoles, clusterRole("odd", rule))
	}
}

// Nobody defines a role granting more than they hold (else they could
// bind it to themselves); a role they may not even write is refused first.
func TestClusterRoleEscalation(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	bob := login(t, s, "bob", "bob-pw")
	scraper := clusterRole("scraper", policyRule("image.openshift.io", "registry/metrics", "get"))
	bob.expect(403, "POST", clusterRoles, scraper)
	bob.expect(403, "GET", clusterRoles, nil)

	// bob may manage ClusterRoles, and holds the metrics right.
	admin.expect(201, "POST", clusterRoles, clusterRole("role-writer",
		policyRule("rbac.authorization.k8s.io", "clusterroles", "get", "list", "create", "update", "patch", "delete"),
		policyRule("image.openshift.io", "registry/metrics", "get")))
	admin.expect(201, "POST", rbac+"/clusterrolebindings", clusterBinding("bob-writes-roles", "role-writer", user("bob")))
	bob.expect(201, "POST", clusterRoles, scraper)
	for _, wider := range []map[string]any{
		clusterRole("pruner", policyRule("image.openshift.io", "images", "delete")),
		clusterRole("all-metrics", policyRule("image.openshift.io", "registry/metrics", "*")),
		clusterRole("superuser", policyRule("*", "*", "*")),
	} {
		a := bob.expect(403, "POST", clusterRoles, wider)
		if !strings.Contains(a.str("message"), "no escalation") {
			t.Errorf("escalation message: %s", a.raw)
		}
	}
	// Widening his own role later is refused the same way, through PUT
	// and PATCH; the role is unchanged.
	bob.expect(403, "PUT", clusterRoles+"/scraper", clusterRole("scraper", policyRule("image.openshift.io", "registry/metrics", "get", "list")))
	patch := bob.raw("PATCH", clusterRoles+"/scraper", "application/json-patch+json",
		[]byte(`[{"op":"add","path":"/rules/-","value":{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}}]`))
	if patch.code != 403 {
		t.Fatalf("patch widening the role: %d %s", patch.code, patch.raw)
	}
	if got := admin.expect(200, "GET", clusterRoles+"/scraper", nil); len(got.body["rules"].([]any)) != 1 {
		t.Fatalf("scraper after refused writes: %s", got.raw)
	}
	// Binding follows the binding rules: bob may not manage bindings.
	bob.expect(403, "POST", rbac+"/clusterrolebindings", clusterBinding("b", "scraper", user("alice")))
	bob.expect(200, "DELETE", clusterRoles+"/scraper", nil)
}

func TestWatchClusterRolesShowsBothSorts(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	admin.expect(201, "POST", clusterRoles, clusterRole("prometheus-scraper", policyRule("image.openshift.io", "registry/metrics", "get")))
	req, err := http.NewRequest("GET", s.URL+clusterRoles+"?watch=1&timeoutSeconds=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+admin.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var added []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{`"name":"prometheus-scraper"`, `"name":"cluster-admin"`} {
			if strings.HasPrefix(line, `{"type":"ADDED"`) && strings.Contains(line, name) {
				added = append(added, name)
			}
		}
	}
	if len(added) != 2 {
		t.Fatalf("watch showed %v, want both roles ADDED", added)
	}
}
