package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/gencache"
)

// TokenPrefix marks Berth's tokens, as the reference platform's "sha256~".
const TokenPrefix = "sha256~"

// ErrUnauthenticated: credentials were given and are not valid (unknown,
// wrong, expired or revoked). Its message says which, for the client.
var ErrUnauthenticated = errors.New("unauthenticated")

// NewToken returns a fresh secret (256 random bits), an id to name it by
// in listings and revocation, and the hash that is all the store keeps.
func NewToken() (secret, id string, hash []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	idb := make([]byte, 8)
	_, _ = rand.Read(idb)
	return secret, hex.EncodeToString(idb), HashToken(secret)
}

// HashToken is the stored form of a token secret. A fast hash is right
// here: the secret has 256 bits of entropy, so nothing is gained by
// stretching it.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// TokenRecord is what the store knows of a token.
type TokenRecord struct {
	ID   string
	Hash []byte
	User string
	// Expires and Revoked (zero while valid) bound its life.
	Expires time.Time
	Revoked time.Time
}

// TokenSource finds tokens by hash; an unknown one is errdefs.ErrNotFound.
type TokenSource interface {
	LookupToken(ctx context.Context, hash []byte) (TokenRecord, error)
}

// GroupSource returns the groups a user was put in.
type GroupSource interface {
	GroupsOf(ctx context.Context, user string) ([]string, error)
}

// IdentityProvider checks a user name and password (htpasswd now; OIDC
// and LDAP later). A wrong password is (false, nil).
type IdentityProvider interface {
	CheckPassword(ctx context.Context, user, password string) (bool, error)
}

// UserDirectory is an identity provider that can tell whether it holds a
// user. People type passwords into the user name field; a failed login
// names the user in the log only when a provider knows it.
type UserDirectory interface {
	KnowsUser(ctx context.Context, user string) bool
}

// Authenticator turns credentials into a User.
type Authenticator struct {
	Tokens   TokenSource
	Groups   GroupSource
	Identity IdentityProvider // nil: only tokens are accepted
	// Users and Clients throttle failed password checks per user name and
	// per client address; nil does not throttle.
	Users, Clients *Throttle
	// PasswordTTL is how long a verified password is remembered; 0 means
	// one minute, negative never.
	PasswordTTL time.Duration
	Now         func() time.Time
	// Generation, when set, is the store's access generation (it moves on
	// every change to tokens, users and groups); tokens and groups read
	// are then cached while it stands still, for at most CacheTTL (0: 10s).
	Generation func(context.Context) int64
	CacheTTL   time.Duration
	// Logger records failed and throttled password logins (user name and
	// client, never the password; see loggedName); nil logs nothing.
	Logger *slog.Logger
	// NameHashKey keys the hash that stands in the log for a user name no
	// identity provider knows (often a password typed in the wrong field).
	// Instances that share it log the same hash for the same name; nil
	// draws a key for this process.
	NameHashKey []byte
	// OnLogin, when set, is told of each user whose password was verified
	// (not of cached verifications), so the user can be recorded.
	OnLogin func(ctx context.Context, user string)
	// Annotate, when set, adds to each authenticated request's context
	// what other layers record of the identity (the store's actor).
	Annotate func(ctx context.Context, id Identity) context.Context

	cacheOnce   sync.Once
	cache       *passwordCache
	nameKeyOnce sync.Once
	nameKey     []byte
	checksMu    sync.Mutex
	checks      map[[32]byte]*passwordCheck
	tokens      *gencache.Cache[[32]byte, TokenRecord]
	groups      *gencache.Cache[string, []string]
}

// Identity is who made a request and, when a token proved it, which.
type Identity struct {
	User
	// TokenID names the token the request carried; "" for a password or
	// no credentials.
	TokenID string
	// Expires is when that token stops working.
	Expires time.Time
	// secret is the token as presented, for the token endpoint to hand
	// back; it never leaves the process otherwise.
	secret string
}

// Token authenticates a token secret.
func (a *Authenticator) Token(ctx context.Context, secret string) (Identity, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return Identity{}, fmt.Errorf("%w: not a token", ErrUnauthenticated)
	}
	hash := HashToken(secret)
	rec, err := a.lookupToken(ctx, hash)
	if errors.Is(err, errdefs.ErrNotFound) {
		return Identity{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("look up token: %w", err)
	}
	// The lookup matched by hash in an index; compare in constant time as
	// well so no step depends on how much of a guess was right.
	if subtle.ConstantTimeCompare(rec.Hash, hash) != 1 {
		return Identity{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	now := a.now()
	switch {
	case !rec.Revoked.IsZero():
		return Identity{}, fmt.Errorf("%w: token revoked; log in again", ErrUnauthenticated)
	case !now.Before(rec.Expires):
		return Identity{}, fmt.Errorf("%w: token expired; log in again", ErrUnauthenticated)
	}
	u, err := a.user(ctx, rec.User)
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: u, TokenID: rec.ID, Expires: rec.Expires, secret: secret}, nil
}

// Password authenticates a user name and password with the identity
// provider. client (the caller's address) and name are throttled apart,
// so one attacker cannot try many users and many attackers cannot try
// one user. Requests with the same credentials at once (a client pushing
// layers in parallel) share one check.
func (a *Authenticator) Password(ctx context.Context, client, name, password string) (User, error) {
	if a.Identity == nil {
		return User{}, fmt.Errorf("%w: no identity provider accepts passwords", ErrUnauthenticated)
	}
	cache := a.passwords()
	key := passwordKey(name, password)
	now := a.now()
	var gen int64
	if a.Generation != nil {
		gen = a.Generation(ctx) // a password change moves it
	}
	if cache != nil && cache.hit(key, gen, now) {
		return a.user(ctx, name)
	}
	f, leader := a.joinCheck(key)
	if leader {
		f.err = a.checkPassword(ctx, client, name, password)
		if f.err == nil && cache != nil {
			cache.put(key, gen, now)
		}
		a.endCheck(key, f)
	} else {
		select {
		case <-f.done:
		case <-ctx.Done():
			return User{}, ctx.Err()
		}
	}
	if f.err != nil {
		return User{}, f.err
	}
	return a.user(ctx, name)
}

// recheckPassword checks a password that was accepted before with the
// identity provider itself, unthrottled and uncounted (see Recheck).
func (a *Authenticator) recheckPassword(ctx context.Context, name, password string) (User, error) {
	if a.Identity == nil || strings.HasPrefix(name, "system:") {
		return User{}, fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	}
	ok, err := a.Identity.CheckPassword(ctx, name, password)
	if err != nil {
		return User{}, fmt.Errorf("check password again: %w", err)
	}
	if !ok {
		return User{}, fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	}
	return a.user(ctx, name)
}

// passwordCheck is one password check that requests with the same
// credentials wait for.
type passwordCheck struct {
	done chan struct{}
	err  error
	// joined counts the requests waiting for the check besides the one
	// running it (under checksMu); tests watch it.
	joined int
}

func (a *Authenticator) joinCheck(key [32]byte) (*passwordCheck, bool) {
	a.checksMu.Lock()
	defer a.checksMu.Unlock()
	if f, ok := a.checks[key]; ok {
		f.joined++
		return f, false
	}
	if a.checks == nil {
		a.checks = map[[32]byte]*passwordCheck{}
	}
	f := &passwordCheck{done: make(chan struct{})}
	a.checks[key] = f
	return f, true
}

func (a *Authenticator) endCheck(key [32]byte, f *passwordCheck) {
	a.checksMu.Lock()
	delete(a.checks, key)
	a.checksMu.Unlock()
	close(f.done)
}

// checkPassword runs one throttled check: nil when the password is right.
func (a *Authenticator) checkPassword(ctx context.Context, client, name, password string) error {
	if wait := a.Users.Acquire(name); wait > 0 {
		a.logFailure(ctx, "login throttled", name, client)
		return &ThrottledError{RetryAfter: wait}
	}
	if wait := a.Clients.Acquire(client); wait > 0 {
		a.Users.Release(name, false)
		a.logFailure(ctx, "login throttled", name, client)
		return &ThrottledError{RetryAfter: wait}
	}
	ok, err := false, error(nil)
	// A password never authenticates a system: identity (a service
	// account, whose name an htpasswd file could otherwise claim).
	if !strings.HasPrefix(name, "system:") {
		ok, err = a.Identity.CheckPassword(ctx, name, password)
	}
	switch {
	case err != nil:
		a.Users.Release(name, false)
		a.Clients.Release(client, false)
		return fmt.Errorf("check password of %s: %w", a.loggedName(ctx, name), err)
	case !ok:
		a.Users.Fail(name)
		a.Clients.Fail(client)
		a.logFailure(ctx, "login failed", name, client)
		return fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	}
	a.Users.Release(name, true)
	a.Clients.Release(client, false)
	if a.OnLogin != nil {
		a.OnLogin(ctx, name)
	}
	return nil
}

// loggedName is a user name as it may be logged. People paste tokens and
// passwords into the user name field: a token is "(a token)", a user an
// identity provider knows is named (cut at 64 characters), and anything
// else is logged as user_hash, a keyed hash that tells repeated attempts
// apart without keeping what was typed (see NameHashKey).
func (a *Authenticator) loggedName(ctx context.Context, name string) slog.Attr {
	if strings.HasPrefix(name, TokenPrefix) {
		return slog.String("user", "(a token)")
	}
	if d, ok := a.Identity.(UserDirectory); ok && d.KnowsUser(ctx, name) {
		if len(name) > 64 {
			name = name[:64] + "…"
		}
		return slog.String("user", name)
	}
	return slog.String("user_hash", a.nameHash(name))
}

// nameHash is the first 12 hex digits of HMAC-SHA-256(NameHashKey, name).
// The key matters: what it hashes is often a password, and a plain hash in
// a log would let whoever reads the log test guesses at it.
func (a *Authenticator) nameHash(name string) string {
	a.nameKeyOnce.Do(func() {
		a.nameKey = a.NameHashKey
		if len(a.nameKey) == 0 {
			a.nameKey = make([]byte, 32)
			_, _ = rand.Read(a.nameKey)
		}
	})
	mac := hmac.New(sha256.New, a.nameKey)
	mac.Write([]byte(name))
	return hex.EncodeToString(mac.Sum(nil)[:6])
}

func (a *Authenticator) lookupToken(ctx context.Context, hash []byte) (TokenRecord, error) {
	a.caches()
	if a.Generation == nil {
		return a.Tokens.LookupToken(ctx, hash)
	}
	return a.tokens.Fetch([32]byte(hash), func() int64 { return a.Generation(ctx) }, func() (TokenRecord, error) {
		return a.Tokens.LookupToken(ctx, hash)
	})
}

func (a *Authenticator) groupsOf(ctx context.Context, name string) ([]string, error) {
	a.caches()
	if a.Generation == nil {
		return a.Groups.GroupsOf(ctx, name)
	}
	return a.groups.Fetch(name, func() int64 { return a.Generation(ctx) }, func() ([]string, error) {
		return a.Groups.GroupsOf(ctx, name)
	})
}

func (a *Authenticator) logFailure(ctx context.Context, msg, name, client string) {
	if a.Logger != nil {
		a.Logger.LogAttrs(ctx, slog.LevelWarn, msg, a.loggedName(ctx, name), slog.String("client", client))
	}
}

// PasswordRecheck is how long a verified password goes without being
// checked again with its identity provider: the life of a password cache
// entry, a minute by default (and at most a minute when nothing is cached).
func (a *Authenticator) PasswordRecheck() time.Duration {
	if a.PasswordTTL > 0 {
		return a.PasswordTTL
	}
	return time.Minute
}

func (a *Authenticator) passwords() *passwordCache {
	a.caches()
	return a.cache
}

func (a *Authenticator) caches() {
	a.cacheOnce.Do(func() {
		ttl := a.CacheTTL
		if ttl == 0 {
			ttl = 10 * time.Second
		}
		a.tokens = &gencache.Cache[[32]byte, TokenRecord]{TTL: ttl, Max: 100000}
		a.groups = &gencache.Cache[string, []string]{TTL: ttl, Max: 100000}
		pwTTL := a.PasswordTTL
		if pwTTL == 0 {
			pwTTL = time.Minute
		}
		if pwTTL > 0 {
			a.cache = &passwordCache{ttl: pwTTL, max: 10000}
		}
	})
}

func (a *Authenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// user builds the identity of name: its stored groups, the authenticated
// group and, for a service account, its project's group.
func (a *Authenticator) user(ctx context.Context, name string) (User, error) {
	groups := []string{GroupAuthenticated}
	if project, _, ok := ServiceAccountOf(name); ok {
		groups = append(groups, "system:serviceaccounts", GroupServiceAccountsPrefix+project)
	} else {
		groups = append(groups, GroupPeople)
	}
	if a.Groups != nil {
		stored, err := a.groupsOf(ctx, name)
		if err != nil {
			return User{}, fmt.Errorf("groups of %s: %w", name, err)
		}
		// Names under system: are derived here, never granted by storage: a
		// stored "system:serviceaccounts:P" must not confer P's pull right.
		for _, g := range stored {
			if !strings.HasPrefix(g, "system:") {
				groups = append(groups, g)
			}
		}
	}
	return User{Name: name, Groups: groups}, nil
}

// ServiceAccountUser names a project's service account.
func ServiceAccountUser(project, name string) string {
	return "system:serviceaccount:" + project + ":" + name
}

// ServiceAccountOf splits a service account's user name.
func ServiceAccountOf(user string) (project, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	project, name, ok = strings.Cut(rest, ":")
	if !ok || project == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return project, name, true
}
