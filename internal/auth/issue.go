package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/reqlog"
)

// TokenWriter stores a new token (only its hash is in rec).
type TokenWriter interface {
	SaveToken(ctx context.Context, rec TokenRecord, description string) error
}

// Issuer mints tokens.
type Issuer struct {
	Tokens TokenWriter
	Now    func() time.Time
}

// Issue mints a token for user valid for ttl and returns its secret, which
// exists only in the answer: the store keeps its hash.
func (i *Issuer) Issue(ctx context.Context, user string, ttl time.Duration, description string) (string, TokenRecord, error) {
	if ttl <= 0 {
		return "", TokenRecord{}, fmt.Errorf("token lifetime %s must be positive", ttl)
	}
	now := time.Now()
	if i.Now != nil {
		now = i.Now()
	}
	secret, id, hash := NewToken()
	rec := TokenRecord{ID: id, Hash: hash, User: user, Expires: now.Add(ttl)}
	if err := i.Tokens.SaveToken(ctx, rec, description); err != nil {
		return "", TokenRecord{}, fmt.Errorf("issue token for %s: %w", user, err)
	}
	return secret, rec, nil
}

// Middleware authenticates each request once and hands next a context
// carrying the Identity (IdentityFrom). Bad credentials never reach next:
// fail answers them, in the shape of the API being called.
func (a *Authenticator) Middleware(next http.Handler, fail func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry := reqlog.FromContext(r.Context())
		id, err := a.Request(r)
		if err != nil {
			entry.Decide(refusalOf(err))
			fail(w, r, err)
			return
		}
		entry.SetUser(LoggedUser(id.User))
		ctx := WithIdentity(r.Context(), id)
		if a.Annotate != nil {
			ctx = a.Annotate(ctx, id)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// LoggedUser is how the access log names who made a request.
func LoggedUser(u User) string {
	if u.Name == AnonymousUser {
		return "anonymous"
	}
	return u.Name
}

// refusalOf is the access answer to credentials that were refused.
func refusalOf(err error) string {
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		return reqlog.Throttled
	case errors.Is(err, ErrUnauthenticated):
		return reqlog.Unauthorized
	}
	return reqlog.Failed
}
