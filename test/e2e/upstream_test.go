package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testtool"
)

// distribution is an upstream registry for imports and pull-through: CNCF
// Distribution 2.8 (Debian's docker-registry) on 127.0.0.1 with htpasswd
// users and TLS from a CA of the test's own, which Berth does not trust
// until it is told to.
type distribution struct {
	*testtool.Daemon
	CAFile         string
	User, Password string
}

func startDistribution(t *testing.T) *distribution {
	t.Helper()
	bin := requireTool(t, "docker-registry")
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir)
	d := &distribution{CAFile: caFile, User: "upstream", Password: "upstream-pw"}
	htpasswd := writeHtpasswd(t, map[string]string{d.User: d.Password})
	daemon, err := testtool.NewDaemon("docker-registry", bin, func(addr string) []string {
		config := "version: 0.1\n" +
			"log:\n  level: warn\n" +
			"storage:\n  filesystem:\n    rootdirectory: " + filepath.Join(dir, "data") + "\n  delete:\n    enabled: true\n" +
			"http:\n  addr: " + addr + "\n  tls:\n    certificate: " + certFile + "\n    key: " + keyFile + "\n" +
			"auth:\n  htpasswd:\n    realm: upstream\n    path: " + htpasswd + "\n"
		p := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(p, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{"serve", p}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(daemon.Stop)
	d.Daemon = daemon
	return d
}

// testCA writes a CA and a server certificate it signed for 127.0.0.1.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for _, f := range []struct {
		path string
		typ  string
		der  []byte
	}{{caFile, "CERTIFICATE", caDER}, {certFile, "CERTIFICATE", der}, {keyFile, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// allowLoopbackImports lets imports, pull-through and proxy caches reach
// registries on 127.0.0.1 (the cluster's own network, refused unless a
// cluster admin lists it), and waits until the operator applied it.
func allowLoopbackImports(t *testing.T, admin *berthCLI) {
	t.Helper()
	admin.run("", "patch", "configs.imageregistry.operator.openshift.io/cluster", "--type=merge", "-p",
		`{"spec":{"imageStreams":{"allowedImportDestinations":["127.0.0.1"]}}}`)
	waitConfigApplied(t, admin)
}

// waitConfigApplied waits until the operator applied the registry
// Config's last change (its status observed the generation).
func waitConfigApplied(t *testing.T, admin *berthCLI) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := admin.run("", "get", "configs.imageregistry.operator.openshift.io", "cluster", "-o",
			"jsonpath={.metadata.generation} {.status.observedGeneration}")
		if f := strings.Fields(got); len(f) == 2 && f[0] == f[1] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator did not apply the registry Config: %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// trustDistribution makes Berth trust up's CA (a ConfigMap named name,
// patched into the cluster image config) and gives the current project
// of admin a pull secret for it.
func trustDistribution(t *testing.T, admin *berthCLI, up *distribution, name string) {
	t.Helper()
	key := strings.ReplaceAll(up.Addr, ":", "..")
	admin.run("", "create", "configmap", name, "--from-file="+key+"="+up.CAFile, "-n", "openshift-config")
	admin.run("", "patch", "image.config.openshift.io/cluster", "--type=merge", "-p", `{"spec":{"additionalTrustedCA":{"name":"`+name+`"}}}`)
	admin.run("", "create", "secret", "docker-registry", "upstream", "--docker-server="+up.Addr,
		"--docker-username="+up.User, "--docker-password="+up.Password)
}
