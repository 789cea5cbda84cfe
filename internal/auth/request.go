package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// AnonymousToken is the bearer token the token endpoint hands out without
// credentials; it stands for the anonymous user.
const AnonymousToken = "anonymous"

// Request authenticates the credentials of r:
//
//   - none, or "Bearer anonymous": the anonymous user;
//   - "Bearer TOKEN": a token;
//   - "Basic": a password that is a token (the user name is then ignored,
//     as the reference registry does, so `podman login -u anything -p
//     TOKEN` works), otherwise a user name and password for the identity
//     provider.
//
// Wrong credentials are an error wrapping ErrUnauthenticated (or a
// *ThrottledError); they never fall back to anonymous.
func (a *Authenticator) Request(r *http.Request) (Identity, error) {
	return a.request(r, false)
}

// Recheck authenticates r's credentials again for a request that has been
// running since they were first accepted (an open watch): a password is
// checked with its identity provider, not the password cache, and a
// refusal is not counted as a failed login, since it is no guess — the
// credentials are the ones that were accepted.
func (a *Authenticator) Recheck(r *http.Request) (Identity, error) {
	return a.request(r, true)
}

func (a *Authenticator) request(r *http.Request, recheck bool) (Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Identity{User: Anonymous}, nil
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
		if cred == AnonymousToken {
			return Identity{User: Anonymous}, nil
		}
		return a.Token(r.Context(), cred)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: Basic credentials are not base64", ErrUnauthenticated)
		}
		// The user name ends at the first colon: a name with a colon in it
		// cannot be sent, and the rest is read as the password.
		name, password, ok := strings.Cut(string(raw), ":")
		if !ok {
			return Identity{}, fmt.Errorf("%w: Basic credentials are not user:password", ErrUnauthenticated)
		}
		if strings.HasPrefix(password, TokenPrefix) {
			return a.Token(r.Context(), password)
		}
		if name == "" {
			return Identity{}, fmt.Errorf("%w: a user name is needed with a password", ErrUnauthenticated)
		}
		if recheck {
			u, err := a.recheckPassword(r.Context(), name, password)
			if err != nil {
				return Identity{}, err
			}
			return Identity{User: u}, nil
		}
		u, err := a.Password(r.Context(), ClientAddress(r), name, password)
		if err != nil {
			return Identity{}, err
		}
		return Identity{User: u}, nil
	default:
		return Identity{}, fmt.Errorf("%w: unsupported authorization scheme %q (use Basic or Bearer)", ErrUnauthenticated, scheme)
	}
}

// ClientAddress is the address failed logins are counted against: the
// peer's IP. Forwarding headers are not trusted (anyone can set them).
func ClientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries, the anonymous one if none.
func IdentityFrom(ctx context.Context) Identity {
	if id, ok := ctx.Value(identityKey{}).(Identity); ok {
		return id
	}
	return Identity{User: Anonymous}
}
