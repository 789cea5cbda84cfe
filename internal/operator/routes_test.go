package operator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	routev1 "github.com/berth-registry/berth/internal/api/route/v1"
	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/pki"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// routesFixture is a fixture with the cluster's projects and image
// settings, exposing routes on port 5000 under apps.example with Berth's
// CA (or over plain HTTP when plain).
func routesFixture(t *testing.T, baseDomain string, port int, plain bool) (*fixture, *x509.CertPool) {
	t.Helper()
	opts := operator.RouteOptions{BaseDomain: baseDomain, Port: port}
	var roots *x509.CertPool
	if !plain {
		dir := filepath.Join(t.TempDir(), "pki")
		ca, err := pki.NewSource(dir, []string{"localhost"})
		if err != nil {
			t.Fatal(err)
		}
		opts.CA = ca
		b, err := os.ReadFile(filepath.Join(dir, pki.CAFile))
		if err != nil {
			t.Fatal(err)
		}
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(b)
	}
	f := newFixtureWith(t, opts)
	if err := apiserver.EnsureClusterObjects(context.Background(), f.st, nil); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	return f, roots
}

func (f *fixture) route(name string) (routev1.Route, bool) {
	f.t.Helper()
	rec, err := f.st.GetObject(context.Background(), operator.RouteKey(name))
	if errors.Is(err, errdefs.ErrNotFound) {
		return routev1.Route{}, false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var r routev1.Route
	if err := json.Unmarshal(rec.Body, &r); err != nil {
		f.t.Fatal(err)
	}
	return r, true
}

func (f *fixture) served(host string) *settings.Route {
	return f.settings.Load().RouteFor(host)
}

func (f *fixture) externalHostnames() []string {
	f.t.Helper()
	rec, err := f.st.GetObject(context.Background(), store.ObjectKey{Group: "config.openshift.io", Resource: "images", Name: "cluster"})
	if err != nil {
		f.t.Fatal(err)
	}
	var doc struct {
		Status struct {
			ExternalRegistryHostnames []string `json:"externalRegistryHostnames"`
		} `json:"status"`
	}
	if err := json.Unmarshal(rec.Body, &doc); err != nil {
		f.t.Fatal(err)
	}
	return doc.Status.ExternalRegistryHostnames
}

// writeTLSSecret creates or replaces a Secret as `berth create secret tls`
// (or a replace) does.
func (f *fixture) writeTLSSecret(project, name string, typ corev1.SecretType, certPEM, keyPEM []byte) {
	f.t.Helper()
	ctx := context.Background()
	s := corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: project, UID: types.UID("uid-" + name)},
		Type:       typ,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	body, err := json.Marshal(s)
	if err != nil {
		f.t.Fatal(err)
	}
	key := store.ObjectKey{Resource: "secrets", Namespace: project, Name: name}
	rec, err := f.st.GetObject(ctx, key)
	if errors.Is(err, errdefs.ErrNotFound) {
		if err := f.st.CreateProject(ctx, store.Project{Name: project}); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
			f.t.Fatal(err)
		}
		if _, err := f.st.CreateObject(ctx, store.Object{ObjectKey: key, UID: string(s.UID), Created: time.Now(), Body: body}); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	if err != nil {
		f.t.Fatal(err)
	}
	rec.Body = body
	if _, err := f.st.UpdateObject(ctx, rec, rec.ResourceVersion); err != nil {
		f.t.Fatal(err)
	}
}

// selfSigned is a key pair and a self-signed certificate for hosts, as a
// user brings one.
func selfSigned(t *testing.T, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	return selfSignedFor(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), hosts...)
}

// selfSignedFor is selfSigned valid from notBefore to notAfter.
func selfSignedFor(t *testing.T, notBefore, notAfter time.Time, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: notBefore, NotAfter: notAfter,
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
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// spec.defaultRoute: a Route default-route with the host under the base
// domain (and the port), served with a certificate from Berth's CA, and
// listed first in the cluster image settings; false takes it all away.
func TestDefaultRoute(t *testing.T) {
	f, roots := routesFixture(t, "apps.example", 5000, false)
	f.reconcile()
	if _, ok := f.route("default-route"); ok {
		t.Fatal("a Route before spec.defaultRoute")
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.DefaultRoute = true })
	f.reconcile()
	const host = "default-route-openshift-image-registry.apps.example"
	r, ok := f.route("default-route")
	if !ok {
		t.Fatal("no Route default-route")
	}
	if r.Spec.Host != host+":5000" || r.Namespace != "openshift-image-registry" || r.Annotations["imageregistry.openshift.io"] != "true" ||
		r.Spec.To.Kind != "Service" || r.Spec.To.Name != "image-registry" || r.Spec.TLS == nil || r.Spec.TLS.Termination != "reencrypt" {
		t.Errorf("Route: %+v", r)
	}
	if len(r.Status.Ingress) != 1 || r.Status.Ingress[0].Conditions[0].Status != "True" || r.Status.Ingress[0].Host != host+":5000" {
		t.Errorf("Route status: %+v", r.Status)
	}
	served := f.served(host)
	if served == nil || served.Certificate == nil {
		t.Fatalf("the default route is not served: %+v", f.settings.Load().Routes)
	}
	if _, err := served.Certificate.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
		t.Errorf("the default route's certificate under Berth's CA: %v", err)
	}
	if got := f.externalHostnames(); !slices.Equal(got, []string{host + ":5000"}) {
		t.Errorf("externalRegistryHostnames = %v", got)
	}
	f.expectCondition("Degraded", "False", "", "")
	// Nothing new: nothing written, the same certificate.
	before, _ := f.st.LatestResourceVersion(context.Background())
	f.reconcile()
	if after, _ := f.st.LatestResourceVersion(context.Background()); after != before {
		t.Errorf("a pass with nothing new wrote (%d → %d)", before, after)
	}
	if f.served(host).Certificate != served.Certificate {
		t.Error("a pass with nothing new issued another certificate")
	}

	f.write(func(s *imageregistryv1.ConfigSpec) { s.DefaultRoute = false })
	f.reconcile()
	if _, ok := f.route("default-route"); ok {
		t.Error("the Route stayed after spec.defaultRoute false")
	}
	if f.served(host) != nil {
		t.Error("the host is still served")
	}
	if got := f.externalHostnames(); len(got) != 0 {
		t.Errorf("externalRegistryHostnames = %v", got)
	}
}

// Without a base domain the default route is localhost, which every
// client resolves to this machine; on 443 the host carries no port.
func TestDefaultRouteHosts(t *testing.T) {
	f, _ := routesFixture(t, "", 5000, false)
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.DefaultRoute = true
		s.Routes = []imageregistryv1.Route{{Name: "public"}}
	})
	f.reconcile()
	if r, _ := f.route("default-route"); r.Spec.Host != "localhost:5000" {
		t.Errorf("default route host %q, want localhost:5000", r.Spec.Host)
	}
	if r, _ := f.route("public"); r.Spec.Host != "public-openshift-image-registry.localhost:5000" {
		t.Errorf("hostless route host %q", r.Spec.Host)
	}
	if got := f.externalHostnames(); !slices.Equal(got, []string{"localhost:5000", "public-openshift-image-registry.localhost:5000"}) {
		t.Errorf("externalRegistryHostnames = %v", got)
	}

	f, _ = routesFixture(t, "apps.example", 443, false)
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.DefaultRoute = true
		s.Routes = []imageregistryv1.Route{{Name: "public"}, {Name: "taken", Hostname: "public-openshift-image-registry.apps.example"}}
	})
	f.reconcile()
	if r, _ := f.route("default-route"); r.Spec.Host != "default-route-openshift-image-registry.apps.example" {
		t.Errorf("default route host on 443: %q", r.Spec.Host)
	}
	// A hostless route's host may be one another route names: the second
	// is refused, the first served.
	if f.served("public-openshift-image-registry.apps.example").Name != "public" {
		t.Error("the first route of a host is not served")
	}
	r, _ := f.route("taken")
	if c := r.Status.Ingress[0].Conditions[0]; c.Status != "False" || c.Reason != "HostAlreadyClaimed" {
		t.Errorf("the second route of a host: %+v", c)
	}
	f.expectCondition("Degraded", "True", "RouteDegraded", "route taken: host public-openshift-image-registry.apps.example is already the host of route public")
}

// A route with a secret is served with exactly its certificate; a secret
// replaced in place is picked up at the next pass; a missing or unusable
// secret makes the route unserved and Degraded name it, and the other
// routes stay served; a removed route is no longer served.
func TestRouteSecrets(t *testing.T) {
	f, roots := routesFixture(t, "apps.example", 5000, false)
	const host = "myregistry.mycorp.organization"
	certPEM, keyPEM := selfSigned(t, host)
	f.writeTLSSecret("openshift-image-registry", "public-route-tls", corev1.SecretTypeTLS, certPEM, keyPEM)
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Routes = []imageregistryv1.Route{
			{Name: "public-routes", Hostname: host, SecretName: "public-route-tls"},
			{Name: "internal", Hostname: "registry.apps.example"},
		}
	})
	f.reconcile()
	served := f.served(host)
	if served == nil || !served.Certificate.Leaf.Equal(leafOf(t, certPEM)) {
		t.Fatalf("the route is not served with its secret's certificate: %+v", served)
	}
	if f.served("registry.apps.example") == nil {
		t.Fatal("the route without a secret is not served")
	}
	if _, err := f.served("registry.apps.example").Certificate.Leaf.Verify(x509.VerifyOptions{DNSName: "registry.apps.example", Roots: roots}); err != nil {
		t.Errorf("a route without a secret: %v", err)
	}
	if r, _ := f.route("public-routes"); r.Spec.Host != host+":5000" || r.Spec.TLS.Termination != "reencrypt" {
		t.Errorf("Route public-routes: %+v", r.Spec)
	}
	// Parsed once: another pass keeps the same certificate.
	f.reconcile()
	if f.served(host).Certificate != served.Certificate {
		t.Error("the secret was parsed again with nothing changed")
	}

	// Rotated in place.
	newCert, newKey := selfSigned(t, host)
	f.writeTLSSecret("openshift-image-registry", "public-route-tls", corev1.SecretTypeTLS, newCert, newKey)
	f.reconcile()
	if got := f.served(host); got == nil || !got.Certificate.Leaf.Equal(leafOf(t, newCert)) {
		t.Fatal("the replaced secret's certificate is not served")
	}

	// A certificate for another host.
	otherCert, otherKey := selfSigned(t, "other.example")
	f.writeTLSSecret("openshift-image-registry", "public-route-tls", corev1.SecretTypeTLS, otherCert, otherKey)
	f.reconcile()
	if f.served(host) != nil {
		t.Error("a route whose certificate does not cover its host is served")
	}
	f.expectCondition("Degraded", "True", "RouteDegraded", `route public-routes: the certificate of secret "public-route-tls" does not cover host myregistry.mycorp.organization (it is for other.example)`)
	r, _ := f.route("public-routes")
	if c := r.Status.Ingress[0].Conditions[0]; c.Status != "False" || c.Reason != "HostNotCovered" {
		t.Errorf("Admitted: %+v", c)
	}
	if f.served("registry.apps.example") == nil {
		t.Error("another route's trouble took this one away")
	}
	if got := f.externalHostnames(); !slices.Equal(got, []string{"registry.apps.example:5000"}) {
		t.Errorf("externalRegistryHostnames = %v", got)
	}

	// A key that is not the certificate's; an Opaque secret.
	f.writeTLSSecret("openshift-image-registry", "public-route-tls", corev1.SecretTypeTLS, newCert, keyPEM)
	f.reconcile()
	f.expectCondition("Degraded", "True", "RouteDegraded", "private key does not match public key")
	if c := f.condition("Degraded"); strings.Contains(c.Message, "PRIVATE KEY") {
		t.Errorf("the key reached the status: %s", c.Message)
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Routes[0].SecretName = "opaque" })
	f.writeTLSSecret("openshift-image-registry", "opaque", corev1.SecretTypeOpaque, newCert, newKey)
	f.reconcile()
	f.expectCondition("Degraded", "True", "RouteDegraded", `secret "opaque" in openshift-image-registry: of type Opaque, not kubernetes.io/tls`)

	// Expired: served all the same (nothing better to serve), and named.
	expiredCert, expiredKey := selfSignedFor(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), host)
	f.writeTLSSecret("openshift-image-registry", "expired", corev1.SecretTypeTLS, expiredCert, expiredKey)
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Routes[0].SecretName = "expired" })
	f.reconcile()
	if got := f.served(host); got == nil || !got.Certificate.Leaf.Equal(leafOf(t, expiredCert)) {
		t.Error("a route whose certificate expired is not served with it")
	}
	f.expectCondition("Degraded", "True", "RouteDegraded", `route public-routes: the certificate of secret "expired" is valid from`)

	// Missing; then present only where the reference's example puts it.
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Routes[0].SecretName = "public-route-tls-2" })
	f.reconcile()
	f.expectCondition("Degraded", "True", "RouteDegraded", `route public-routes: secret "public-route-tls-2" not found in project openshift-image-registry`)
	f.expectCondition("Progressing", "False", "Error", "public-route-tls-2")
	if c := f.condition("Degraded"); strings.Contains(c.Message, "image-registry:") {
		t.Errorf("a hint without a secret in image-registry: %s", c.Message)
	}
	f.writeTLSSecret("image-registry", "public-route-tls-2", corev1.SecretTypeTLS, newCert, newKey)
	f.reconcile()
	f.expectCondition("Degraded", "True", "RouteDegraded", "a secret of that name is in project image-registry (a project any user may have created), but the registry reads route secrets only from openshift-image-registry: create it there from your certificate files (berth create secret tls public-route-tls-2 -n openshift-image-registry")
	if f.served("registry.apps.example") == nil {
		t.Error("another route's missing secret took this one away")
	}
	f.writeTLSSecret("openshift-image-registry", "public-route-tls-2", corev1.SecretTypeTLS, newCert, newKey)
	f.reconcile()
	f.expectCondition("Degraded", "False", "", "")
	if got := f.served(host); got == nil || !got.Certificate.Leaf.Equal(leafOf(t, newCert)) {
		t.Error("the route is not served once its secret exists")
	}

	// Removed.
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Routes = s.Routes[1:] })
	f.reconcile()
	if f.served(host) != nil {
		t.Error("a removed route is still served")
	}
	if _, ok := f.route("public-routes"); ok {
		t.Error("a removed route's Route stayed")
	}
	if _, ok := f.route("internal"); !ok {
		t.Error("the remaining route's Route went")
	}
}

// Over plain HTTP routes are Route objects all the same, their hosts
// served, and their status says certificates do not apply.
func TestRoutesOverPlainHTTP(t *testing.T) {
	f, _ := routesFixture(t, "apps.example", 5000, true)
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.DefaultRoute = true
		s.Routes = []imageregistryv1.Route{{Name: "public", Hostname: "myregistry.mycorp.organization", SecretName: "missing"}}
	})
	f.reconcile()
	for _, name := range []string{"default-route", "public"} {
		r, ok := f.route(name)
		if !ok {
			t.Fatalf("no Route %s", name)
		}
		if r.Spec.TLS != nil {
			t.Errorf("Route %s claims TLS over plain HTTP: %+v", name, r.Spec.TLS)
		}
		if c := r.Status.Ingress[0].Conditions[0]; c.Status != "True" || !strings.Contains(c.Message, "certificates do not apply") {
			t.Errorf("Route %s: %+v", name, c)
		}
	}
	if s := f.served("myregistry.mycorp.organization"); s == nil || s.Certificate != nil {
		t.Errorf("served over plain HTTP: %+v", s)
	}
	f.expectCondition("Degraded", "False", "", "")
}

// Removed takes the routes away with the registry, as the reference does.
func TestRoutesRemovedWithTheRegistry(t *testing.T) {
	f, _ := routesFixture(t, "apps.example", 5000, false)
	f.write(func(s *imageregistryv1.ConfigSpec) { s.DefaultRoute = true })
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Removed" })
	f.reconcile()
	if _, ok := f.route("default-route"); ok || len(f.settings.Load().Routes) != 0 {
		t.Error("routes stayed with the registry Removed")
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Managed" })
	f.reconcile()
	if _, ok := f.route("default-route"); !ok {
		t.Error("the route did not come back with Managed")
	}
}

// Berth's CA vouches only for names the registry owns: a route elsewhere
// without a secret of its own is not served, and Degraded says why.
func TestCAIssuesOnlyOwnNames(t *testing.T) {
	f, _ := routesFixture(t, "apps.example", 5000, false)
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Routes = []imageregistryv1.Route{{Name: "elsewhere", Hostname: "www.example.com"}, {Name: "mine", Hostname: "reg.apps.example"}}
	})
	f.reconcile()
	if f.served("www.example.com") != nil {
		t.Error("Berth's CA issued a certificate for a name outside --base-domain")
	}
	if f.served("reg.apps.example") == nil {
		t.Error("a name under --base-domain is not served")
	}
	f.expectCondition("Degraded", "True", "RouteDegraded", "route elsewhere: Berth's CA issues certificates only for names under --base-domain (apps.example)")
}
