package upstream

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
)

// testRegistry is ggcr's in-memory registry on loopback, optionally
// behind a basic-auth check, counting the requests that reach it.
type testRegistry struct {
	srv      *httptest.Server
	host     string // 127.0.0.1:port
	requests atomic.Int64

	mu     sync.Mutex
	agents []string
}

type registryOptions struct {
	tls         bool
	user, pass  string // "" accepts everyone
	anonymousOK bool   // with user set: requests without credentials pass, wrong ones do not
}

func newTestRegistry(t *testing.T, o registryOptions) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		r.mu.Lock()
		r.agents = append(r.agents, req.UserAgent())
		r.mu.Unlock()
		if o.user != "" {
			u, p, ok := req.BasicAuth()
			switch {
			case ok && u == o.user && p == o.pass:
			case !ok && o.anonymousOK:
			default:
				msg := "authentication required"
				if ok {
					msg = "incorrect username or password"
				}
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"errors":[{"code":"UNAUTHORIZED","message":%q}]}`, msg)
				return
			}
		}
		inner.ServeHTTP(w, req)
	})
	r.srv = quietServer(h, o.tls)
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "https://"), "http://")
	return r
}

// quietServer starts an httptest server whose handshake failures (the
// point of some tests) are not logged.
func quietServer(h http.Handler, useTLS bool) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	return srv
}

// pemCert is the server's certificate, as additionalTrustedCA holds it.
func (r *testRegistry) pemCert() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
}

// push writes a random image to repo:tag with a transport that trusts
// the server, and returns its digest. The request counter starts again.
func (r *testRegistry) push(t *testing.T, repoTag string, user, pass string) v1.Hash {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{remote.WithTransport(r.srv.Client().Transport)}
	if user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.requests.Store(0)
	return d
}

func (r *testRegistry) ref(t *testing.T, repoTag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func (r *testRegistry) userAgents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.agents...)
}

// testAccess is an Access with the given rules, trusting trust, with the
// project's secrets, unpaced unless a test sets Limiter.
func testAccess(policy Policy, trust map[string][]byte, secrets ...corev1.Secret) *Access {
	return &Access{
		Client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		Secrets: func(_ context.Context, project string) ([]corev1.Secret, error) {
			if project != "project" {
				return nil, fmt.Errorf("unexpected project %q", project)
			}
			return secrets, nil
		},
		Trust:   func(context.Context) (map[string][]byte, error) { return trust, nil },
		Policy:  func(context.Context) (Policy, error) { return policy, nil },
		Limiter: rate.NewLimiter(rate.Inf, 0),
	}
}

// get runs remote.Get with the options of a.Remote, and extra ones.
func get(ctx context.Context, a *Access, ref name.Reference, insecure, checkImportList bool, extra ...remote.Option) (*remote.Descriptor, error) {
	opts, err := a.Remote(ctx, "project", ref, insecure, checkImportList)
	if err != nil {
		return nil, err
	}
	return remote.Get(ref, append(opts, extra...)...)
}
