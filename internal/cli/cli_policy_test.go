package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
)

func TestProjectsPolicyAndServiceAccounts(t *testing.T) {
	e := newBerthEnv(t)
	e.login("admin", apiservertest.AdminPassword)
	e.login("bob", "bob-pw")
	e.login("alice", "alice-pw")

	e.fails("bob", "no current project", "project")
	e.fails("bob", "no project: pass -n PROJECT", "create", "serviceaccount", "ci")
	if out := e.ok("bob", "new-project", "team"); out != `Now using project "team" on server "`+e.srv.URL+`".`+"\n" {
		t.Fatalf("new-project = %q", out)
	}
	if e.config("bob").Project != "team" {
		t.Fatal("new-project did not switch")
	}
	e.fails("bob", `project "team" already exists`, "new-project", "team")
	e.fails("bob", "is invalid", "new-project", "Team")
	if out := e.ok("bob", "project"); !strings.Contains(out, `Using project "team"`) {
		t.Fatalf("project = %q", out)
	}
	if out := e.ok("bob", "get", "projects"); !strings.Contains(out, "NAME") || !strings.Contains(out, "team") {
		t.Fatalf("get projects = %q", out)
	}
	// alice sees nothing of team yet.
	_, errOut, err := e.as("alice", "", "get", "projects")
	if err != nil || !strings.Contains(errOut, "No resources found") {
		t.Fatalf("alice's projects: %v %s", err, errOut)
	}
	e.fails("alice", "not found", "project", "team")

	// The reference's procedure: grant registry-viewer in the current project.
	if out := e.ok("bob", "policy", "add-role-to-user", "registry-viewer", "alice"); out != `clusterrole.rbac.authorization.k8s.io/registry-viewer added: "alice"`+"\n" {
		t.Fatalf("add-role-to-user = %q", out)
	}
	e.ok("bob", "policy", "add-role-to-user", "registry-viewer", "alice") // again: no change, no error
	e.ok("bob", "policy", "add-role-to-user", "registry-viewer", "carol", "-n", "team")
	e.ok("bob", "policy", "add-role-to-group", "registry-viewer", "qa")
	if out := e.ok("alice", "project", "team"); !strings.Contains(out, `Now using project "team"`) {
		t.Fatalf("alice project team = %q", out)
	}
	out := e.ok("bob", "policy", "who-can", "get", "imagestreams/layers")
	for _, want := range []string{"Namespace: team", "imagestreams.image.openshift.io/layers", "alice", "bob", "carol", "admin", "qa", "system:serviceaccounts:team"} {
		if !strings.Contains(out, want) {
			t.Errorf("who-can does not list %q:\n%s", want, out)
		}
	}
	if out := e.ok("bob", "policy", "who-can", "update", "imagestreams.image.openshift.io/layers", "-n", "team"); strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Errorf("who-can update:\n%s", out)
	}
	e.fails("alice", "forbidden", "policy", "who-can", "get", "imagestreams/layers")
	e.ok("bob", "policy", "remove-role-from-user", "registry-viewer", "alice")
	e.fails("bob", `role "registry-viewer" is not granted to "alice"`, "policy", "remove-role-from-user", "registry-viewer", "alice")
	e.ok("bob", "policy", "remove-role-from-user", "registry-viewer", "carol")
	e.ok("bob", "policy", "remove-role-from-group", "registry-viewer", "qa")
	e.fails("bob", `role "registry-viewer" is not granted to anyone in project "team"`, "policy", "remove-role-from-user", "registry-viewer", "carol")

	// Escalation and unknown roles come back with the server's message.
	msg := e.fails("bob", "escalation", "policy", "add-role-to-user", "cluster-admin", "alice")
	if !strings.Contains(msg, "cluster-admin") {
		t.Errorf("escalation message: %s", msg)
	}
	e.fails("bob", `roleRef.name: Not found: "superuser"`, "policy", "add-role-to-user", "superuser", "alice")
	e.fails("alice", "forbidden", "policy", "add-role-to-user", "registry-viewer", "carol", "-n", "team")

	// Cluster roles: only the administrator.
	e.fails("bob", "forbidden", "adm", "policy", "add-cluster-role-to-user", "registry-viewer", "alice")
	e.ok("admin", "adm", "policy", "add-cluster-role-to-user", "registry-viewer", "alice")
	e.ok("admin", "adm", "policy", "add-cluster-role-to-group", "registry-viewer", "qa")
	if out := e.ok("alice", "get", "projects"); !strings.Contains(out, "team") {
		t.Errorf("alice, cluster-wide viewer, does not see team: %s", out)
	}
	e.ok("admin", "adm", "policy", "remove-cluster-role-from-user", "registry-viewer", "alice")
	e.ok("admin", "adm", "policy", "remove-cluster-role-from-group", "registry-viewer", "qa")

	// Service accounts and their tokens.
	if out := e.ok("bob", "create", "serviceaccount", "ci"); out != "serviceaccount/ci created\n" {
		t.Fatalf("create serviceaccount = %q", out)
	}
	e.fails("bob", "already exists", "create", "sa", "ci", "-n", "team")
	token := strings.TrimSpace(e.ok("bob", "create", "token", "ci", "--duration", "24h"))
	if !strings.HasPrefix(token, "sha256~") {
		t.Fatalf("token = %q", token)
	}
	if code := e.get(token, "/apis/user.openshift.io/v1/users/~"); code != 200 {
		t.Fatalf("service-account token: %d", code)
	}
	e.fails("bob", "expirationSeconds", "create", "token", "ci", "--duration", "1m")
	e.fails("bob", "not found", "create", "token", "nobody")
	e.ok("bob", "policy", "add-role-to-user", "registry-editor", "-z", "ci")
	bindings := struct {
		Subjects []subject `json:"subjects"`
	}{}
	_, c, err := sessionAs(e, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.do(t.Context(), "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/registry-editor", nil, &bindings); err != nil {
		t.Fatal(err)
	}
	if len(bindings.Subjects) != 1 || bindings.Subjects[0] != (subject{Kind: "ServiceAccount", Name: "ci", Namespace: "team"}) {
		t.Fatalf("registry-editor subjects = %+v", bindings.Subjects)
	}
	e.ok("bob", "policy", "remove-role-from-user", "registry-editor", "-z", "ci")

	// Deleting the project: alice, no longer bound in it, cannot see it;
	// bob may, and it stops being his current project.
	e.fails("alice", `"team" not found`, "delete", "project", "team")
	if out := e.ok("bob", "delete", "project", "team"); out != `project.project.openshift.io "team" deleted`+"\n" {
		t.Fatalf("delete project = %q", out)
	}
	if e.config("bob").Project != "" {
		t.Fatal("deleted project is still current")
	}
	e.ok("bob", "new-project", "team2")
	e.fails("bob", `"nosuch" not found`, "delete", "project", "team2", "nosuch")
	if e.config("bob").Project != "" {
		t.Fatal("a project deleted by a delete that failed in part is still current")
	}
	if code := e.get(token, "/apis/user.openshift.io/v1/users/~"); code != 401 {
		t.Fatalf("token of a deleted project's service account: %d", code)
	}
	e.fails("bob", "not found", "delete", "project", "team")
}

func sessionAs(e *berthEnv, user string) (*clientConfig, *apiClient, error) {
	e.t.Setenv("BERTH_CONFIG", e.dir+"/"+user+"/config")
	return session()
}

func TestParseResource(t *testing.T) {
	for _, c := range []struct{ in, resource, group string }{
		{"imagestreams/layers", "imagestreams/layers", "image.openshift.io"},
		{"imagestreams.image.openshift.io/layers", "imagestreams/layers", "image.openshift.io"},
		{"images", "images", "image.openshift.io"},
		{"serviceaccounts", "serviceaccounts", ""},
		{"serviceaccounts/token", "serviceaccounts/token", ""},
		{"projects", "projects", "project.openshift.io"},
		{"widgets.example.com", "widgets", "example.com"},
	} {
		r, g := parseResource(c.in)
		if r != c.resource || g != c.group {
			t.Errorf("parseResource(%q) = %q %q", c.in, r, g)
		}
	}
}

// Concurrent grants of one role, each a read-modify-write of the same
// binding, lose none: a write from a stale read gets 409 and is retried.
func TestConcurrentGrantsLoseNone(t *testing.T) {
	e := newBerthEnv(t)
	e.login("bob", "bob-pw")
	e.ok("bob", "new-project", "team")
	_, c, err := sessionAs(e, "bob")
	if err != nil {
		t.Fatal(err)
	}
	target := bindingTarget{project: "team"}
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- changeRole(t.Context(), c, target, "registry-viewer", []subject{{Kind: "User", APIGroup: groupRBAC, Name: fmt.Sprintf("user%02d", i)}}, true)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	var rb roleBinding
	if err := c.do(t.Context(), "GET", target.collection()+"/registry-viewer", nil, &rb); err != nil {
		t.Fatal(err)
	}
	if len(rb.Subjects) != n {
		t.Fatalf("%d grants left %d subjects: %+v", n, len(rb.Subjects), rb.Subjects)
	}
}

// A removal retried after a conflict finds the subjects the lost attempt
// already took out; it goes on with the others instead of failing halfway.
func TestRemovalRetryFinishesTheJob(t *testing.T) {
	e := newBerthEnv(t)
	e.login("bob", "bob-pw")
	e.ok("bob", "new-project", "team")
	e.ok("bob", "create", "rolebinding", "pullers", "--clusterrole=registry-viewer", "--user=carol")
	e.ok("bob", "create", "rolebinding", "registry-viewer", "--clusterrole=registry-viewer", "--user=alice")
	_, c, err := sessionAs(e, "bob")
	if err != nil {
		t.Fatal(err)
	}
	target := bindingTarget{project: "team"}
	both := []subject{{Kind: "User", APIGroup: groupRBAC, Name: "alice"}, {Kind: "User", APIGroup: groupRBAC, Name: "carol"}}
	// The attempt that lost its race had removed carol already.
	e.ok("bob", "delete", "rolebinding", "pullers")
	if err := changeRoleOnce(t.Context(), c, target, "registry-viewer", both, false, true); err == nil || !strings.Contains(err.Error(), `not granted to "carol"`) {
		t.Fatalf("a first attempt names what was never granted: %v", err)
	}
	if err := changeRoleOnce(t.Context(), c, target, "registry-viewer", both, false, false); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	if out := e.ok("bob", "get", "rolebindings", "-o", "wide"); strings.Contains(out, "alice") {
		t.Fatalf("alice still holds the role:\n%s", out)
	}
}
