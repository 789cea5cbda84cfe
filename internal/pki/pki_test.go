package pki_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/internal/pki"
)

func TestEnsureCreatesThenReuses(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	first, err := pki.Ensure(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, h := range hosts {
		if _, err := first.Leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool}); err != nil {
			t.Errorf("certificate not valid for %s under ca.crt: %v", h, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	second, err := pki.Ensure(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Leaf.Equal(first.Leaf) {
		t.Fatal("a second start issued a new certificate instead of reusing it")
	}
	// A new host name re-issues the serving certificate under the same CA.
	third, err := pki.Ensure(dir, append(hosts, "registry.example"))
	if err != nil {
		t.Fatal(err)
	}
	if third.Leaf.Equal(first.Leaf) {
		t.Fatal("certificate not re-issued for a new host")
	}
	if _, err := third.Leaf.Verify(x509.VerifyOptions{DNSName: "registry.example", Roots: pool}); err != nil {
		t.Fatalf("re-issued certificate not under the original CA: %v", err)
	}
}
