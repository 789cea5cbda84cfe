package cli

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
)

func TestGroups(t *testing.T) {
	e := newBerthEnv(t)
	e.login("admin", apiservertest.AdminPassword)
	e.login("bob", "bob-pw")
	e.login("alice", "alice-pw")

	// Groups are the cluster administrator's: others get the server's refusal.
	msg := e.fails("bob", "forbidden", "adm", "groups", "new", "devs", "bob")
	if !strings.Contains(msg, "groups") {
		t.Errorf("forbidden message does not name groups: %s", msg)
	}
	e.fails("bob", "forbidden", "get", "groups")
	_, errOut, err := e.as("admin", "", "get", "groups")
	if err != nil || !strings.Contains(errOut, "No resources found") {
		t.Fatalf("no groups: %v %s", err, errOut)
	}
	e.fails("admin", "name at least one user", "adm", "groups", "new", "devs")
	e.fails("admin", "reserved", "adm", "groups", "new", "system:devs", "bob")

	if out := e.ok("admin", "adm", "groups", "new", "devs", "bob"); out != "group.user.openshift.io/devs created\n" {
		t.Fatalf("groups new = %q", out)
	}
	e.fails("admin", `"devs" already exists`, "adm", "groups", "new", "devs", "alice")
	if out := e.ok("admin", "adm", "groups", "add-users", "devs", "alice", "carol", "alice"); out != `group.user.openshift.io/devs added: ["alice" "carol"]`+"\n" {
		t.Fatalf("add-users = %q", out)
	}
	e.ok("admin", "adm", "groups", "add-users", "devs", "bob") // already a member: no change, no error
	e.ok("admin", "adm", "groups", "new", "ops", "carol")
	out := e.ok("admin", "get", "groups")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Fields(lines[0])[0] != "NAME" || strings.Fields(lines[0])[1] != "USERS" ||
		!strings.HasPrefix(lines[1], "devs ") || !strings.HasSuffix(lines[1], "bob, alice, carol") ||
		!strings.HasPrefix(lines[2], "ops ") || !strings.HasSuffix(lines[2], "carol") {
		t.Fatalf("get groups:\n%s", out)
	}
	e.fails("admin", `"nope" not found (create it with berth adm groups new nope USER ...)`, "adm", "groups", "add-users", "nope", "bob")
	e.fails("bob", "forbidden", "adm", "groups", "add-users", "devs", "bob")

	// A grant to the group reaches its members at once.
	e.ok("bob", "new-project", "team")
	e.fails("alice", "not found", "project", "team")
	e.ok("bob", "policy", "add-role-to-group", "registry-viewer", "devs")
	if out := e.ok("alice", "get", "projects"); !strings.Contains(out, "team") {
		t.Fatalf("alice, in devs, does not see team:\n%s", out)
	}

	if out := e.ok("admin", "adm", "groups", "remove-users", "devs", "alice"); out != `group.user.openshift.io/devs removed: "alice"`+"\n" {
		t.Fatalf("remove-users = %q", out)
	}
	e.fails("alice", "not found", "project", "team")
	e.fails("admin", `user "alice" is not in group "devs"`, "adm", "groups", "remove-users", "devs", "alice")
	e.fails("admin", `users ["alice" "dave"] are not in group "devs"`, "adm", "groups", "remove-users", "devs", "bob", "alice", "dave")
	e.fails("admin", "not found", "adm", "groups", "remove-users", "nope", "bob")
	// Removing the last members deletes the group.
	out = e.ok("admin", "adm", "groups", "remove-users", "devs", "bob", "carol")
	if !strings.Contains(out, `group.user.openshift.io "devs" deleted (no members left)`) {
		t.Fatalf("remove-users of the last members = %q", out)
	}
	if out := e.ok("admin", "get", "groups"); strings.Contains(out, "devs") {
		t.Fatalf("devs is still listed:\n%s", out)
	}

	if out := e.ok("admin", "delete", "group", "ops"); out != `group.user.openshift.io "ops" deleted`+"\n" {
		t.Fatalf("delete group = %q", out)
	}
	e.fails("admin", `"ops" not found`, "delete", "group", "ops")
}
