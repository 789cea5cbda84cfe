package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"

	"github.com/berth-registry/berth/internal/buildinfo"
	"github.com/berth-registry/berth/internal/webhook"
)

// The reference's importer limits its upstream calls with a token bucket
// of 2 per second, burst 3.
const (
	defaultRate  = 2
	defaultBurst = 3
)

// maxTransports bounds the cached transports: one per distinct CA in use
// plus the insecure one is a handful in practice, and every stale entry
// (a CA since replaced) holds idle connections.
const maxTransports = 16

// Access builds the remote.Options for calls to other registries. Its
// functions are called on every call of Remote; Limiter is read once, on
// first use. An Access must not be copied after first use.
type Access struct {
	// Client is Berth's outbound client (proxy-aware, internal/outbound).
	// Its Transport must be an *http.Transport (nil means
	// http.DefaultTransport): it is cloned per trust set, keeping its
	// proxy function. Client.Timeout does not apply, since ggcr uses only
	// the transport; bound calls with the context instead.
	Client *http.Client
	// Secrets returns the project's pull secrets; nil means none.
	Secrets func(ctx context.Context, project string) ([]corev1.Secret, error)
	// Trust returns the data of the additionalTrustedCA ConfigMap: key
	// "host" or "host..port", value PEM; nil means none.
	Trust func(ctx context.Context) (map[string][]byte, error)
	// Policy returns the cluster's registry rules; nil allows everything.
	Policy func(ctx context.Context) (Policy, error)
	// Limiter paces every HTTP request of every call of this Access; nil
	// is the reference's 2 per second, burst 3. rate.NewLimiter(rate.Inf, 0)
	// disables pacing.
	Limiter *rate.Limiter
	// Destinations, when set, are the addresses calls may reach, with a
	// key that changes with them: every dial is vetted (redirects and
	// token realms included), so that a tenant cannot make the registry
	// reach the cluster's own network unless a cluster admin listed it.
	Destinations func(ctx context.Context) (*webhook.Destinations, string, error)

	limiterOnce sync.Once
	limiter     *rate.Limiter

	mu         sync.Mutex
	transports []cachedTransport // least recently used first
}

type transportKey struct {
	ca       [sha256.Size]byte // of the PEM; zero when none or insecure
	insecure bool
	dest     string // the Destinations' key
}

type idleCloser interface {
	http.RoundTripper
	CloseIdleConnections()
}

type cachedTransport struct {
	key transportKey
	t   idleCloser
}

// Remote returns the options with which ggcr reaches ref for project:
// the project's pull secrets as keychain, a transport that trusts the
// system pool plus the additionalTrustedCA entry for ref's registry, the
// rate limiter, a "berth/<version>" user agent and ctx (which must last as
// long as what ggcr returns is read: blob streams use it).
//
// The cluster policy is checked first (Policy.Check with checkImportList,
// on ref's repository), so a refused registry gets no request; the error
// wraps ErrForbidden. Errors reading secrets, trust or policy are wrapped
// with what was being read.
//
// insecure (or the policy listing the registry as insecure) allows plain
// HTTP and skips certificate verification. Otherwise Berth speaks only
// verified HTTPS, on every request of the call (token servers and
// redirects included) — also to loopback and private addresses, to which
// ggcr would otherwise fall back to HTTP. An insecure registry is tried
// over HTTPS first and over HTTP when that fails, whether or not ref was
// parsed with name.Insecure: the insecure argument decides, not ref.
//
// For the reference's anonymous retry (see AnonymousRetry), append
// WithoutCredentials() to the options returned.
func (a *Access) Remote(ctx context.Context, project string, ref name.Reference, insecure, checkImportList bool) ([]remote.Option, error) {
	repo := ref.Context()
	registry := repo.RegistryStr()

	var policy Policy
	if a.Policy != nil {
		p, err := a.Policy(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the cluster's registry policy: %w", err)
		}
		policy = p
	}
	if err := policy.Check(repo.Name(), checkImportList); err != nil {
		return nil, err
	}
	insecure = insecure || policy.InsecureFor(repo.Name())

	var ca []byte
	if !insecure && a.Trust != nil {
		data, err := a.Trust(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the additionalTrustedCA of %s: %w", configName, err)
		}
		ca = trustedCA(data, registry)
	}
	var dest *webhook.Destinations
	destKey := ""
	if a.Destinations != nil {
		d, key, err := a.Destinations(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the destinations upstreams may be at: %w", err)
		}
		dest, destKey = d, key
	}
	base, err := a.transport(ca, insecure, dest, destKey)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", registry, err)
	}

	var secrets []corev1.Secret
	if a.Secrets != nil {
		secrets, err = a.Secrets(ctx, project)
		if err != nil {
			return nil, fmt.Errorf("reading the pull secrets of project %q: %w", project, err)
		}
	}

	rt := &guard{next: base, limiter: a.rateLimiter(), insecure: insecure}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(rt),
		remote.WithAuthFromKeychain(Keychain(secrets)),
		remote.WithUserAgent(userAgent()),
	}, nil
}

// WithoutCredentials replaces the keychain of options from Remote with
// anonymous access: later options win in ggcr, and it refuses an
// authenticator and a keychain together, so this is a keychain too.
func WithoutCredentials() remote.Option {
	return remote.WithAuthFromKeychain(anonymousKeychain{})
}

type anonymousKeychain struct{}

func (anonymousKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.Anonymous, nil
}

// TrustKey is the additionalTrustedCA ConfigMap key of a registry:
// "host" or "host..port", since ConfigMap keys cannot hold a colon.
func TrustKey(registry string) string {
	if h, p, err := net.SplitHostPort(registry); err == nil {
		return h + ".." + p
	}
	return registry
}

// trustedCA returns the PEM configured for registry, trying Docker Hub's
// other names for Docker Hub.
func trustedCA(data map[string][]byte, registry string) []byte {
	if pem, ok := data[TrustKey(registry)]; ok {
		return pem
	}
	host, port := splitHostPort(registry)
	if !isHub(host) {
		return nil
	}
	for _, h := range hostCandidates(host) {
		k := h
		if port != "" {
			k = h + ".." + port
		}
		if pem, ok := data[k]; ok {
			return pem
		}
	}
	return nil
}

func (a *Access) rateLimiter() *rate.Limiter {
	a.limiterOnce.Do(func() {
		a.limiter = a.Limiter
		if a.limiter == nil {
			a.limiter = rate.NewLimiter(defaultRate, defaultBurst)
		}
	})
	return a.limiter
}

// transport returns the cached transport for (ca, insecure), building it
// from Client's on first use: one per trust set, so that connections to a
// registry are reused across calls, and a changed CA gets a new one.
func (a *Access) transport(ca []byte, insecure bool, dest *webhook.Destinations, destKey string) (http.RoundTripper, error) {
	key := transportKey{insecure: insecure, dest: destKey}
	if !insecure && len(ca) > 0 {
		key.ca = sha256.Sum256(ca)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	for i, c := range a.transports {
		if c.key == key {
			a.transports = append(append(a.transports[:i:i], a.transports[i+1:]...), c)
			return c.t, nil
		}
	}

	var base *http.Transport
	switch t := a.clientTransport().(type) {
	case *http.Transport:
		base = t
	default:
		return nil, fmt.Errorf("the outbound client's transport is a %T, not an *http.Transport", t)
	}
	t := base.Clone()
	cfg := t.TLSClientConfig
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if insecure {
		cfg.InsecureSkipVerify = true
	} else if len(ca) > 0 {
		var pool *x509.CertPool
		if cfg.RootCAs != nil {
			pool = cfg.RootCAs.Clone()
		} else if sys, err := x509.SystemCertPool(); err == nil {
			pool = sys
		} else {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("its additionalTrustedCA entry holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	t.TLSClientConfig = cfg
	var rt idleCloser = t
	if dest != nil {
		rt = dest.Guard(t).(idleCloser)
	}

	a.transports = append(a.transports, cachedTransport{key: key, t: rt})
	if len(a.transports) > maxTransports {
		// Calls still holding the evicted transport keep working; only
		// its idle connections go.
		a.transports[0].t.CloseIdleConnections()
		a.transports = a.transports[1:]
	}
	return rt, nil
}

func (a *Access) clientTransport() http.RoundTripper {
	if a.Client == nil || a.Client.Transport == nil {
		return http.DefaultTransport
	}
	return a.Client.Transport
}

func userAgent() string {
	info := buildinfo.Read()
	v := info.Version
	if v == "" {
		v = info.ShortRevision()
	}
	if v == "" {
		v = "devel"
	}
	return "berth/" + v
}
