package cli

import (
	"strings"
	"testing"
)

func TestServiceAccountsAndRoleBindings(t *testing.T) {
	e := newBerthEnv(t)
	e.login("bob", "bob-pw")
	e.login("alice", "alice-pw")
	e.fails("bob", "no project: pass -n PROJECT", "get", "serviceaccounts")
	e.fails("bob", "no project: pass -n PROJECT", "get", "rolebindings")
	e.fails("bob", "no project: pass -n PROJECT", "delete", "serviceaccount", "ci")
	e.ok("bob", "new-project", "team")

	_, errOut, err := e.as("bob", "", "get", "serviceaccounts")
	if err != nil || errOut != "No resources found in team namespace.\n" {
		t.Fatalf("no service accounts: %v %q", err, errOut)
	}
	e.ok("bob", "create", "serviceaccount", "ci")
	e.ok("bob", "create", "sa", "deploy")
	out := e.ok("bob", "get", "sa")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME SECRETS AGE" ||
		strings.Fields(lines[1])[0] != "ci" || strings.Fields(lines[2])[0] != "deploy" || !strings.HasSuffix(lines[1], "s") {
		t.Fatalf("get serviceaccounts:\n%s", out)
	}
	// alice, who has no role in team, is refused with the server's message.
	e.fails("alice", "forbidden", "get", "serviceaccounts", "-n", "team")
	e.fails("alice", "forbidden", "get", "rolebindings", "-n", "team")
	e.fails("alice", "forbidden", "delete", "serviceaccount", "ci", "-n", "team")

	// The creator's admin binding, then grants to a user, a group and a
	// service account in one binding.
	e.ok("bob", "policy", "add-role-to-user", "registry-viewer", "alice")
	e.ok("bob", "policy", "add-role-to-group", "registry-viewer", "qa")
	e.ok("bob", "policy", "add-role-to-user", "registry-viewer", "-z", "ci")
	out = e.ok("bob", "get", "rolebindings", "-n", "team", "-o", "wide")
	rows := map[string]string{}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if strings.Join(strings.Fields(lines[0]), " ") != "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS" {
		t.Fatalf("get rolebindings header:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = strings.Join(append(f[1:2], f[3:]...), " ")
	}
	if rows["admin"] != "ClusterRole/admin bob" {
		t.Errorf("admin binding %q:\n%s", rows["admin"], out)
	}
	if rows["registry-viewer"] != "ClusterRole/registry-viewer alice qa team/ci" {
		t.Errorf("registry-viewer binding %q:\n%s", rows["registry-viewer"], out)
	}
	// A viewer may neither read the bindings nor take a service account away.
	e.fails("alice", "forbidden", "get", "rolebindings", "-n", "team")
	e.fails("alice", "forbidden", "delete", "serviceaccount", "ci", "-n", "team")

	// Deleting the account takes its bindings with it.
	if out := e.ok("bob", "delete", "serviceaccount", "ci"); out != `serviceaccount "ci" deleted from team namespace`+"\n" {
		t.Fatalf("delete serviceaccount = %q", out)
	}
	e.fails("bob", `serviceaccounts "ci" not found`, "delete", "sa", "ci")
	if out := e.ok("bob", "get", "serviceaccounts", "-n", "team"); strings.Contains(out, "ci") || !strings.Contains(out, "deploy") {
		t.Fatalf("after deleting ci:\n%s", out)
	}
	if out := e.ok("bob", "get", "rolebindings", "-o", "wide"); strings.Contains(out, "team/ci") {
		t.Fatalf("ci is still bound:\n%s", out)
	}
	e.fails("bob", "forbidden", "get", "rolebindings", "-n", "nowhere")
}

// The policy verbs work with bindings of any name, as the reference's do:
// a grant joins an existing binding of the role, a removal takes the user
// out of every binding of it.
func TestPolicyOverNamedBindings(t *testing.T) {
	e := newBerthEnv(t)
	e.login("bob", "bob-pw")
	e.login("alice", "alice-pw")
	e.ok("bob", "new-project", "team")
	if out := e.ok("bob", "create", "rolebinding", "pullers", "--clusterrole=registry-viewer", "--user=alice"); out != "rolebinding.rbac.authorization.k8s.io/pullers created\n" {
		t.Fatalf("create rolebinding: %q", out)
	}
	if out := e.ok("alice", "get", "projects"); !strings.Contains(out, "team") {
		t.Fatalf("alice, bound by pullers, does not see team:\n%s", out)
	}
	e.ok("bob", "policy", "add-role-to-user", "registry-viewer", "carol")
	if got := e.ok("bob", "get", "rolebinding", "pullers", "-o", "jsonpath={.subjects[*].name}"); got != "alice carol" {
		t.Fatalf("pullers after add-role-to-user = %q", got)
	}
	// A binding named after another role's name does not get in the way.
	e.ok("bob", "create", "rolebinding", "registry-editor", "--clusterrole=registry-viewer", "--user=dave")
	e.ok("bob", "policy", "add-role-to-user", "registry-editor", "erin")
	if got := e.ok("bob", "get", "rolebinding", "registry-editor-0", "-o", "jsonpath={.roleRef.name} {.subjects[*].name}"); got != "registry-editor erin" {
		t.Fatalf("the new binding of registry-editor = %q", got)
	}
	e.ok("bob", "policy", "remove-role-from-user", "registry-viewer", "alice", "dave")
	out := e.ok("bob", "get", "rolebindings", "-o", "wide")
	if strings.Contains(out, "alice") || strings.Contains(out, "dave") || !strings.Contains(out, "carol") {
		t.Fatalf("after removing alice and dave:\n%s", out)
	}
	if _, errOut, err := e.as("bob", "", "get", "rolebinding", "registry-editor"); err == nil {
		t.Fatalf("the emptied binding registry-editor is still there: %s", errOut)
	}
	e.fails("bob", `role "registry-viewer" is not granted to "alice"`, "policy", "remove-role-from-user", "registry-viewer", "alice")
	e.fails("alice", "not found", "project", "team")
}
