package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func mustDestinations(t *testing.T, allowed ...string) *Destinations {
	t.Helper()
	d, err := NewDestinations(allowed)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeDNS makes d resolve names from m instead of the network; a name not
// in m is not found, and every lookup is counted.
func fakeDNS(d *Destinations, m map[string][]string, calls *atomic.Int64) {
	d.lookup = func(ctx context.Context, host string) ([]net.IPAddr, error) {
		if calls != nil {
			calls.Add(1)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		addrs, ok := m[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.96.0.10:53", IsNotFound: true}
		}
		var out []net.IPAddr
		for _, a := range addrs {
			out = append(out, net.IPAddr{IP: net.ParseIP(a)})
		}
		return out, nil
	}
}

func TestNewDestinations(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "10.0.0.256", "300.1.2.3", "", " ", "not a host", "http://hooks.example", "hooks.example:8080", "-bad.example", "fe80::1%eth0", "10.0.0.0/x", "under_score.example"} {
		_, err := NewDestinations([]string{"10.0.0.0/8", bad})
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("%q: error does not name it: %v", bad, err)
		}
	}
	_, err := NewDestinations([]string{"10.0.0.0/33", "bad entry"})
	if err == nil || !strings.Contains(err.Error(), `"10.0.0.0/33"`) || !strings.Contains(err.Error(), `"bad entry"`) {
		t.Errorf("two bad entries: %v, want both named", err)
	}
	d, err := NewDestinations([]string{"10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8", "Hooks.Internal.Example.", "::ffff:192.168.0.0/112"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.1.2.3", "127.0.0.1", "::1", "fd00::5", "192.168.3.4", "::ffff:10.0.0.1"} {
		if err := d.CheckURL(context.Background(), "http://"+hostPort(a)+"/"); err != nil {
			t.Errorf("%s refused: %v", a, err)
		}
	}
	if err := d.CheckURL(context.Background(), "https://hooks.internal.example/x"); err != nil {
		t.Errorf("a listed name, in another case: %v", err)
	}
}

func hostPort(a string) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]"
	}
	return a
}

func TestCheckURLRefusesNonPublicAddresses(t *testing.T) {
	d := mustDestinations(t)
	// Names are not resolved in this test: every host is an address.
	fakeDNS(d, nil, nil)
	for _, host := range []string{
		"127.0.0.1", "127.1.2.3", "169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1",
		"100.64.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "255.255.255.255",
		"[::1]", "[::]", "[::ffff:127.0.0.1]", "[::ffff:169.254.169.254]", "[::ffff:100.64.0.1]", "[fe80::1]", "[fe80::1%25eth0]",
		"[fd12:3456::1]", "[ff02::1]", "[64:ff9b::a9fe:a9fe]", "[2002:0a00:0001::1]", "[::127.0.0.1]",
	} {
		err := d.CheckURL(context.Background(), "http://"+host+":8080/hook?token=abc")
		if !errors.Is(err, ErrDestinationRefused) {
			t.Errorf("%s: %v, want refused", host, err)
			continue
		}
		if strings.Contains(err.Error(), "token") {
			t.Errorf("%s: the error repeats the query: %v", host, err)
		}
	}
	for _, host := range []string{"93.184.216.34", "[2606:2800:220:1:248:1893:25c8:1946]", "[64:ff9b::5db8:d822]", "8.8.8.8"} {
		if err := d.CheckURL(context.Background(), "https://"+host+"/hook"); err != nil {
			t.Errorf("%s: %v, want allowed", host, err)
		}
	}
}

func TestCheckURLRefusesBadURLs(t *testing.T) {
	d := mustDestinations(t, "127.0.0.0/8", "hooks.internal.example")
	for raw, want := range map[string]string{
		"ftp://93.184.216.34/x":                "scheme",
		"file:///etc/passwd":                   "scheme",
		"93.184.216.34/hook":                   "scheme",
		"http://user:pw@93.184.216.34/x":       "user information",
		"https://token@hooks.internal.example": "user information",
		"http:///path":                         "no host",
		"http://":                              "no host",
		"http:opaque":                          "no host",
		"http://127.0.0.1:99999/":              "port",
		"http://127.0.0.1:0/":                  "port",
		"http://[::1/":                         "not valid",
		"http://a b.example/":                  "not valid",
	} {
		err := d.CheckURL(context.Background(), raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error about %s", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error repeats the password: %v", raw, err)
		}
	}
}

func TestCheckURLHonoursTheAllowList(t *testing.T) {
	ctx := context.Background()
	refused := mustDestinations(t)
	if err := refused.CheckURL(ctx, "http://127.0.0.1:5000/"); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("127.0.0.1 not listed: %v", err)
	}
	if err := mustDestinations(t, "127.0.0.1").CheckURL(ctx, "http://127.0.0.1:5000/"); err != nil {
		t.Errorf("127.0.0.1 listed: %v", err)
	}
	cidr := mustDestinations(t, "127.0.0.0/8")
	if err := cidr.CheckURL(ctx, "http://127.0.0.2:5000/"); err != nil {
		t.Errorf("127.0.0.0/8 listed: %v", err)
	}
	if err := cidr.CheckURL(ctx, "http://[::ffff:127.0.0.2]:5000/"); err != nil {
		t.Errorf("mapped form of a listed address: %v", err)
	}
	for _, other := range []string{"10.1.2.3", "169.254.169.254", "[::1]"} {
		if err := cidr.CheckURL(ctx, "http://"+other+"/"); !errors.Is(err, ErrDestinationRefused) {
			t.Errorf("%s with 127.0.0.0/8 listed: %v", other, err)
		}
	}

	// A listed name is allowed as it is, without being resolved.
	var lookups atomic.Int64
	named := mustDestinations(t, "hooks.internal.example")
	fakeDNS(named, map[string][]string{"other.internal.example": {"10.0.0.7"}}, &lookups)
	if err := named.CheckURL(ctx, "https://hooks.internal.example/x"); err != nil || lookups.Load() != 0 {
		t.Errorf("listed name: %v after %d lookups", err, lookups.Load())
	}
	err := named.CheckURL(ctx, "https://other.internal.example/x")
	if !errors.Is(err, ErrDestinationRefused) || !strings.Contains(err.Error(), "other.internal.example") || !strings.Contains(err.Error(), "10.0.0.7") {
		t.Errorf("unlisted name: %v", err)
	}
}

func TestCheckURLResolvesNames(t *testing.T) {
	ctx := context.Background()
	d := mustDestinations(t)
	fakeDNS(d, map[string][]string{
		"public.example": {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"mixed.example":  {"93.184.216.34", "10.0.0.1"},
		"meta.example":   {"169.254.169.254"},
		"empty.example":  {},
	}, nil)
	if err := d.CheckURL(ctx, "https://public.example/hook"); err != nil {
		t.Errorf("public name: %v", err)
	}
	for _, name := range []string{"mixed.example", "meta.example"} {
		if err := d.CheckURL(ctx, "https://"+name+"/hook"); !errors.Is(err, ErrDestinationRefused) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	for _, name := range []string{"missing.example", "empty.example"} {
		err := d.CheckURL(ctx, "https://"+name+"/hook")
		if err == nil || errors.Is(err, ErrDestinationRefused) || !strings.Contains(err.Error(), "could not be resolved") {
			t.Errorf("%s: %v, want a resolution error", name, err)
		}
		// The cluster's DNS server is not the user's business.
		if err != nil && strings.Contains(err.Error(), "10.96.0.10") {
			t.Errorf("%s: the error names the DNS server: %v", name, err)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.CheckURL(canceled, "https://public.example/hook"); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v, want the resolution to see it", err)
	}
}

// The dial guard refuses, at connect time, what CheckURL would refuse.
func TestDialContextRefusesNonPublicAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	_, err := mustDestinations(t).DialContext(context.Background(), "tcp", addr)
	if !errors.Is(err, ErrDestinationRefused) {
		t.Fatalf("dial %s not allowed: %v", addr, err)
	}
	for _, allowed := range []string{"127.0.0.1", "127.0.0.0/8"} {
		c, err := mustDestinations(t, allowed).DialContext(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatalf("dial %s with %s allowed: %v", addr, allowed, err)
		}
		c.Close()
	}

	// A name resolving to a listed name's addresses is still refused: the
	// name, not the address, was vouched for.
	d := mustDestinations(t, "hooks.internal.example")
	_, port, _ := net.SplitHostPort(addr)
	fakeDNS(d, map[string][]string{"hooks.internal.example": {"127.0.0.1"}, "evil.example": {"127.0.0.1"}}, nil)
	if _, err := d.DialContext(context.Background(), "tcp", "evil.example:"+port); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("unlisted name to loopback: %v", err)
	}
	c, err := d.DialContext(context.Background(), "tcp", "hooks.internal.example:"+port)
	if err != nil {
		t.Fatalf("listed name: %v", err)
	}
	c.Close()
	if _, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("the listed name's address, dialled by address: %v", err)
	}
}

func TestControl(t *testing.T) {
	d := mustDestinations(t, "10.0.0.0/8")
	for addr, ok := range map[string]bool{
		"127.0.0.1:80":            false,
		"[::1]:80":                false,
		"[::ffff:127.0.0.1]:80":   false,
		"169.254.169.254:80":      false,
		"192.168.0.1:443":         false,
		"10.1.2.3:443":            true,
		"93.184.216.34:443":       true,
		"[2606:2800:220:1::1]:80": true,
		"not-an-address:80":       false,
	} {
		err := d.Control("tcp", addr, nil)
		if ok != (err == nil) || !ok && !errors.Is(err, ErrDestinationRefused) {
			t.Errorf("Control(%s) = %v, want allowed %v", addr, err, ok)
		}
	}
}

// A nil policy allows public destinations only, without panicking.
func TestNilDestinations(t *testing.T) {
	var d *Destinations
	if err := d.CheckURL(context.Background(), "http://10.0.0.1/"); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("nil policy, private address: %v", err)
	}
	if err := d.CheckURL(context.Background(), "http://93.184.216.34/"); err != nil {
		t.Errorf("nil policy, public address: %v", err)
	}
	if err := d.Control("tcp", "127.0.0.1:80", nil); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("nil policy, Control: %v", err)
	}
	u, _ := url.Parse("http://127.0.0.1:1/")
	if _, err := d.DialContext(context.Background(), "tcp", u.Host); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("nil policy, DialContext: %v", err)
	}
}
