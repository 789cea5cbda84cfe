package metrics

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
)

// fakeAuthn takes "Bearer user:NAME" for user NAME, no credentials for
// the anonymous user, and refuses anything else, counting what it saw.
type fakeAuthn struct{ seen []string }

func (f *fakeAuthn) Middleware(next http.Handler, fail func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		f.seen = append(f.seen, h)
		u := auth.Anonymous
		if h != "" {
			name, ok := strings.CutPrefix(h, "Bearer user:")
			if !ok {
				fail(w, r, fmt.Errorf("%w: bad credentials", auth.ErrUnauthenticated))
				return
			}
			u = auth.User{Name: name}
		}
		next.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), auth.Identity{User: u})))
	})
}

// fakeAuthz allows get registry/metrics to the users it lists.
type fakeAuthz map[string]bool

func (f fakeAuthz) Authorize(_ context.Context, u auth.User, verb string, res auth.Resource, project string) (bool, error) {
	if u.Name == "broken" {
		return false, errors.New("store down")
	}
	return f[u.Name] && verb == "get" && res == auth.RegistryMetrics && project == "", nil
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestEndpointAccess(t *testing.T) {
	const secret = "0123456789abcdef-metrics"
	m := New()
	authn := &fakeAuthn{}
	h := m.Endpoint(Access{Secret: secret, Authn: authn, Authz: fakeAuthz{"prom": true}})
	for _, c := range []struct {
		name, authorization string
		code                int
		authenticated       bool // reached the authenticator
	}{
		{"secret as a Basic password", basic("anything", secret), 200, false},
		{"secret as a bearer token", "Bearer " + secret, 200, false},
		{"secret, scheme in capitals", "BASIC " + base64.StdEncoding.EncodeToString([]byte("x:"+secret)), 200, false},
		{"wrong secret", basic("anything", secret+"x"), 401, true},
		{"wrong bearer", "Bearer " + secret[:15], 401, true},
		{"no credentials", "", 401, true},
		{"granted user", "Bearer user:prom", 200, true},
		{"other user", "Bearer user:alice", 403, true},
		{"undecidable", "Bearer user:broken", 500, true},
	} {
		authn.seen = nil
		req := httptest.NewRequest("GET", Path, nil)
		if c.authorization != "" {
			req.Header.Set("Authorization", c.authorization)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.code {
			t.Errorf("%s: %d, want %d: %s", c.name, w.Code, c.code, w.Body)
		}
		if (len(authn.seen) > 0) != c.authenticated {
			t.Errorf("%s: the authenticator saw %q", c.name, authn.seen)
		}
		if c.code == 200 && !strings.Contains(w.Body.String(), "imageregistry_build_info") {
			t.Errorf("%s: no metrics:\n%.300s", c.name, w.Body)
		}
		if c.code == 401 && w.Header().Get("WWW-Authenticate") != `Basic realm="berth"` {
			t.Errorf("%s: challenge %q", c.name, w.Header().Get("WWW-Authenticate"))
		}
		if c.code != 200 && strings.Contains(w.Body.String(), "imageregistry_") {
			t.Errorf("%s: metrics shown to a refused caller", c.name)
		}
	}
	// Without a secret, a Basic password is only a password.
	h = m.Endpoint(Access{Authn: authn, Authz: fakeAuthz{}})
	req := httptest.NewRequest("GET", Path, nil)
	req.Header.Set("Authorization", basic("anything", ""))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 401 {
		t.Errorf("empty password without a secret: %d", w.Code)
	}
}

func TestCheckSecret(t *testing.T) {
	if err := CheckSecret(""); err != nil {
		t.Errorf("no secret: %v", err)
	}
	if err := CheckSecret("short"); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short secret: %v", err)
	}
	if err := CheckSecret(strings.Repeat("s", 16)); err != nil {
		t.Errorf("16 characters: %v", err)
	}
}
