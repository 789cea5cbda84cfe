package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

const (
	// DefaultTimeout bounds one attempt when Sender.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// GiveUpAfter is how long after an event its delivery is retried: the
	// caller abandons an older one, whose news is stale anyway.
	GiveUpAfter = 24 * time.Hour

	// maxEventBytes bounds a delivery's body; an event is a few hundred
	// bytes, so a larger one is a bug, not something to send.
	maxEventBytes = 64 << 10
	// maxResponseBytes is how much of a response is read: enough for a
	// receiver's error message, not enough for one to make the registry
	// read a stream.
	maxResponseBytes = 64 << 10
	// maxErrorBody is how much of a failed response's body the error
	// shows the webhook's owner.
	maxErrorBody = 256
	// maxRetryAfter caps a server's Retry-After, so that a receiver
	// cannot park a delivery past GiveUpAfter with one answer.
	maxRetryAfter = time.Hour
	userAgent     = "berth-webhook/1"
)

// Sender sends deliveries. It is safe for concurrent use.
type Sender struct {
	// Timeout bounds one attempt, from resolving the host to reading the
	// response; zero means DefaultTimeout. Set it before the first Send.
	Timeout time.Duration

	client *http.Client
	policy *Destinations
	// broken is why client could not be guarded; every Send fails with it.
	broken error
}

// NewSender returns a Sender that sends with a copy of client, which
// should be Berth's proxy-aware client (outbound.Client), restricted to
// the destinations policy allows (nil: public ones only).
//
// The copy's transport is a clone of client's with policy's DialContext
// installed, so that no caller can forget the guard. A client whose
// transport is not an *http.Transport cannot be guarded, and every Send
// with it fails. The copy follows no redirect, since a redirect could lead to a
// destination the policy refuses and that only the dial would catch, and
// keeps no cookies, which would pass between projects' webhooks. Build
// one Sender and keep it: its transport holds the connection pool.
func NewSender(client *http.Client, policy *Destinations) *Sender {
	if client == nil {
		client = &http.Client{}
	}
	s := &Sender{policy: policy}
	var t *http.Transport
	switch rt := client.Transport.(type) {
	case nil:
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			t = dt.Clone()
		} else {
			s.broken = fmt.Errorf("the default HTTP transport (%T) cannot be guarded", http.DefaultTransport)
		}
	case *http.Transport:
		t = rt.Clone()
	default:
		s.broken = fmt.Errorf("the HTTP client's transport (%T) cannot be guarded", rt)
	}
	c := *client
	c.Jar = nil
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if t != nil {
		t.DialContext = policy.DialContext
		// A TLS dialer would open https connections instead of
		// DialContext, past the guard.
		t.DialTLSContext = nil
		//lint:ignore SA1019 a deprecated hook left set would bypass the guard
		t.DialTLS = nil
		//lint:ignore SA1019 a deprecated hook left set would bypass the guard
		t.Dial = nil
		c.Transport = t
	}
	s.client = &c
	return s
}

// Result is the outcome of one attempt.
type Result struct {
	// Status is the response's status code, 0 when there was no response.
	Status int
	// Err is why the attempt failed, nil when it succeeded (a 2xx). Its
	// text is fit to show to the webhook's owner: it names the URL by
	// scheme, host and path only, as the query may hold a token.
	Err error
	// Retry reports whether a later attempt may succeed (a network
	// error, a timeout, 408, 429, 5xx); false after a success and after a
	// permanent failure (another 4xx, a redirect, a refused destination).
	Retry bool
	// Duration is how long the attempt took.
	Duration time.Duration
	// RetryAfter is the wait the server asked for with Retry-After, at
	// most an hour, 0 if none: the caller waits the longer of it and
	// Backoff.
	RetryAfter time.Duration
}

// Send makes one attempt to deliver e to rawURL, signed with key (unsigned
// if key is empty). It checks rawURL against the policy first, so that a
// change of the policy or of the name's addresses since the webhook was
// created applies.
func (s *Sender) Send(ctx context.Context, rawURL string, key []byte, e Event) Result {
	start := time.Now()
	r := s.send(ctx, rawURL, key, e)
	r.Duration = time.Since(start)
	return r
}

func (s *Sender) send(ctx context.Context, rawURL string, key []byte, e Event) Result {
	dest := redact(rawURL)
	fail := func(retry bool, err error) Result {
		return Result{Err: fmt.Errorf("send webhook to %s: %w", dest, err), Retry: retry}
	}
	if s.broken != nil {
		return fail(false, s.broken)
	}
	body, err := Encode(e)
	if err != nil {
		return fail(false, err)
	}
	if len(body) > maxEventBytes {
		return fail(false, fmt.Errorf("event %s is %d bytes, more than %d", e.ID, len(body), maxEventBytes))
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if err := s.policy.CheckURL(actx, rawURL); err != nil {
		var re *resolveError
		return fail(errors.As(err, &re), err)
	}
	req, err := http.NewRequestWithContext(actx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return fail(false, unwrapURLError(err))
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("X-Berth-Event", e.Type)
	req.Header.Set("X-Berth-Delivery", e.ID)
	if len(key) > 0 {
		req.Header.Set("X-Berth-Signature", Sign(key, body))
	}
	if p := s.proxyAddr(req); p != "" {
		req = req.WithContext(context.WithValue(actx, proxyAddrKey{}, p))
	}

	resp, err := s.client.Do(req)
	if err != nil {
		err = unwrapURLError(err)
		if errors.Is(err, ErrDestinationRefused) {
			return fail(false, err)
		}
		if errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no response within %s: %w", timeout, err)
		}
		return fail(true, err)
	}
	defer resp.Body.Close()
	// Read what a receiver says (to show it when it is an error) and no
	// more; reading also lets the connection be reused.
	got, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))

	code := resp.StatusCode
	// The reason phrase is the server's to choose; the code's standard
	// text is ours.
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	r := Result{Status: code}
	switch {
	case code >= 200 && code < 300:
		return r
	case code >= 300 && code < 400:
		r.Err = fmt.Errorf("send webhook to %s: HTTP %s: redirects are not followed; set the webhook's URL to the final address", dest, status)
		return r
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		r.Retry = true
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	r.Err = fmt.Errorf("send webhook to %s: HTTP %s%s", dest, status, excerpt(got))
	return r
}

// proxyAddr returns the address ("host:port") the transport will dial for
// req when a proxy is in effect for it, "" when it goes direct. It asks
// the transport's own Proxy function, which is what the transport will
// do; should the answer change in between (the settings changed), the
// dial finds no match and the proxy is vetted like any address.
func (s *Sender) proxyAddr(req *http.Request) string {
	t, ok := s.client.Transport.(*http.Transport)
	if !ok {
		return ""
	}
	return proxyAddrFor(t, req)
}

// proxyAddrFor is the address ("host:port") t dials for req when a proxy
// is in effect for it, "" when it goes direct.
func proxyAddrFor(t *http.Transport, req *http.Request) string {
	if t.Proxy == nil {
		return ""
	}
	u, err := t.Proxy(req)
	if err != nil || u == nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		// The defaults net/http dials a proxy URL without a port at.
		switch u.Scheme {
		case "https":
			port = "443"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// redact returns the URL without user information, query or fragment.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an invalid URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// unwrapURLError drops the *url.Error net/http wraps errors in, whose text
// holds the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// excerpt returns the start of a failed response's body to append to the
// error, printable and quoted since it is the remote server's.
func excerpt(body []byte) string {
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(string(body), ""))
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return ""
	}
	return ": " + strconv.Quote(s)
}

// retryAfter parses a Retry-After header, in seconds or as an HTTP date,
// capped at maxRetryAfter; 0 when absent, invalid or past.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

const (
	backoffBase = time.Second
	backoffCap  = time.Hour
)

// Backoff returns how long to wait after failed attempt number attempt
// (0 for the first attempt) before the next. The base doubles from 1 s to
// a cap of 1 h; the wait is "equal jitter", uniform in [base/2, base]
// with rnd giving a fraction in [0, 1) (nil: math/rand/v2's Float64).
// Equal rather than full jitter keeps a floor: the wait is never zero,
// and until the cap the shortest wait after an attempt is the longest
// after the one before, so waits grow as failures go on (at the cap they
// stay between 30 min and 1 h), while deliveries that failed together
// still spread out.
func Backoff(attempt int, rnd func() float64) time.Duration {
	base := backoffCap
	// 1 s << 12 is past the cap; shifting further would overflow.
	if attempt < 12 {
		base = min(backoffBase<<max(attempt, 0), backoffCap)
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	f := rnd()
	if !(f >= 0) { // also NaN
		f = 0
	}
	f = min(f, 1)
	half := base / 2
	return half + time.Duration(f*float64(base-half))
}
