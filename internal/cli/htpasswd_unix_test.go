//go:build unix

package cli

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The file is replaced, not rewritten: the server's user must still own
// it after root changed it, or berth serve could no longer read it.
func TestAdmHtpasswdKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: only root can give a file to another user")
	}
	path := filepath.Join(t.TempDir(), "users")
	if out, err := runRootIn(t, "pw\n", "adm", "htpasswd", path, "alice", "--password-stdin"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	const uid, gid = 4242, 4343
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if out, err := runRootIn(t, "pw2\n", "adm", "htpasswd", path, "bob", "--password-stdin"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != uid || sys.Gid != gid {
		t.Errorf("owner after root changed the file: %d:%d, want %d:%d", sys.Uid, sys.Gid, uid, gid)
	}
	checkLogins(t, path, map[[2]string]bool{{"alice", "pw"}: true, {"bob", "pw2"}: true})
}
