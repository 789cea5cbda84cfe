package cli

import (
	"strings"
	"testing"
)

// tokenRows reads berth get tokens: the names of the tokens, and which one
// is marked current ("" when none is).
func tokenRows(t *testing.T, out string) (names []string, current string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "NAME CURRENT DESCRIPTION CREATED EXPIRES" {
		t.Fatalf("get tokens header: %q", lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if f[1] == "*" {
			if current != "" {
				t.Fatalf("two tokens are current:\n%s", out)
			}
			current = f[0]
		}
		names = append(names, f[0])
	}
	return names, current
}

func TestTokens(t *testing.T) {
	e := newBerthEnv(t)
	e.fails("bob", "not logged in", "get", "tokens")
	e.fails("bob", "not logged in", "delete", "token", "x")
	e.login("bob", "bob-pw")
	// bob again, in a second configuration (another machine).
	e.ok("bob2", "login", e.srv.URL, "-u", "bob", "-p", "bob-pw", "--certificate-authority", e.caFile)
	e.login("alice", "alice-pw")

	out := e.ok("bob", "get", "tokens")
	if strings.Contains(out, "sha256~") || strings.Contains(out, e.config("bob").Token) {
		t.Fatalf("get tokens shows a secret:\n%s", out)
	}
	if !strings.Contains(out, "berth login") {
		t.Errorf("get tokens does not describe the login tokens:\n%s", out)
	}
	names, mine := tokenRows(t, out)
	if len(names) != 2 || mine == "" {
		t.Fatalf("bob's tokens:\n%s", out)
	}
	names2, other := tokenRows(t, e.ok("bob2", "get", "tokens"))
	if len(names2) != 2 || other == "" || other == mine {
		t.Fatalf("bob2's current token %q, bob's %q", other, mine)
	}
	if names, _ := tokenRows(t, e.ok("alice", "get", "tokens")); len(names) != 1 {
		t.Fatalf("alice's tokens: %v", names)
	}

	// Someone else's token, or none at all, is not found.
	e.fails("alice", `useroauthaccesstokens.oauth.openshift.io "`+other+`" not found`, "delete", "token", other)
	e.fails("bob", `useroauthaccesstokens.oauth.openshift.io "nope" not found`, "delete", "token", "nope")

	// Revoking bob2's token from bob's configuration.
	out, errOut, err := e.as("bob", "", "delete", "token", other)
	if err != nil || out != `useroauthaccesstoken.oauth.openshift.io "`+other+`" deleted`+"\n" || errOut != "" {
		t.Fatalf("delete token: %v %q %q", err, out, errOut)
	}
	e.fails("bob2", "token revoked; log in again with berth login "+e.srv.URL, "whoami")
	e.fails("bob", "not found", "delete", "token", other)
	if names, cur := tokenRows(t, e.ok("bob", "get", "tokens")); len(names) != 1 || cur != mine {
		t.Fatalf("after revoking one: %v current %q", names, cur)
	}

	// Revoking the token in use: deleted, and kubectl's wait for the
	// deletion is already refused, with the advice to log in again.
	out, errOut, err = e.as("bob", "", "delete", "token", mine)
	if err == nil || !strings.Contains(out, `"`+mine+`" deleted`) || !strings.Contains(err.Error(), "log in again with berth login "+e.srv.URL) {
		t.Fatalf("delete the current token: %v %q %q", err, out, errOut)
	}
	e.fails("bob", "log in again with berth login "+e.srv.URL, "get", "tokens")
	e.ok("alice", "whoami") // alice's token is untouched
}
