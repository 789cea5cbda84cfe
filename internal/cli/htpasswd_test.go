package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/auth"
)

// checkLogins opens path with the htpasswd provider berth serve uses and
// checks which passwords it accepts.
func checkLogins(t *testing.T, path string, want map[[2]string]bool) {
	t.Helper()
	h, err := auth.OpenHtpasswd(path)
	if err != nil {
		t.Fatalf("the provider refuses the file: %v", err)
	}
	for login, ok := range want {
		got, err := h.CheckPassword(context.Background(), login[0], login[1])
		if err != nil || got != ok {
			t.Errorf("%s with password %q: accepted %v (%v), want %v", login[0], login[1], got, err, ok)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAdmHtpasswd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	htpasswd := func(stdin string, args ...string) (string, error) {
		return runRootIn(t, stdin, append([]string{"adm", "htpasswd"}, args...)...)
	}

	// A new file, readable by its owner only.
	if out, err := htpasswd("s3cret\n", path, "alice", "--password-stdin"); err != nil || !strings.Contains(out, "Adding password for user alice") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode of the new file: %v %v", st.Mode(), err)
	}
	checkLogins(t, path, map[[2]string]bool{{"alice", "s3cret"}: true, {"alice", "s3cret\n"}: false, {"alice", "wrong"}: false})
	if entry := readFile(t, path); !strings.HasPrefix(entry, "alice:$2") || !strings.HasSuffix(entry, "\n") || strings.Count(entry, "\n") != 1 {
		t.Fatalf("the entry is not user:bcrypt-hash on one line: %q", entry)
	}

	// Other lines stay as they are, byte for byte, whatever the mode was.
	bobHash, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	head := "# people of the team\n\nbob:" + string(bobHash) + "\n"
	tail := "  # the end, no newline"
	if err := os.WriteFile(path, []byte(head+readFile(t, path)+tail), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := htpasswd("n3w pass\r\n", path, "alice", "--password-stdin"); err != nil || !strings.Contains(out, "Updating password for user alice") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	if out, err := htpasswd("carol-pw", path, "carol", "--password-stdin"); err != nil {
		t.Fatalf("add to a file without a final newline: %v\n%s", err, out)
	}
	content := readFile(t, path)
	lines := strings.Split(content, "\n")
	if !strings.HasPrefix(content, head) || len(lines) != 7 || !strings.HasPrefix(lines[3], "alice:$2") ||
		lines[4] != tail || !strings.HasPrefix(lines[5], "carol:$2") || lines[6] != "" {
		t.Fatalf("after the update:\n%s", content)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after the update: %v %v", st.Mode(), err)
	}
	checkLogins(t, path, map[[2]string]bool{
		{"alice", "n3w pass"}: true, {"alice", "s3cret"}: false,
		{"bob", "bob-pw"}: true, {"carol", "carol-pw"}: true,
	})

	// Delete.
	if out, err := htpasswd("", path, "bob", "-D"); err != nil || !strings.Contains(out, "Deleting password for user bob") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if content := readFile(t, path); strings.Contains(content, "bob:") || !strings.HasPrefix(content, "# people of the team\n\nalice:") {
		t.Fatalf("after deleting bob:\n%s", content)
	}
	checkLogins(t, path, map[[2]string]bool{{"bob", "bob-pw"}: false, {"alice", "n3w pass"}: true, {"carol", "carol-pw"}: true})

	// Refusals leave the file as it was, and no temporary file behind.
	before := readFile(t, path)
	for _, tc := range []struct {
		stdin, want string
		args        []string
	}{
		{"pw\n", "':'", []string{path, "a:b", "--password-stdin"}},
		{"pw\n", "line break", []string{path, "a\nb", "--password-stdin"}},
		{"pw\n", "line break", []string{path, "a\rb", "--password-stdin"}},
		{"pw\n", "start with", []string{path, "#alice", "--password-stdin"}},
		{"pw\n", "start with", []string{path, " alice", "--password-stdin"}},
		{"pw\n", "empty", []string{path, "", "--password-stdin"}},
		{"", "no password", []string{path, "dave", "--password-stdin"}},
		{"\n", "no password", []string{path, "dave", "--password-stdin"}},
		{"pw\n", "--password-stdin", []string{path, "dave"}}, // stdin is no terminal
		{"pw\n", "unknown shorthand flag: 'p'", []string{path, "dave", "-p", "pw"}},
		{"pw\n", "unknown flag: --password", []string{path, "dave", "--password", "pw"}},
		{"pw\n", "not in", []string{path, "bob", "-D"}},
		{"pw\n", "not both", []string{path, "alice", "-D", "--password-stdin"}},
		{"pw\n", "accepts 2 arg", []string{path}},
		{strings.Repeat("x", 73) + "\n", "72 bytes", []string{path, "dave", "--password-stdin"}},
	} {
		if out, err := htpasswd(tc.stdin, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("adm htpasswd %q: %v, want an error saying %s\n%s", tc.args, err, tc.want, out)
		}
	}
	if after := readFile(t, path); after != before {
		t.Errorf("a refused change changed the file:\n%s", after)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := htpasswd("", missing, "bob", "-D"); err == nil {
		t.Error("deleting from a missing file succeeded")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("deleting from a missing file created it")
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("files left in %s: %v %v", dir, entries, err)
	}
}

// A symbolic link to the file stays one: the file it points to changes.
func TestAdmHtpasswdFollowsLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	if out, err := runRootIn(t, "pw\n", "adm", "htpasswd", target, "alice", "--password-stdin"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	if out, err := runRootIn(t, "pw2\n", "adm", "htpasswd", link, "bob", "--password-stdin"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced by a file: %v %v", st.Mode(), err)
	}
	checkLogins(t, target, map[[2]string]bool{{"alice", "pw"}: true, {"bob", "pw2"}: true})
}
