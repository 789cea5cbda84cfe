package outbound

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/internal/settings"
)

// A request goes through the proxy the settings in effect name when it is
// sent, and a change of the settings applies to the next request.
func TestClientFollowsTheConfigProxy(t *testing.T) {
	var proxied atomic.Int64
	var lastURL atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		lastURL.Store(r.URL.String()) // a proxy sees the absolute URL
		io.WriteString(w, "via proxy")
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("HTTPS_PROXY", "http://env-proxy.invalid:3128")
	t.Setenv("NO_PROXY", "")

	holder := settings.NewHolder(&settings.Settings{Proxy: settings.Proxy{HTTP: proxy.URL}})
	c := Client(holder)
	// The request goes to the proxy (on loopback), which answers: the
	// upstream name is never resolved.
	resp, err := c.Get("http://registry.example.test/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "via proxy" || proxied.Load() != 1 || lastURL.Load() != "http://registry.example.test/v2/" {
		t.Fatalf("through the proxy: %q, %d requests, URL %v", body, proxied.Load(), lastURL.Load())
	}

	decide := func(target string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", target, nil)
		u, err := c.Transport.(*http.Transport).Proxy(req)
		if err != nil {
			t.Fatal(err)
		}
		if u == nil {
			return ""
		}
		return u.String()
	}
	if got := decide("https://quay.example.test/v2/"); got != "http://env-proxy.invalid:3128" {
		t.Errorf("https with the Config's https empty: %q, want the environment's", got)
	}
	if got := decide("http://127.0.0.1:5000/v2/"); got != "" {
		t.Errorf("loopback: %q, want no proxy", got)
	}
	holder.Store(&settings.Settings{Proxy: settings.Proxy{HTTP: proxy.URL, HTTPS: "http://https-proxy.invalid:8443", NoProxy: ".internal.test"}})
	if got := decide("https://quay.example.test/v2/"); got != "http://https-proxy.invalid:8443" {
		t.Errorf("after the change, https: %q", got)
	}
	if got := decide("http://mirror.internal.test/v2/"); got != "" {
		t.Errorf("a noProxy host: %q, want direct", got)
	}
	holder.Store(&settings.Settings{})
	if got := decide("http://registry.example.test/v2/"); got != "" {
		t.Errorf("with no proxy anywhere: %q, want direct", got)
	}
}
