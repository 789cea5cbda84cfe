package pki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSourceRenewsNearExpiry(t *testing.T) {
	dir := t.TempDir()
	hosts := []string{"localhost"}
	if _, err := Ensure(dir, hosts); err != nil {
		t.Fatal(err)
	}
	caCert, caPriv, err := ensureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate ten days from expiry, inside the renewal window.
	if err := issue(filepath.Join(dir, CertFile), filepath.Join(dir, keyFile), caCert, caPriv, hosts, 10*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(src.cert.Leaf.NotAfter) < renewBefore {
		t.Fatal("NewSource kept a certificate inside the renewal window")
	}
	// The certificate ages while the server runs: serve a near-expiry one
	// and let an hour pass.
	if err := issue(filepath.Join(dir, CertFile), filepath.Join(dir, keyFile), caCert, caPriv, hosts, 10*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	old, err := loadPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	src.cert, src.checked = &old, time.Now().Add(-2*time.Hour)
	got, err := src.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Leaf.Equal(old.Leaf) || time.Until(got.Leaf.NotAfter) < renewBefore {
		t.Fatalf("running server still serves the certificate expiring %v", got.Leaf.NotAfter)
	}
	if err := got.Leaf.CheckSignatureFrom(caCert); err != nil {
		t.Fatalf("renewed certificate is not under the original CA: %v", err)
	}
}

func TestMissingCAKeyIsAnErrorNotANewCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if err := os.Remove(filepath.Join(dir, caKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, []string{"localhost", "new.example"}); err == nil || !strings.Contains(err.Error(), "without its pair") {
		t.Fatalf("Ensure with ca.crt but no ca.key = %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(after) != string(before) {
		t.Fatal("ca.crt was replaced")
	}
}

func TestHostCertificates(t *testing.T) {
	dir := t.TempDir()
	src, err := NewSource(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	caCert, _, err := ensureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	const a, b = "default-route-openshift-image-registry.apps.example", "other.example"
	first, err := src.HostCertificates([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{a, b} {
		c := first[h]
		if c == nil || c.Leaf.VerifyHostname(h) != nil || c.Leaf.CheckSignatureFrom(caCert) != nil {
			t.Fatalf("certificate for %s: %+v", h, c)
		}
		if c.Leaf.VerifyHostname("localhost") == nil {
			t.Errorf("the certificate for %s covers localhost too", h)
		}
	}
	again, err := src.HostCertificates([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	if again[a] != first[a] || len(again) != 1 {
		t.Fatalf("asked again: %v, want the same certificate for %s only", again, a)
	}
	// b was dropped: asking for it again issues a new one.
	later, err := src.HostCertificates([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if later[b] == first[b] {
		t.Error("a host asked for again after it was dropped got its old certificate")
	}
	// Near expiry, a certificate is issued again.
	src.hostCerts[a].Leaf.NotAfter = time.Now().Add(renewBefore / 2)
	renewed, err := src.HostCertificates([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if renewed[a] == later[a] || time.Until(renewed[a].Leaf.NotAfter) < renewBefore {
		t.Fatalf("a certificate inside the renewal window was kept (expires %v)", renewed[a].Leaf.NotAfter)
	}
	if renewed[b] != later[b] {
		t.Error("a certificate outside the renewal window was issued again")
	}
	// Nothing of them reaches the disk.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "ca.") && !strings.HasPrefix(e.Name(), "tls.") {
			t.Errorf("unexpected file %s in the pki directory", e.Name())
		}
	}
}
