package cli

import (
	"strings"
	"testing"
	"time"
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
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME AGE" ||
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
	out = e.ok("bob", "get", "rolebindings", "-n", "team")
	rows := map[string]string{}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if strings.Join(strings.Fields(lines[0]), " ") != "NAME ROLE SUBJECTS" {
		t.Fatalf("get rolebindings header:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = strings.Join(f[1:], " ")
	}
	if rows["admin"] != "ClusterRole/admin User/bob" {
		t.Errorf("admin binding %q:\n%s", rows["admin"], out)
	}
	if rows["registry-viewer"] != "ClusterRole/registry-viewer User/alice, ServiceAccount/team/ci, Group/qa" {
		t.Errorf("registry-viewer binding %q:\n%s", rows["registry-viewer"], out)
	}
	// A viewer may neither read the bindings nor take a service account away.
	e.fails("alice", "forbidden", "get", "rolebindings", "-n", "team")
	e.fails("alice", "forbidden", "delete", "serviceaccount", "ci", "-n", "team")

	// Deleting the account takes its bindings with it.
	if out := e.ok("bob", "delete", "serviceaccount", "ci"); out != `serviceaccount "ci" deleted`+"\n" {
		t.Fatalf("delete serviceaccount = %q", out)
	}
	e.fails("bob", `serviceaccounts "ci" not found in project "team": berth get serviceaccounts -n team lists them`, "delete", "sa", "ci")
	if out := e.ok("bob", "get", "serviceaccounts", "-n", "team"); strings.Contains(out, "ci") || !strings.Contains(out, "deploy") {
		t.Fatalf("after deleting ci:\n%s", out)
	}
	if out := e.ok("bob", "get", "rolebindings"); strings.Contains(out, "ServiceAccount/team/ci") {
		t.Fatalf("ci is still bound:\n%s", out)
	}
	e.fails("bob", "forbidden", "get", "rolebindings", "-n", "nowhere")
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"}, {-time.Minute, "0s"}, {90 * time.Second, "90s"}, {5 * time.Minute, "5m"},
		{150 * time.Minute, "150m"}, {5 * time.Hour, "5h"}, {72 * time.Hour, "3d"}, {3 * 365 * 24 * time.Hour, "3y"},
	} {
		if got := age(now.Add(-c.ago).Format(time.RFC3339), now); got != c.want {
			t.Errorf("age(%s ago) = %q, want %q", c.ago, got, c.want)
		}
	}
	if got := age("", now); got != "<unknown>" {
		t.Errorf("age of no timestamp = %q", got)
	}
}
