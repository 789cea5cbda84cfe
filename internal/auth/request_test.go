package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingProvider accepts one user and password and counts the checks.
type countingProvider struct {
	user, password string
	checks         atomic.Int64
}

func (c *countingProvider) CheckPassword(_ context.Context, user, password string) (bool, error) {
	c.checks.Add(1)
	return user == c.user && password == c.password, nil
}

type memWriter struct{ tokens memTokens }

func (m memWriter) SaveToken(_ context.Context, rec TokenRecord, _ string) error {
	m.tokens[string(rec.Hash)] = rec
	return nil
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func newRequest(authorization string) *http.Request {
	r := httptest.NewRequest("GET", "/v2/", nil)
	r.RemoteAddr = "192.0.2.7:4711"
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

func TestRequestCredentials(t *testing.T) {
	tokens := memTokens{}
	issuer := &Issuer{Tokens: memWriter{tokens}}
	secret, rec, err := issuer.Issue(context.Background(), "alice", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Tokens: tokens, Identity: &countingProvider{user: "bob", password: "pw"}}
	for _, tc := range []struct {
		name, header, user string
		tokenID            string
		fail               string // "" = success
	}{
		{"no credentials", "", AnonymousUser, "", ""},
		{"anonymous bearer", "Bearer anonymous", AnonymousUser, "", ""},
		{"bearer token", "Bearer " + secret, "alice", rec.ID, ""},
		{"token as Basic password, any user name", basic("kubeadmin", secret), "alice", rec.ID, ""},
		{"token as Basic password, empty user name", basic("", secret), "alice", rec.ID, ""},
		{"user name and password", basic("bob", "pw"), "bob", "", ""},
		{"wrong password", basic("bob", "nope"), "", "", "wrong user name or password"},
		// The user name ends at the first colon, so "any:thing" sends the
		// password "thing:TOKEN", which is no token, as the reference documents.
		{"user name with a colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("any:thing:"+secret)), "", "", "wrong user name or password"},
		{"unknown token", "Bearer " + TokenPrefix + "bm9wZQ", "", "", "unknown token"},
		{"not base64", "Basic !!!", "", "", "not base64"},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("bob")), "", "", "not user:password"},
		{"other scheme", "Digest abc", "", "", "unsupported authorization scheme"},
	} {
		id, err := a.Request(newRequest(tc.header))
		if tc.fail != "" {
			if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.fail) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.fail)
			}
			continue
		}
		if err != nil || id.Name != tc.user || id.TokenID != tc.tokenID {
			t.Errorf("%s: %+v, %v; want user %s token %q", tc.name, id, err, tc.user, tc.tokenID)
		}
	}
}

func TestVerifiedPasswordsAreCached(t *testing.T) {
	p := &countingProvider{user: "bob", password: "pw"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &Authenticator{Identity: p, PasswordTTL: time.Minute, Now: func() time.Time { return now }}
	for range 100 {
		if _, err := a.Request(newRequest(basic("bob", "pw"))); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.checks.Load(); n != 1 {
		t.Fatalf("100 requests with the same password ran %d password checks, want 1", n)
	}
	// A wrong password is never served from the cache.
	if _, err := a.Request(newRequest(basic("bob", "pw2"))); err == nil {
		t.Fatal("a different password was accepted")
	}
	now = now.Add(2 * time.Minute)
	if _, err := a.Request(newRequest(basic("bob", "pw"))); err != nil || p.checks.Load() != 3 {
		t.Fatalf("after the TTL: err %v, checks %d, want the password checked again", err, p.checks.Load())
	}
}

func TestFailedLoginsAreThrottled(t *testing.T) {
	p := &countingProvider{user: "bob", password: "right"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := &Authenticator{Identity: p, PasswordTTL: -1,
		Users:   &Throttle{Limit: 3, Window: time.Minute, Lockout: 10 * time.Second, Now: clock},
		Clients: &Throttle{Limit: 12, Window: time.Minute, Lockout: 10 * time.Second, Now: clock}}
	for i := range 3 {
		if _, err := a.Request(newRequest(basic("bob", "guess"))); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	checks := p.checks.Load()
	var throttled *ThrottledError
	_, err := a.Request(newRequest(basic("bob", "right")))
	if !errors.As(err, &throttled) || throttled.RetryAfter != 10*time.Second {
		t.Fatalf("right password during the lockout = %v, want throttled for 10s", err)
	}
	if p.checks.Load() != checks {
		t.Fatal("a throttled attempt still checked the password")
	}
	now = now.Add(11 * time.Second)
	if id, err := a.Request(newRequest(basic("bob", "right"))); err != nil || id.Name != "bob" {
		t.Fatalf("right password after the lockout = %+v, %v", id, err)
	}
	// Consecutive lockouts double: 3 more failures lock for 20s... after a
	// success the count starts over at 10s.
	for range 3 {
		_, _ = a.Request(newRequest(basic("bob", "guess")))
	}
	if _, err := a.Request(newRequest(basic("bob", "right"))); !errors.As(err, &throttled) || throttled.RetryAfter != 10*time.Second {
		t.Fatalf("lockout after a success = %v, want 10s", err)
	}
	now = now.Add(11 * time.Second)
	for range 3 {
		_, _ = a.Request(newRequest(basic("bob", "guess")))
	}
	if _, err := a.Request(newRequest(basic("bob", "right"))); !errors.As(err, &throttled) || throttled.RetryAfter != 20*time.Second {
		t.Fatalf("second lockout in a row = %v, want 20s", err)
	}
	// One client spraying many user names is throttled by address.
	now = now.Add(time.Hour)
	for i := range 12 {
		_, _ = a.Request(newRequest(basic("user"+string(rune('a'+i)), "guess")))
	}
	if _, err := a.Request(newRequest(basic("zed", "guess"))); !errors.As(err, &throttled) {
		t.Fatalf("13th user name from one address = %v, want throttled", err)
	}
	other := newRequest(basic("zed", "guess"))
	other.RemoteAddr = "192.0.2.8:1"
	if _, err := a.Request(other); errors.As(err, &throttled) {
		t.Fatal("another address was throttled too")
	}
}

func TestThrottleMemoryIsBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th := &Throttle{Limit: 2, Window: time.Minute, Lockout: time.Minute, MaxKeys: 100, Now: func() time.Time { return now }}
	// A victim locked out first...
	for range 2 {
		if th.Acquire("victim") != 0 {
			t.Fatal("victim throttled early")
		}
		th.Fail("victim")
	}
	// ...then a spray of made-up names.
	for i := range 1000 {
		key := fmt.Sprintf("spray-%d", i)
		if th.Acquire(key) == 0 {
			th.Fail(key)
		}
	}
	if n := len(th.keys); n > 100 {
		t.Fatalf("throttle holds %d keys, bound 100", n)
	}
	if th.Acquire("victim") == 0 {
		t.Fatal("the spray wiped the victim's lockout")
	}
}

// Parallel guesses: each check in progress holds one of the user's
// attempts, so no more than Limit passwords are ever checked per window.
func TestThrottleCountsChecksInProgress(t *testing.T) {
	gate := make(chan struct{})
	p := &blockingProvider{gate: gate}
	a := &Authenticator{Identity: p, PasswordTTL: -1,
		Users:   &Throttle{Limit: 3, Window: time.Minute, Lockout: time.Minute},
		Clients: &Throttle{Limit: 100, Window: time.Minute, Lockout: time.Minute}}
	const n = 40
	results := make(chan error, n)
	for i := range n {
		go func() {
			_, err := a.Request(newRequest(basic("bob", fmt.Sprintf("guess-%d", i))))
			results <- err
		}()
	}
	// Let the throttled ones answer, then release the checks in progress.
	var throttled, failed int
	var te *ThrottledError
	for range n - 3 {
		if err := <-results; errors.As(err, &te) {
			throttled++
		} else {
			t.Fatalf("an attempt beyond the limit got through to a check: %v", err)
		}
	}
	close(gate)
	for range 3 {
		if err := <-results; errors.Is(err, ErrUnauthenticated) {
			failed++
		}
	}
	if throttled != n-3 || failed != 3 || p.checks.Load() != 3 {
		t.Fatalf("throttled %d, failed %d, checked %d; want %d, 3, 3", throttled, failed, p.checks.Load(), n-3)
	}
}

// A client sending the same credentials on many requests at once (layers
// pushed in parallel right after a restart) costs one check, and none of
// them is throttled.
func TestParallelSameCredentialsShareOneCheck(t *testing.T) {
	gate := make(chan struct{})
	p := &gatedProvider{gate: gate, user: "bob", password: "right"}
	a := &Authenticator{Identity: p,
		Users:   &Throttle{Limit: 3, Window: time.Minute, Lockout: time.Minute},
		Clients: &Throttle{Limit: 12, Window: time.Minute, Lockout: time.Minute}}
	const n = 40
	results := make(chan error, n)
	for range n {
		go func() {
			_, err := a.Request(newRequest(basic("bob", "right")))
			results <- err
		}()
	}
	// Wait until every other request waits for the one check in progress,
	// then let it finish.
	key := passwordKey("bob", "right")
	deadline := time.Now().Add(10 * time.Second)
	for joined := 0; joined < n-1; {
		a.checksMu.Lock()
		if f := a.checks[key]; f != nil {
			joined = f.joined
		}
		a.checksMu.Unlock()
		if time.Now().After(deadline) {
			close(gate)
			t.Fatalf("%d of %d parallel requests with the same credentials joined the check in progress within 10s; %d checks started",
				joined, n-1, p.checks.Load())
		}
		time.Sleep(time.Millisecond) // paces the polling
	}
	close(gate)
	for range n {
		if err := <-results; err != nil {
			t.Fatalf("a parallel request with the right password: %v", err)
		}
	}
	if c := p.checks.Load(); c != 1 {
		t.Fatalf("%d password checks for %d parallel requests with the same credentials", c, n)
	}
}

type gatedProvider struct {
	gate           chan struct{}
	user, password string
	checks         atomic.Int64
}

func (g *gatedProvider) CheckPassword(_ context.Context, user, password string) (bool, error) {
	g.checks.Add(1)
	<-g.gate
	return user == g.user && password == g.password, nil
}

type blockingProvider struct {
	gate   chan struct{}
	checks atomic.Int64
}

func (b *blockingProvider) CheckPassword(context.Context, string, string) (bool, error) {
	b.checks.Add(1)
	<-b.gate
	return false, nil
}

func TestTokensTypedAsUserNamesAreNotLogged(t *testing.T) {
	var logs strings.Builder
	a := &Authenticator{Identity: &countingProvider{user: "bob", password: "pw"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	_, _ = a.Request(newRequest(basic(TokenPrefix+"SECRETVALUE", "x")))
	_, _ = a.Request(newRequest(basic(strings.Repeat("p", 200), "x")))
	if strings.Contains(logs.String(), "SECRETVALUE") || strings.Contains(logs.String(), strings.Repeat("p", 65)) {
		t.Fatalf("log holds a token or a whole long name:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "login failed") {
		t.Fatalf("no failure logged:\n%s", logs.String())
	}
}

func TestPasswordCacheKeysAreUnambiguous(t *testing.T) {
	if passwordKey("a\x00b", "c") == passwordKey("a", "b\x00c") {
		t.Fatal("two different user/password pairs share a cache key")
	}
}

func TestTokenEndpoint(t *testing.T) {
	tokens := memTokens{}
	issuer := &Issuer{Tokens: memWriter{tokens}}
	a := &Authenticator{Tokens: tokens, Identity: &countingProvider{user: "bob", password: "pw"}}
	e := &TokenEndpoint{Authenticator: a, Issuer: issuer, TTL: time.Hour}
	get := func(authorization string) (int, tokenAnswer) {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, newRequest(authorization))
		var ans tokenAnswer
		_ = json.Unmarshal(w.Body.Bytes(), &ans)
		return w.Code, ans
	}
	code, anon := get("")
	if code != 200 || anon.Token != AnonymousToken || anon.AccessToken != anon.Token {
		t.Fatalf("anonymous = %d %+v", code, anon)
	}
	code, pw := get(basic("bob", "pw"))
	if code != 200 || !strings.HasPrefix(pw.Token, TokenPrefix) || pw.ExpiresIn < 3590 || pw.IssuedAt == "" {
		t.Fatalf("password login = %d %+v", code, pw)
	}
	if id, err := a.Token(context.Background(), pw.Token); err != nil || id.Name != "bob" {
		t.Fatalf("the issued token = %+v, %v", id, err)
	}
	code, again := get(basic("anything", pw.Token))
	if code != 200 || again.Token != pw.Token {
		t.Fatalf("token as password = %d %+v, want the same token back", code, again)
	}
	if code, _ := get(basic("bob", "wrong")); code != 401 {
		t.Fatalf("wrong password = %d", code)
	}
	// A header with extra spaces is still the token it authenticated.
	if code, sp := get("Basic  " + strings.TrimPrefix(basic("x", pw.Token), "Basic ")); code != 200 || sp.Token != pw.Token {
		t.Fatalf("Basic with two spaces = %d %+v, want the token back", code, sp)
	}
}

// Groups under system: come from the authenticator alone; a stored one is
// ignored, so storage cannot confer a project's implicit pull right.
func TestStoredSystemGroupsAreIgnored(t *testing.T) {
	a := &Authenticator{Identity: &countingProvider{user: "eve", password: "pw"},
		Groups: memGroups{"eve": {"system:serviceaccounts:secret", "qa"}}}
	id, err := a.Request(newRequest(basic("eve", "pw")))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range id.Groups {
		if g == "system:serviceaccounts:secret" {
			t.Fatalf("stored system group granted: %v", id.Groups)
		}
	}
	if !strings.Contains(strings.Join(id.Groups, ","), "qa") {
		t.Fatalf("stored group qa missing: %v", id.Groups)
	}
}

// A password never authenticates a system: name, whatever a provider
// holds: service accounts authenticate with tokens only.
func TestPasswordsNeverAuthenticateSystemNames(t *testing.T) {
	name := ServiceAccountUser("team", "ci")
	p := &countingProvider{user: name, password: "pw"}
	a := &Authenticator{Identity: p}
	// (Basic credentials cannot carry the name: it holds colons. The OAuth
	// password grant's form can.)
	if u, err := a.Password(context.Background(), "127.0.0.1", name, "pw"); err == nil {
		t.Fatalf("a password authenticated %s as %+v", name, u)
	}
	if n := p.checks.Load(); n != 0 {
		t.Errorf("the provider was asked %d times", n)
	}
}

// Recheck asks the provider itself, not the password cache, and a refusal
// is no failed login: an open watch whose password stopped working does
// not lock its user out.
func TestRecheckBypassesCacheAndThrottle(t *testing.T) {
	p := &countingProvider{user: "bob", password: "pw"}
	a := &Authenticator{Identity: p, PasswordTTL: time.Hour,
		Users:   &Throttle{Limit: 1, Window: time.Hour, Lockout: time.Hour},
		Clients: &Throttle{Limit: 1, Window: time.Hour, Lockout: time.Hour}}
	if _, err := a.Request(newRequest(basic("bob", "pw"))); err != nil {
		t.Fatal(err)
	}
	p.password = "changed" // the htpasswd entry changes
	if _, err := a.Request(newRequest(basic("bob", "pw"))); err != nil {
		t.Fatalf("a new request within the cache's life = %v (cached)", err)
	}
	for range 3 {
		if _, err := a.Recheck(newRequest(basic("bob", "pw"))); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("Recheck of a password the provider no longer accepts = %v, want unauthenticated", err)
		}
	}
	if _, err := a.Request(newRequest(basic("bob", "changed"))); err != nil {
		t.Fatalf("login with the new password after three refused rechecks = %v, want accepted (not throttled)", err)
	}
}
