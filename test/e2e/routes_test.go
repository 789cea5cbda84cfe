package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The routes of the registry Config (spec.defaultRoute, spec.routes),
// changed live through berth and kubectl and checked where clients meet
// them: the TLS handshake's certificate chosen by server name, the Route
// objects, podman.

const (
	registryNS = "openshift-image-registry"
	configRef  = "configs.imageregistry.operator.openshift.io/cluster"
	routeWait  = 30 * time.Second
)

// eventually retries check until it returns "" or routeWait passes; then
// the test fails with check's last word.
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(routeWait)
	for {
		last := check()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, routeWait, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// served is the certificate a TLS client naming serverName gets from s.
func served(t *testing.T, s *server, serverName string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", s.Addr,
		&tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s naming %s: %v", s.Addr, serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// caPool is the pool of s's CA.
func caPool(t *testing.T, s *server) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// keyPair writes a new key and a self-signed certificate for hosts into
// dir, as a user brings them, and returns the files and the certificate.
func keyPair(t *testing.T, dir, name string, hosts ...string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hosts[0], Organization: []string{"My Corp"}}, DNSNames: hosts,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// degraded is the registry Config's Degraded condition, "status reason
// message".
func degraded(c *berthCLI) string {
	out, _, err := c.try("", "get", configRef, "-o", `jsonpath={range .status.conditions[?(@.type=="Degraded")]}{.status} {.reason} {.message}{end}`)
	if err != nil {
		return "berth get: " + err.Error()
	}
	return out
}

// The reference's "Exposing the registry" with the default route, as
// written, with berth for oc: patch defaultRoute, read the Route's host
// with a template, log podman in to it. Without --base-domain the host is
// localhost:PORT, which podman, skopeo and curl all resolve here.
func TestDefaultRouteReferenceProcedure(t *testing.T) {
	podman := requireTool(t, "podman")
	bash := requireTool(t, "bash")
	s := startServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	out := admin.run("", "patch", configRef, "--patch", `{"spec":{"defaultRoute":true}}`, "--type=merge")
	if out != "config.imageregistry.operator.openshift.io/cluster patched\n" {
		t.Fatalf("patch: %q", out)
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	eventually(t, "the Route default-route", func() string {
		host, errOut, err := admin.try("", "get", "route", "default-route", "-n", registryNS, "--template={{ .spec.host }}")
		if err != nil || host != "localhost:"+port {
			return host + errOut
		}
		return ""
	})
	leaf := served(t, s, "localhost")
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: caPool(t, s)}); err != nil {
		t.Fatalf("the default route's certificate under Berth's CA: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) || len(leaf.IPAddresses) > 0 {
		t.Errorf("a handshake naming localhost got %v %v, want the route's own certificate", leaf.DNSNames, leaf.IPAddresses)
	}

	// The two lines of the procedure, in one bash, with berth for oc and
	// podman's configuration, credentials and storage in the test's
	// directory through the environment only.
	ce := newContainersEnv(t)
	env := append(slices.Clone(ce.Env), "BERTH_CONFIG="+admin.config,
		"PATH="+filepath.Dir(berthBin)+":"+filepath.Dir(podman)+":"+os.Getenv("PATH"))
	script := "set -e\n" +
		"HOST=$(berth get route default-route -n openshift-image-registry --template='{{ .spec.host }}')\n" +
		"podman login -u $(berth whoami) -p $(berth whoami -t) --tls-verify=false $HOST\n" +
		"echo \"HOST=$HOST\"\n"
	out, errOut, err := tryIn(t.TempDir(), env, bash, "-c", script)
	if err != nil || !strings.Contains(out, "Login Succeeded") || !strings.Contains(out, "HOST=localhost:"+port) {
		t.Fatalf("the procedure: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	for _, e := range ce.Env {
		if file, ok := strings.CutPrefix(e, "REGISTRY_AUTH_FILE="); ok {
			auth, err := os.ReadFile(file)
			if err != nil || !strings.Contains(string(auth), `"localhost:`+port+`"`) {
				t.Errorf("podman's credentials after the login: %v %s", err, auth)
			}
		}
	}
}

// The same with the real kubectl: its patch, its template, its table; a
// Route cannot be changed except through the Config.
func TestDefaultRouteKubectl(t *testing.T) {
	s := startServer(t, "--base-domain", "apps.example")
	k := newKubectl(t, s, "1.33", oauthToken(t, s, "admin", adminPassword))
	if out, errOut, err := k.run("patch", configRef, "--patch", `{"spec":{"defaultRoute":true}}`, "--type=merge"); err != nil {
		t.Fatalf("kubectl patch: %v %s %s", err, out, errOut)
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	const host = "default-route-openshift-image-registry.apps.example"
	eventually(t, "the Route default-route", func() string {
		out, errOut, err := k.run("get", "route", "default-route", "-n", registryNS, "--template={{ .spec.host }}")
		if err != nil || out != host+":"+port {
			return out + errOut
		}
		return ""
	})
	out, errOut, err := k.run("get", "routes", "-n", registryNS)
	if err != nil || !tableRow(out, "default-route", host+":"+port, "image-registry", "<all>", "reencrypt", "None") ||
		!slices.Equal(tableHeader(out), []string{"NAME", "HOST/PORT", "PATH", "SERVICES", "PORT", "TERMINATION", "WILDCARD"}) {
		t.Errorf("kubectl get routes: %v\n%s%s", err, out, errOut)
	}
	leaf := served(t, s, host)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: caPool(t, s)}); err != nil {
		t.Errorf("the default route's certificate: %v (names %v)", err, leaf.DNSNames)
	}
	// Written after the Route.
	eventually(t, "externalRegistryHostnames", func() string {
		if out, errOut, err := k.run("get", "image.config.openshift.io", "cluster", "-o", "jsonpath={.status.externalRegistryHostnames}"); err != nil || out != `["`+host+":"+port+`"]` {
			return out + errOut
		}
		return ""
	})
	if out, errOut, err := k.run("delete", "route", "default-route", "-n", registryNS); err == nil || !strings.Contains(errOut, "MethodNotAllowed") || !strings.Contains(errOut, "spec.defaultRoute") {
		t.Errorf("kubectl delete route: %v %s %s", err, out, errOut)
	}
}

// The reference's custom route: a TLS secret made with `create secret
// tls`, a route naming it; each host served with its certificate by SNI
// on the one listener, the secret replaced in place and picked up, bad
// and missing secrets named in Degraded while the other route stays
// served, and a removed route no longer served with its certificate.
func TestCustomRoutesLive(t *testing.T) {
	s := startServer(t, "--base-domain", "apps.example")
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	dir := t.TempDir()
	roots := caPool(t, s)
	const host = "myregistry.mycorp.organization"
	const internal = "internal-openshift-image-registry.apps.example"
	servedWith := func(want *x509.Certificate) func() string {
		return func() string {
			if got := served(t, s, host); !got.Equal(want) {
				return "the server chose " + strings.Join(got.DNSNames, ",")
			}
			return ""
		}
	}
	internalServed := func() {
		t.Helper()
		if _, err := served(t, s, internal).Verify(x509.VerifyOptions{DNSName: internal, Roots: roots}); err != nil {
			t.Errorf("the route without a secret: %v", err)
		}
	}

	crt1, key1, cert1 := keyPair(t, dir, "one", host)
	if out := admin.run("", "create", "secret", "tls", "public-route-tls", "-n", registryNS, "--cert="+crt1, "--key="+key1); out != "secret/public-route-tls created\n" {
		t.Fatalf("create secret tls: %q", out)
	}
	admin.run("", "patch", configRef, "--type", "merge", "-p",
		`{"spec":{"routes":[{"name":"public-routes","hostname":"`+host+`","secretName":"public-route-tls"},{"name":"internal"}]}}`)
	eventually(t, "the route served with its secret's certificate", servedWith(cert1))
	internalServed()
	_, port, _ := net.SplitHostPort(s.Addr)
	// The Routes are written once the hosts are served.
	eventually(t, "berth get routes", func() string {
		table := admin.run("", "get", "routes", "-n", registryNS)
		if !tableRow(table, "public-routes", host+":"+port, "image-registry", "<all>", "reencrypt", "None") ||
			!tableRow(table, "internal", internal+":"+port, "image-registry", "<all>", "reencrypt", "None") {
			return table
		}
		return ""
	})
	if ann := admin.run("", "get", "route", "public-routes", "-n", registryNS, "-o", `jsonpath={.metadata.annotations.imageregistry\.openshift\.io} {.spec.to.kind}/{.spec.to.name}`); ann != "true Service/image-registry" {
		t.Errorf("Route public-routes: %q", ann)
	}

	// Rotated in place: the new pair replaces the Secret's data.
	crt2, key2, cert2 := keyPair(t, dir, "two", host)
	replace := func(name, ns, crt, key string) {
		t.Helper()
		manifest := admin.run("", "create", "secret", "tls", name, "-n", ns, "--cert="+crt, "--key="+key, "--dry-run=client", "-o", "yaml")
		file := filepath.Join(dir, "secret.yaml")
		if err := os.WriteFile(file, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := admin.run("", "replace", "-f", file); out != "secret/"+name+" replaced\n" {
			t.Fatalf("replace: %q", out)
		}
	}
	replace("public-route-tls", registryNS, crt2, key2)
	eventually(t, "the replaced certificate served", servedWith(cert2))

	// A certificate for another host: not served with it, and said why.
	crt3, key3, _ := keyPair(t, dir, "three", "other.example")
	replace("public-route-tls", registryNS, crt3, key3)
	eventually(t, "Degraded naming the certificate", func() string {
		if d := degraded(admin); !strings.Contains(d, `True RouteDegraded route public-routes: the certificate of secret "public-route-tls" does not cover host `+host) {
			return d
		}
		return ""
	})
	if got := served(t, s, host); got.VerifyHostname(host) == nil || got.VerifyHostname("other.example") == nil {
		t.Errorf("a handshake naming %s got %v, want the serving certificate", host, got.DNSNames)
	}
	internalServed()

	// Missing where the registry reads it, present where the reference's
	// example creates it.
	admin.run("", "new-project", "image-registry")
	admin.run("", "create", "secret", "tls", "public-route-tls-2", "-n", "image-registry", "--cert="+crt2, "--key="+key2)
	admin.run("", "patch", configRef, "--type", "json", "-p", `[{"op":"replace","path":"/spec/routes/0/secretName","value":"public-route-tls-2"}]`)
	eventually(t, "Degraded naming the missing secret and the fix", func() string {
		d := degraded(admin)
		if !strings.Contains(d, `secret "public-route-tls-2" not found in project openshift-image-registry`) ||
			!strings.Contains(d, "create it there from your certificate files (berth create secret tls public-route-tls-2 -n openshift-image-registry") {
			return d
		}
		return ""
	})
	internalServed()
	admin.run("", "create", "secret", "tls", "public-route-tls-2", "-n", registryNS, "--cert="+crt2, "--key="+key2)
	eventually(t, "the route served once its secret is there", servedWith(cert2))
	eventually(t, "Degraded False", func() string {
		if d := degraded(admin); d != "False  " {
			return d
		}
		return ""
	})

	// Removed: the host no longer gets the route's certificate.
	admin.run("", "patch", configRef, "--type", "merge", "-p", `{"spec":{"routes":[{"name":"internal"}]}}`)
	eventually(t, "the removed route not served", func() string {
		if got := served(t, s, host); got.Equal(cert2) || got.VerifyHostname(host) == nil {
			return "still " + strings.Join(got.DNSNames, ",")
		}
		return ""
	})
	eventually(t, "the removed route's Route gone", func() string {
		if out, errOut, err := admin.try("", "get", "route", "public-routes", "-n", registryNS); err == nil || !strings.Contains(errOut, "NotFound") {
			return out + errOut
		}
		return ""
	})
	internalServed()
}
