package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/outbound"
	"github.com/berth-registry/berth/internal/settings"
)

// newSender returns a Sender over Berth's outbound client with the
// settings s, under the policy allowed.
func newSender(t *testing.T, s *settings.Settings, allowed ...string) (*Sender, *Destinations) {
	t.Helper()
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("NO_PROXY", "")
	d := mustDestinations(t, allowed...)
	return NewSender(outbound.Client(settings.NewHolder(s)), d), d
}

// server answers with h and counts requests.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestSendDelivers(t *testing.T) {
	key := []byte("the-signing-key")
	type received struct {
		header http.Header
		body   []byte
		method string
	}
	got := make(chan received, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- received{r.Header.Clone(), b, r.Method}
		w.WriteHeader(http.StatusAccepted)
	})
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	e := testEvent()
	res := s.Send(context.Background(), srv.URL+"/hook", key, e)
	if res.Err != nil || res.Status != http.StatusAccepted || res.Retry || res.Duration <= 0 {
		t.Fatalf("result %+v", res)
	}
	r := <-got
	if r.method != http.MethodPost {
		t.Errorf("method %s", r.method)
	}
	for h, want := range map[string]string{
		"Content-Type":     "application/cloudevents+json; charset=utf-8",
		"User-Agent":       "berth-webhook/1",
		"X-Berth-Event":    TypeImagePushed,
		"X-Berth-Delivery": "berth-42",
	} {
		if v := r.header.Get(h); v != want {
			t.Errorf("%s: %q, want %q", h, v, want)
		}
	}
	m := hmac.New(sha256.New, key)
	m.Write(r.body)
	if sig := r.header.Get("X-Berth-Signature"); sig != "sha256="+hex.EncodeToString(m.Sum(nil)) || !Verify(key, r.body, sig) {
		t.Errorf("signature %q does not sign the body", sig)
	}
	want, _ := Encode(e)
	if string(r.body) != string(want) {
		t.Errorf("body %s, want %s", r.body, want)
	}
	var ce map[string]any
	if err := json.Unmarshal(r.body, &ce); err != nil || ce["id"] != "berth-42" || ce["specversion"] != "1.0" {
		t.Errorf("body %v (%v)", ce, err)
	}

	// Without a key, nothing is signed.
	if res := s.Send(context.Background(), srv.URL+"/hook", nil, e); res.Err != nil {
		t.Fatal(res.Err)
	}
	if r := <-got; r.header.Get("X-Berth-Signature") != "" {
		t.Errorf("signed without a key: %q", r.header.Get("X-Berth-Signature"))
	}
}

func TestSendServerErrorIsRetried(t *testing.T) {
	srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database\x00 is down\n"+strings.Repeat("x", 1000), http.StatusInternalServerError)
	})
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	res := s.Send(context.Background(), srv.URL+"/hook?token=SECRET-TOKEN", []byte("KEY-VALUE"), testEvent())
	if res.Err == nil || !res.Retry || res.Status != 500 || n.Load() != 1 {
		t.Fatalf("result %+v after %d requests", res, n.Load())
	}
	msg := res.Err.Error()
	if !strings.Contains(msg, "database is down") || !strings.Contains(msg, "500 Internal Server Error") || !strings.Contains(msg, srv.URL+"/hook") {
		t.Errorf("error %q: want the status, the body's start, the URL", msg)
	}
	if strings.Contains(msg, strings.Repeat("x", 300)) {
		t.Errorf("error holds more than 256 bytes of the body: %d bytes", len(msg))
	}
	if strings.Contains(msg, "SECRET-TOKEN") || strings.Contains(msg, "KEY-VALUE") || strings.Contains(msg, "\x00") {
		t.Errorf("error %q shows the query, the key or raw bytes", msg)
	}
	if res.RetryAfter != 0 {
		t.Errorf("RetryAfter %v without the header", res.RetryAfter)
	}
}

func TestSendTooManyRequestsHonoursRetryAfter(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	res := s.Send(context.Background(), srv.URL, nil, testEvent())
	if res.Err == nil || !res.Retry || res.Status != 429 || res.RetryAfter != 7*time.Second {
		t.Fatalf("result %+v", res)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 120 ":                         2 * time.Minute,
		"0":                             0,
		"-5":                            0,
		"86400":                         time.Hour,
		"99999999999999999999":          0, // not a number Go can hold, nor a date
		"soon":                          0,
		"Thu, 02 Jan 2025 03:05:35 GMT": 90 * time.Second,
		"Thu, 02 Jan 2025 03:00:00 GMT": 0,
		"Fri, 03 Jan 2025 03:04:05 GMT": time.Hour,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", h, got, want)
		}
	}
}

func TestSendClientErrorIsPermanent(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 410, 422} {
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
		s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
		res := s.Send(context.Background(), srv.URL, nil, testEvent())
		if res.Err == nil || res.Retry || res.Status != code {
			t.Errorf("%d: result %+v", code, res)
		}
	}
	for _, code := range []int{408, 502, 503, 504} {
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
		s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
		if res := s.Send(context.Background(), srv.URL, nil, testEvent()); res.Err == nil || !res.Retry || res.Status != code {
			t.Errorf("%d: result %+v", code, res)
		}
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	res := s.Send(context.Background(), srv.URL+"/hook", nil, testEvent())
	if res.Err == nil || res.Retry || res.Status != http.StatusFound || followed.Load() != 0 {
		t.Fatalf("result %+v, redirect followed %d times", res, followed.Load())
	}
	if !strings.Contains(res.Err.Error(), "redirect") {
		t.Errorf("error %q does not say why", res.Err)
	}
}

func TestSendTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	s.Timeout = 100 * time.Millisecond
	res := s.Send(context.Background(), srv.URL, nil, testEvent())
	if res.Err == nil || !res.Retry || res.Status != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.Duration < s.Timeout || res.Duration > 5*time.Second {
		t.Errorf("took %v with a timeout of %v", res.Duration, s.Timeout)
	}
	if !strings.Contains(res.Err.Error(), "no response within 100ms") {
		t.Errorf("error %q does not say it timed out", res.Err)
	}
}

func TestSendNetworkErrorIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	target := srv.URL + "/hook?token=SECRET-TOKEN"
	srv.Close() // nothing listens there any more
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	res := s.Send(context.Background(), target, nil, testEvent())
	if res.Err == nil || !res.Retry || res.Status != 0 {
		t.Fatalf("result %+v", res)
	}
	if strings.Contains(res.Err.Error(), "SECRET-TOKEN") {
		t.Errorf("error %q shows the query", res.Err)
	}
}

func TestSendRefusesLoopbackNotAllowed(t *testing.T) {
	srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {})
	s, _ := newSender(t, &settings.Settings{})
	res := s.Send(context.Background(), srv.URL, nil, testEvent())
	if !errors.Is(res.Err, ErrDestinationRefused) || res.Retry || n.Load() != 0 {
		t.Fatalf("result %+v after %d requests", res, n.Load())
	}
	s, _ = newSender(t, &settings.Settings{}, "127.0.0.0/8")
	if res := s.Send(context.Background(), srv.URL, nil, testEvent()); res.Err != nil || n.Load() != 1 {
		t.Fatalf("allowed: result %+v after %d requests", res, n.Load())
	}
}

// A name that resolves to a public address when checked and to loopback
// when connected to (DNS rebinding) is refused at connect time.
func TestSendRefusesRebinding(t *testing.T) {
	srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {})
	u, _ := url.Parse(srv.URL)
	s, d := newSender(t, &settings.Settings{})
	var lookups atomic.Int64
	d.lookup = func(ctx context.Context, host string) ([]net.IPAddr, error) {
		if lookups.Add(1) == 1 {
			return []net.IPAddr{{IP: net.ParseIP("93.184.216.34")}}, nil
		}
		return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}}, nil
	}
	res := s.Send(context.Background(), "http://rebind.example:"+u.Port()+"/hook", nil, testEvent())
	if !errors.Is(res.Err, ErrDestinationRefused) || res.Retry || n.Load() != 0 {
		t.Fatalf("result %+v after %d requests", res, n.Load())
	}
	if lookups.Load() != 2 {
		t.Fatalf("%d lookups, want one to check and one to connect", lookups.Load())
	}
}

// A listed host name reaches whatever it resolves to.
func TestSendToListedHostName(t *testing.T) {
	hosts := make(chan string, 1)
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) { hosts <- r.Host })
	u, _ := url.Parse(srv.URL)
	s, d := newSender(t, &settings.Settings{}, "hooks.internal.example")
	fakeDNS(d, map[string][]string{"hooks.internal.example": {"127.0.0.1"}}, nil)
	target := "http://hooks.internal.example:" + u.Port() + "/hook"
	if res := s.Send(context.Background(), target, nil, testEvent()); res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if h := <-hosts; h != "hooks.internal.example:"+u.Port() {
		t.Errorf("Host %q", h)
	}
}

// Through a proxy, the connection goes to the proxy, which the guard lets
// through although it is on loopback and loopback is not allowed; what is
// checked is the URL.
func TestSendThroughProxy(t *testing.T) {
	seen := make(chan string, 2)
	proxy, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.String()
	})
	s, d := newSender(t, &settings.Settings{Proxy: settings.Proxy{HTTP: proxy.URL}})
	res := s.Send(context.Background(), "http://93.184.216.34/hook", nil, testEvent())
	if res.Err != nil || res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	if got := <-seen; got != "POST http://93.184.216.34/hook" {
		t.Errorf("the proxy saw %q", got)
	}
	// The URL is still checked with a proxy in effect.
	if res := s.Send(context.Background(), "http://10.1.2.3/hook", nil, testEvent()); !errors.Is(res.Err, ErrDestinationRefused) {
		t.Errorf("private URL through the proxy: %+v", res)
	}
	// Only Send's record of the proxy lets it through: dialled for
	// anything else, the proxy's address is vetted.
	pu, _ := url.Parse(proxy.URL)
	if _, err := d.DialContext(context.Background(), "tcp", pu.Host); !errors.Is(err, ErrDestinationRefused) {
		t.Errorf("the proxy's address without the record: %v", err)
	}
	if len(seen) != 0 {
		t.Errorf("the proxy saw %q", <-seen)
	}
}

type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, errors.New("unexpected")
}

// A transport the guard cannot be installed in is not used.
func TestSendRefusesUnguardableTransport(t *testing.T) {
	rt := &countingTransport{}
	s := NewSender(&http.Client{Transport: rt}, nil)
	res := s.Send(context.Background(), "http://93.184.216.34/hook", nil, testEvent())
	if res.Err == nil || res.Retry || rt.n.Load() != 0 {
		t.Fatalf("result %+v after %d round trips", res, rt.n.Load())
	}
}

func TestSendRefusesInvalidEvent(t *testing.T) {
	srv, n := server(t, func(w http.ResponseWriter, r *http.Request) {})
	s, _ := newSender(t, &settings.Settings{}, "127.0.0.1")
	e := testEvent()
	e.ID = ""
	if res := s.Send(context.Background(), srv.URL, nil, e); res.Err == nil || res.Retry || n.Load() != 0 {
		t.Fatalf("result %+v after %d requests", res, n.Load())
	}
	e = testEvent()
	e.Data.Actor = strings.Repeat("a", maxEventBytes)
	if res := s.Send(context.Background(), srv.URL, nil, e); res.Err == nil || res.Retry || n.Load() != 0 {
		t.Fatalf("oversized: result %+v after %d requests", res, n.Load())
	}
}

func TestBackoff(t *testing.T) {
	rnds := map[string]func() float64{
		"0":      func() float64 { return 0 },
		"0.5":    func() float64 { return 0.5 },
		"almost": func() float64 { return math.Nextafter(1, 0) },
		"1":      func() float64 { return 1 },
		"-1":     func() float64 { return -1 },
		"2":      func() float64 { return 2 },
		"NaN":    math.NaN,
		"nil":    nil,
	}
	for name, rnd := range rnds {
		for attempt := -1; attempt <= 40; attempt++ {
			base := time.Hour
			if attempt < 12 {
				base = min(time.Second<<max(attempt, 0), time.Hour)
			}
			d := Backoff(attempt, rnd)
			if d <= 0 || d > time.Hour || d < base/2 || d > base {
				t.Errorf("rnd %s, attempt %d: %v, want in [%v, %v]", name, attempt, d, base/2, base)
			}
		}
	}
	lo := func(a int) time.Duration { return Backoff(a, rnds["0"]) }
	hi := func(a int) time.Duration { return Backoff(a, rnds["1"]) }
	if lo(0) != 500*time.Millisecond || hi(0) != time.Second || hi(1) != 2*time.Second || lo(40) != 30*time.Minute || hi(40) != time.Hour {
		t.Errorf("bounds: attempt 0 [%v, %v], 1 up to %v, 40 [%v, %v]", lo(0), hi(0), hi(1), lo(40), hi(40))
	}
	// Until the cap, the shortest wait is the previous attempt's longest;
	// at the cap, waits stay between half an hour and an hour.
	for a := 1; a <= 40; a++ {
		if a <= 11 && lo(a) != hi(a-1) {
			t.Errorf("attempt %d may wait %v, attempt %d up to %v", a, lo(a), a-1, hi(a-1))
		}
		if a >= 12 && (lo(a) != 30*time.Minute || hi(a) != time.Hour) {
			t.Errorf("attempt %d: [%v, %v], want the cap's", a, lo(a), hi(a))
		}
		if lo(a) < lo(a-1) || hi(a) < hi(a-1) {
			t.Errorf("attempt %d's bounds [%v, %v] below attempt %d's [%v, %v]", a, lo(a), hi(a), a-1, lo(a-1), hi(a-1))
		}
	}
	// Jitter spreads: not every wait is the same.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[Backoff(5, nil)] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 waits for attempt 5 are all %v", seen)
	}
}

// A name that does not resolve may resolve later: the attempt is retried,
// not refused.
func TestSendUnresolvedNameIsRetried(t *testing.T) {
	s, d := newSender(t, &settings.Settings{})
	fakeDNS(d, map[string][]string{}, nil)
	res := s.Send(context.Background(), "https://hooks.example/hook", nil, testEvent())
	if res.Err == nil || !res.Retry || errors.Is(res.Err, ErrDestinationRefused) || !strings.Contains(res.Err.Error(), "could not be resolved") {
		t.Fatalf("result %+v", res)
	}
}
