package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/pki"
	"github.com/berth-registry/berth/internal/settings"
)

// The handshake's certificate is the route's its server name names, in
// any case, else the serving certificate; a route without one (plain
// HTTP) falls back too.
func TestRouteCertificates(t *testing.T) {
	serving, route := &tls.Certificate{}, &tls.Certificate{}
	current := settings.NewHolder(&settings.Settings{Routes: []settings.Route{
		{Name: "public", Host: "myregistry.mycorp.organization", Certificate: route},
		{Name: "plain", Host: "plain.example"},
	}})
	get := routeCertificates(current, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serving, nil })
	for name, want := range map[string]*tls.Certificate{
		"myregistry.mycorp.organization": route, "MYREGISTRY.mycorp.organization": route,
		"plain.example": serving, "other.example": serving, "": serving,
	} {
		if got, err := get(&tls.ClientHelloInfo{ServerName: name}); err != nil || got != want {
			t.Errorf("server name %q: got the %s certificate", name, map[bool]string{true: "route's", false: "serving"}[got == route])
		}
	}
	// A new snapshot applies to the next handshake.
	current.Store(settings.Defaults())
	if got, _ := get(&tls.ClientHelloInfo{ServerName: "myregistry.mycorp.organization"}); got != serving {
		t.Error("a removed route's certificate is still served")
	}
}

func TestCheckBaseDomain(t *testing.T) {
	for domain, ok := range map[string]bool{"": true, "apps.example.com": true, "apps_example": false, "-apps.example": false, strings.Repeat("a.", 120) + "com": false} {
		if err := checkBaseDomain(domain); (err == nil) != ok {
			t.Errorf("checkBaseDomain(%q) = %v", domain, err)
		}
	}
}

// caTrustingAdmin is admin over TLS, trusting the server's CA.
func caTrustingAdmin(t *testing.T, dataDir string) (*http.Client, *x509.CertPool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "pki", pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: authTransport{tr, "admin", testAdminPassword}, Timeout: 30 * time.Second}, pool
}

type authTransport struct {
	next           http.RoundTripper
	user, password string
}

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(a.user, a.password)
	return a.next.RoundTrip(r)
}

// request sends body (JSON) and fails the test unless the answer is want.
func request(t *testing.T, c *http.Client, method, url, contentType, body string, want int) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, b, want)
	}
	return b
}

// handshake connects to addr naming serverName and returns the
// certificate the server chose.
func handshake(t *testing.T, addr, serverName string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake naming %s: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// spec.defaultRoute over TLS: the Route appears with the host under
// --base-domain and the port, a handshake naming it gets a certificate for
// it from Berth's CA, and once the route is gone the name gets the serving
// certificate again; all without a restart.
func TestDefaultRouteLive(t *testing.T) {
	dir := t.TempDir()
	r := launch(t, Config{DataDir: dir, BaseDomain: "Apps.Example."})
	c, roots := caTrustingAdmin(t, dir)
	addr := strings.TrimPrefix(r.url, "https://")
	_, port, _ := strings.Cut(addr, ":")
	const host = "default-route-openshift-image-registry.apps.example"
	const routeURL = "/apis/route.openshift.io/v1/namespaces/openshift-image-registry/routes/default-route"

	request(t, c, "PATCH", r.url+configURL, "application/merge-patch+json", `{"spec":{"defaultRoute":true}}`, 200)
	var route struct {
		Spec struct{ Host string } `json:"spec"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", r.url+routeURL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			err = json.NewDecoder(resp.Body).Decode(&route)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no Route default-route within 10s (last answer %d)", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if route.Spec.Host != host+":"+port {
		t.Fatalf("spec.host = %q, want %s:%s", route.Spec.Host, host, port)
	}
	// The Route is written after the snapshot is in effect.
	leaf := handshake(t, addr, host)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
		t.Fatalf("the default route's certificate: %v (names %v)", err, leaf.DNSNames)
	}
	if got := handshake(t, addr, strings.ToUpper(host)); !got.Equal(leaf) {
		t.Error("the server name's case chose another certificate")
	}

	request(t, c, "PATCH", r.url+configURL, "application/merge-patch+json", `{"spec":{"defaultRoute":false}}`, 200)
	deadline = time.Now().Add(10 * time.Second)
	for handshake(t, addr, host).Equal(leaf) {
		if time.Now().After(deadline) {
			t.Fatal("the removed route's certificate is still served after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := handshake(t, addr, host); got.VerifyHostname(host) == nil || got.VerifyHostname("localhost") != nil {
		t.Errorf("after removal the name gets %v, want the serving certificate", got.DNSNames)
	}
	// The Route goes after the snapshot that stopped serving it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", r.url+routeURL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Route default-route is still there after 10s (%d)", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Over plain HTTP there is no server name: a route's host is served by
// its Host header like any other, the Route says certificates do not
// apply, and its host is listed in the cluster image settings.
func TestRoutesOverPlainHTTPLive(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), BaseDomain: "apps.example"})
	patchConfig(t, r.url, `{"spec":{"routes":[{"name":"public","hostname":"myregistry.mycorp.organization","secretName":"public-route-tls"}]}}`)
	req, _ := http.NewRequest("GET", r.url+"/v2/", nil)
	req.Host = "myregistry.mycorp.organization"
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v2/ with the route's Host: %d", resp.StatusCode)
	}
	resp, err = admin.Get(r.url + "/apis/route.openshift.io/v1/namespaces/openshift-image-registry/routes/public")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "certificates do not apply") || strings.Contains(string(b), `"tls"`) {
		t.Errorf("Route public over plain HTTP: %d %s", resp.StatusCode, b)
	}
	resp, err = admin.Get(r.url + "/apis/config.openshift.io/v1/images/cluster")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(r.url, "http://"), ":")
	if !strings.Contains(string(b), `"externalRegistryHostnames":["myregistry.mycorp.organization:`+port+`"]`) {
		t.Errorf("cluster image settings: %s", b)
	}
	if c := waitApplied(t, r.url); c.Status.ObservedGeneration != c.Metadata.Generation {
		t.Error("not applied")
	}
	if st, _, msg := waitApplied(t, r.url).condition("Degraded"); st != "False" {
		t.Errorf("Degraded over plain HTTP with a secret that is not there: %s %s", st, msg)
	}
}
