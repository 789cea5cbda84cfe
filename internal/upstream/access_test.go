package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/webhook"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
)

func TestRemoteUntrustedCertificate(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")

	// The CA of another registry does not help.
	other := newTestRegistry(t, registryOptions{tls: true})
	a := testAccess(Policy{}, map[string][]byte{TrustKey(other.host): reg.pemCert()})
	_, err := get(context.Background(), a, reg.ref(t, "team/app:v1"), false, false)
	if err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	reason, msg := Classify(err)
	if reason != ReasonInternalError || !strings.Contains(msg, "certificate") || !strings.Contains(msg, fmt.Sprintf("%q", TrustKey(reg.host))) {
		t.Errorf("Classify = %q, %q; want InternalError about the certificate naming the ConfigMap key", reason, msg)
	}
	if Unavailable(err) {
		t.Errorf("an untrusted certificate counts as unavailable: %v", err)
	}
}

func TestRemoteTrustedCA(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	want := reg.push(t, "team/app:v1", "", "")

	a := testAccess(Policy{}, map[string][]byte{TrustKey(reg.host): reg.pemCert()})
	desc, err := get(context.Background(), a, reg.ref(t, "team/app:v1"), false, false)
	if err != nil {
		t.Fatalf("remote.Get with the CA trusted: %v", err)
	}
	if desc.Digest != want {
		t.Errorf("digest %s, want %s", desc.Digest, want)
	}
	if !strings.HasPrefix(TrustKey(reg.host), "127.0.0.1..") {
		t.Errorf("TrustKey(%q) = %q", reg.host, TrustKey(reg.host))
	}
}

func TestRemoteInsecureSkipsVerification(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	a := testAccess(Policy{}, nil)
	if _, err := get(context.Background(), a, reg.ref(t, "team/app:v1"), true, false); err != nil {
		t.Fatalf("insecure access to a self-signed registry: %v", err)
	}
	a = testAccess(Policy{Insecure: []string{reg.host}}, nil)
	if _, err := get(context.Background(), a, reg.ref(t, "team/app:v1"), false, false); err != nil {
		t.Fatalf("access to a registry the policy lists as insecure: %v", err)
	}
}

func TestRemoteCredentials(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true, user: "alice", pass: "right-password"})
	reg.push(t, "team/app:v1", "alice", "right-password")
	trust := map[string][]byte{TrustKey(reg.host): reg.pemCert()}
	ref := reg.ref(t, "team/app:v1")

	t.Run("none", func(t *testing.T) {
		_, err := get(context.Background(), testAccess(Policy{}, trust), ref, false, false)
		if reason, msg := Classify(err); reason != ReasonUnauthorized {
			t.Errorf("Classify(%v) = %q, %q", err, reason, msg)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		secret := configJSONSecret(t, "pull", map[string]map[string]string{reg.host: {"username": "alice", "password": "wrong-password"}})
		_, err := get(context.Background(), testAccess(Policy{}, trust, secret), ref, false, false)
		reason, msg := Classify(err)
		if reason != ReasonUnauthorized || !strings.Contains(msg, "incorrect username or password") {
			t.Errorf("Classify(%v) = %q, %q", err, reason, msg)
		}
		if strings.Contains(msg, "wrong-password") || strings.Contains(err.Error(), "wrong-password") {
			t.Errorf("the password shows in %q / %v", msg, err)
		}
		if !AnonymousRetry(err) {
			t.Errorf("AnonymousRetry(%v) = false", err)
		}
		if Unavailable(err) {
			t.Errorf("a 401 counts as unavailable")
		}
	})
	t.Run("right secret", func(t *testing.T) {
		secret := configJSONSecret(t, "pull", map[string]map[string]string{reg.host: {"auth": b64("alice:right-password")}})
		excluded := configJSONSecret(t, "a-excluded", map[string]map[string]string{reg.host: {"auth": b64("alice:wrong")}})
		excluded.Annotations = map[string]string{ExcludeSecretAnnotation: "true"}
		if _, err := get(context.Background(), testAccess(Policy{}, trust, excluded, secret), ref, false, false); err != nil {
			t.Fatalf("remote.Get with the right secret: %v", err)
		}
	})
}

// A public image may answer 401 to a wrong secret: the reference then
// tries again without credentials.
func TestRemoteAnonymousRetry(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true, user: "alice", pass: "right", anonymousOK: true})
	reg.push(t, "public/app:v1", "alice", "right")
	trust := map[string][]byte{TrustKey(reg.host): reg.pemCert()}
	secret := configJSONSecret(t, "stale", map[string]map[string]string{reg.host: {"auth": b64("alice:stale")}})
	a := testAccess(Policy{}, trust, secret)
	ref := reg.ref(t, "public/app:v1")

	_, err := get(context.Background(), a, ref, false, false)
	if err == nil || !AnonymousRetry(err) {
		t.Fatalf("first attempt: err %v, AnonymousRetry %v", err, AnonymousRetry(err))
	}
	if _, err := get(context.Background(), a, ref, false, false, WithoutCredentials()); err != nil {
		t.Fatalf("anonymous retry: %v", err)
	}
}

func TestRemoteNotFound(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	a := testAccess(Policy{}, map[string][]byte{TrustKey(reg.host): reg.pemCert()})
	for _, repoTag := range []string{"team/missing:v1", "team/app:missing"} {
		_, err := get(context.Background(), a, reg.ref(t, repoTag), false, false)
		if reason, msg := Classify(err); reason != ReasonNotFound {
			t.Errorf("%s: Classify(%v) = %q, %q", repoTag, err, reason, msg)
		}
		if Unavailable(err) {
			t.Errorf("%s: not found counts as unavailable", repoTag)
		}
	}
}

func TestRemotePolicyRefusesBeforeAnyRequest(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	trust := map[string][]byte{TrustKey(reg.host): reg.pemCert()}
	ref := reg.ref(t, "team/app:v1")

	cases := []struct {
		name            string
		policy          Policy
		checkImportList bool
		want            string
	}{
		{"blocked", Policy{Blocked: []string{reg.host}}, false, "registrySources.blockedRegistries"},
		{"blocked by wildcard port-less entry", Policy{Blocked: []string{"127.0.0.1"}}, false, "registrySources.blockedRegistries"},
		{"blocked repository", Policy{Blocked: []string{reg.host + "/team"}}, false, "registrySources.blockedRegistries"},
		{"not allowed", Policy{Allowed: []string{"quay.io"}}, false, "registrySources.allowedRegistries"},
		{"not for import", Policy{AllowedRegistriesForImport: []Location{{DomainName: "quay.io"}}}, true, "allowedRegistriesForImport"},
		{"empty import list", Policy{AllowedRegistriesForImport: []Location{}}, true, "allowedRegistriesForImport"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg.requests.Store(0)
			_, err := get(context.Background(), testAccess(c.policy, trust), ref, false, c.checkImportList)
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("err %v, want ErrForbidden", err)
			}
			if reason, msg := Classify(err); reason != ReasonForbidden || !strings.Contains(msg, c.want) {
				t.Errorf("Classify = %q, %q", reason, msg)
			}
			if n := reg.requests.Load(); n != 0 {
				t.Errorf("%d requests reached the registry", n)
			}
		})
	}

	// The import list binds only callers it applies to.
	pol := Policy{AllowedRegistriesForImport: []Location{{DomainName: "quay.io"}}}
	if _, err := get(context.Background(), testAccess(pol, trust), ref, false, false); err != nil {
		t.Errorf("without checkImportList: %v", err)
	}
	pol = Policy{AllowedRegistriesForImport: []Location{{DomainName: "127.0.0.1:*"}}}
	if _, err := get(context.Background(), testAccess(pol, trust), ref, false, true); err != nil {
		t.Errorf("listed for import: %v", err)
	}
}

func TestRemotePlainHTTP(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{})
	want := reg.push(t, "team/app:v1", "", "")
	ref := reg.ref(t, "team/app:v1")

	t.Run("secure", func(t *testing.T) {
		reg.requests.Store(0)
		_, err := get(context.Background(), testAccess(Policy{}, nil), ref, false, false)
		if reason, msg := Classify(err); reason != ReasonBadRequest || !strings.Contains(msg, "plain HTTP") {
			t.Errorf("Classify(%v) = %q, %q", err, reason, msg)
		}
		if Unavailable(err) {
			t.Errorf("an HTTP-only registry counts as unavailable")
		}
		if n := reg.requests.Load(); n != 0 {
			t.Errorf("%d plain HTTP requests reached a registry that is not insecure", n)
		}
	})
	for _, c := range []struct {
		name     string
		policy   Policy
		insecure bool
	}{
		{"insecure argument", Policy{}, true},
		{"insecureRegistries", Policy{Insecure: []string{reg.host}}, false},
		{"insecure import location", Policy{AllowedRegistriesForImport: []Location{{DomainName: "127.0.0.1:*", Insecure: true}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			desc, err := get(context.Background(), testAccess(c.policy, nil), ref, c.insecure, true)
			if err != nil {
				t.Fatalf("remote.Get: %v", err)
			}
			if desc.Digest != want {
				t.Errorf("digest %s, want %s", desc.Digest, want)
			}
		})
	}
}

// An insecure registry under a name outside ggcr's loopback and
// private-address heuristic, for which ggcr tries only HTTPS, gets plain
// HTTP too: the guard falls back.
func TestRemotePlainHTTPUnderAName(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{})
	want := reg.push(t, "team/app:v1", "", "")
	_, port, err := net.SplitHostPort(reg.host)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference("insecure.test:" + port + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Context().Registry.Scheme() != "https" {
		t.Fatalf("ggcr would try plain HTTP for %s itself", ref)
	}
	access := func(policy Policy) *Access {
		a := testAccess(policy, nil)
		tr := a.Client.Transport.(*http.Transport)
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, reg.host)
		}
		return a
	}

	desc, err := get(context.Background(), access(Policy{}), ref, true, false)
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if desc.Digest != want {
		t.Errorf("digest %s, want %s", desc.Digest, want)
	}
	if _, err := get(context.Background(), access(Policy{Insecure: []string{"insecure.test"}}), ref, false, false); err != nil {
		t.Fatalf("listed insecure: %v", err)
	}
	reg.requests.Store(0)
	_, err = get(context.Background(), access(Policy{}), ref, false, false)
	if reason, msg := Classify(err); reason != ReasonBadRequest {
		t.Errorf("secure: Classify(%v) = %q, %q", err, reason, msg)
	}
	if n := reg.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the registry over plain HTTP", n)
	}
}

// The guard itself: HTTPS first, plain HTTP only when insecure.
func TestGuardFallsBackToHTTPWhenInsecure(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{})
	g := &guard{next: http.DefaultTransport, limiter: rate.NewLimiter(rate.Inf, 0), insecure: true}
	req, err := http.NewRequest(http.MethodGet, "https://"+reg.host+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Scheme != "http" {
		t.Errorf("status %d over %s", resp.StatusCode, resp.Request.URL.Scheme)
	}

	g.insecure = false
	req, _ = http.NewRequest(http.MethodGet, "https://"+reg.host+"/v2/", nil)
	if _, err := g.RoundTrip(req); err == nil {
		t.Error("a secure guard fell back to plain HTTP")
	}
	req, _ = http.NewRequest(http.MethodGet, "http://"+reg.host+"/v2/", nil)
	var pe *plainHTTPError
	if _, err := g.RoundTrip(req); !errors.As(err, &pe) {
		t.Errorf("plain HTTP through a secure guard: %v", err)
	}
}

func TestRemoteLimiterHonoursContext(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	a := testAccess(Policy{}, map[string][]byte{TrustKey(reg.host): reg.pemCert()})
	a.Limiter = rate.NewLimiter(1, 1)
	a.Limiter.Allow() // the next token is a second away
	ref := reg.ref(t, "team/app:v1")

	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := get(ctx, a, ref, false, false)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 700*time.Millisecond {
			t.Errorf("returned after %v", d)
		}
		if Unavailable(err) {
			t.Errorf("a cancelled call counts as unavailable")
		}
		if reason, msg := Classify(err); reason != ReasonInternalError || !strings.Contains(msg, "cancelled") {
			t.Errorf("Classify = %q, %q", reason, msg)
		}
	})
	t.Run("cancelled before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := get(ctx, a, ref, false, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
	t.Run("deadline too close", func(t *testing.T) {
		a.Limiter.Allow()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := get(ctx, a, ref, false, false)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 700*time.Millisecond {
			t.Errorf("returned after %v", d)
		}
		if !Unavailable(err) {
			t.Errorf("a timeout does not count as unavailable")
		}
	})
	if n := reg.requests.Load(); n != 0 {
		t.Errorf("%d requests passed an empty limiter", n)
	}
}

func TestRemoteLimiterPacesEveryRequest(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	a := testAccess(Policy{}, map[string][]byte{TrustKey(reg.host): reg.pemCert()})
	const perSecond = 20
	a.Limiter = rate.NewLimiter(perSecond, 1)
	start := time.Now()
	for range 2 {
		if _, err := get(context.Background(), a, reg.ref(t, "team/app:v1"), false, false); err != nil {
			t.Fatal(err)
		}
	}
	n := reg.requests.Load()
	if n < 3 {
		t.Fatalf("only %d requests", n)
	}
	// n requests with burst 1 need at least (n-1)/rate; allow for timer slack.
	if min := time.Duration(n-1) * time.Second / perSecond * 8 / 10; time.Since(start) < min {
		t.Errorf("%d requests took %v, want at least %v", n, time.Since(start), min)
	}
}

func TestAccessDefaultLimiter(t *testing.T) {
	a := &Access{}
	l := a.rateLimiter()
	if l.Limit() != 2 || l.Burst() != 3 {
		t.Errorf("default limiter %v per second, burst %d; want 2, 3", l.Limit(), l.Burst())
	}
	if a.rateLimiter() != l {
		t.Error("the default limiter is not shared by the Access's calls")
	}
}

func TestRemoteUserAgent(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	a := testAccess(Policy{}, map[string][]byte{TrustKey(reg.host): reg.pemCert()})
	if _, err := get(context.Background(), a, reg.ref(t, "team/app:v1"), false, false); err != nil {
		t.Fatal(err)
	}
	agents := reg.userAgents()
	if len(agents) == 0 {
		t.Fatal("no requests")
	}
	for _, ua := range agents[len(agents)-1:] {
		if !strings.HasPrefix(ua, "berth/") {
			t.Errorf("User-Agent %q", ua)
		}
	}
}

func TestRemoteTransportCache(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	other := newTestRegistry(t, registryOptions{tls: true})
	trust := map[string][]byte{TrustKey(reg.host): reg.pemCert()}
	a := testAccess(Policy{}, nil)
	a.Trust = func(context.Context) (map[string][]byte, error) { return trust, nil }
	ref := reg.ref(t, "team/app:v1")

	for range 3 {
		if _, err := get(context.Background(), a, ref, false, false); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.transports); n != 1 {
		t.Fatalf("%d transports after calls with one trust set", n)
	}
	first := a.transports[0].t

	// A changed CA gets a transport of its own.
	trust = map[string][]byte{TrustKey(reg.host): append(other.pemCert(), reg.pemCert()...)}
	if _, err := get(context.Background(), a, ref, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := get(context.Background(), a, ref, true, false); err != nil {
		t.Fatal(err)
	}
	if n := len(a.transports); n != 3 {
		t.Fatalf("%d transports, want 3 (old CA, new CA, insecure)", n)
	}
	if a.transports[0].t != first {
		t.Error("the first transport was rebuilt")
	}

	// The cache is bounded; the most recent stay.
	for i := range maxTransports + 4 {
		ca := append([]byte(fmt.Sprintf("# variant %d\n", i)), reg.pemCert()...)
		if _, err := a.transport(ca, false, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.transports); n != maxTransports {
		t.Errorf("%d transports cached, want at most %d", n, maxTransports)
	}
}

func TestRemoteErrors(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	ref := reg.ref(t, "team/app:v1")
	boom := errors.New("boom")
	cases := []struct {
		name   string
		change func(a *Access)
		want   string
	}{
		{"policy", func(a *Access) { a.Policy = func(context.Context) (Policy, error) { return Policy{}, boom } }, "registry policy"},
		{"trust", func(a *Access) { a.Trust = func(context.Context) (map[string][]byte, error) { return nil, boom } }, "additionalTrustedCA"},
		{"secrets", func(a *Access) {
			a.Secrets = func(context.Context, string) ([]corev1.Secret, error) { return nil, boom }
		}, `pull secrets of project "project"`},
	}
	for _, c := range cases {
		a := testAccess(Policy{}, nil)
		c.change(a)
		_, err := a.Remote(context.Background(), "project", ref, false, false)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v", c.name, err)
		}
	}

	a := testAccess(Policy{}, map[string][]byte{TrustKey(reg.host): []byte("not a certificate")})
	if _, err := a.Remote(context.Background(), "project", ref, false, false); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("invalid CA: %v", err)
	}

	a = testAccess(Policy{}, nil)
	a.Client = &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, boom })}
	if _, err := a.Remote(context.Background(), "project", ref, false, false); err == nil || !strings.Contains(err.Error(), "*http.Transport") {
		t.Errorf("a client whose transport cannot be cloned: %v", err)
	}

	// Nil functions: nothing configured, anonymous, system trust only.
	bare := &Access{Limiter: rate.NewLimiter(rate.Inf, 0)}
	opts, err := bare.Remote(context.Background(), "project", ref, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref, opts...); err == nil {
		t.Error("the system pool trusted httptest's certificate")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// With Destinations set, a registry in the cluster's own network (here
// loopback) is reached only when a cluster admin listed it: an import
// cannot be used to probe or read internal services.
func TestRemoteDestinations(t *testing.T) {
	reg := newTestRegistry(t, registryOptions{tls: true})
	reg.push(t, "team/app:v1", "", "")
	trust := map[string][]byte{TrustKey(reg.host): reg.pemCert()}
	for _, c := range []struct {
		allowed []string
		ok      bool
	}{{nil, false}, {[]string{"10.0.0.0/8"}, false}, {[]string{"127.0.0.1"}, true}} {
		a := testAccess(Policy{}, trust)
		d, err := webhook.NewDestinations(c.allowed)
		if err != nil {
			t.Fatal(err)
		}
		a.Destinations = func(context.Context) (*webhook.Destinations, string, error) {
			return d, strings.Join(c.allowed, ","), nil
		}
		_, err = get(context.Background(), a, reg.ref(t, "team/app:v1"), false, false)
		if (err == nil) != c.ok {
			t.Errorf("allowed %v: %v, want ok=%v", c.allowed, err, c.ok)
		}
		if err != nil && !errors.Is(err, webhook.ErrDestinationRefused) {
			t.Errorf("allowed %v: %v is not a refused destination", c.allowed, err)
		}
	}
}
