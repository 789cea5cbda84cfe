//go:build unix

package pki_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berth-registry/berth/internal/pki"
)

// Every file of the pki directory is private, ca.crt too: the directory
// is 0700 anyway, so a readable ca.crt would give nobody else anything,
// and one rule (files 0600) is what the start-up check enforces.
func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pki")
	if _, err := pki.Ensure(dir, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	// A renewal rewrites the serving pair.
	if _, err := pki.Ensure(dir, []string{"localhost", "registry.example"}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("pki directory: %v, %v; want 0700", st.Mode().Perm(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = true
		st, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != fs.FileMode(0o600) {
			t.Errorf("%s: mode %v, want 0600", e.Name(), st.Mode().Perm())
		}
	}
	for _, want := range []string{pki.CAFile, "ca.key", pki.CertFile, "tls.key"} {
		if !names[want] {
			t.Errorf("%s missing from %v", want, names)
		}
	}
}
