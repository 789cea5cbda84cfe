// Package outbound builds every HTTP client with which Berth reaches
// other servers (image import, pull-through, object storage, webhooks),
// so that all of them honour the registry Config's spec.proxy, live.
package outbound

import (
	"net/http"
	"net/url"
	"sync/atomic"

	"golang.org/x/net/http/httpproxy"

	"github.com/berth-registry/berth/internal/settings"
)

// Settings is where the proxy in effect comes from.
type Settings interface {
	Load() *settings.Settings
}

// Client returns an HTTP client whose every request goes through the
// proxy the settings in effect name when it is sent (each of http, https
// and noProxy falling back to the process's HTTP_PROXY, HTTPS_PROXY and
// NO_PROXY when the Config leaves it empty). Requests to loopback
// addresses never use a proxy.
func Client(s Settings) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	p := &proxies{settings: s, env: httpproxy.FromEnvironment()}
	t.Proxy = p.proxy
	return &http.Client{Transport: t}
}

type proxies struct {
	settings Settings
	env      *httpproxy.Config
	// cached is the proxy function of the last configuration seen: a
	// configuration changes rarely, requests often.
	cached atomic.Pointer[cachedProxy]
}

type cachedProxy struct {
	cfg settings.Proxy
	fn  func(*url.URL) (*url.URL, error)
}

func (p *proxies) proxy(req *http.Request) (*url.URL, error) {
	cfg := p.settings.Load().Proxy
	c := p.cached.Load()
	if c == nil || c.cfg != cfg {
		merged := httpproxy.Config{HTTPProxy: cfg.HTTP, HTTPSProxy: cfg.HTTPS, NoProxy: cfg.NoProxy}
		if merged.HTTPProxy == "" {
			merged.HTTPProxy = p.env.HTTPProxy
		}
		if merged.HTTPSProxy == "" {
			merged.HTTPSProxy = p.env.HTTPSProxy
		}
		if merged.NoProxy == "" {
			merged.NoProxy = p.env.NoProxy
		}
		c = &cachedProxy{cfg: cfg, fn: merged.ProxyFunc()}
		p.cached.Store(c)
	}
	return c.fn(req.URL)
}
