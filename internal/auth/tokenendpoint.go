package auth

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/reqlog"
)

// TokenPath is where the Docker token flow's realm points, the reference
// registry's path (kept so clients configured for it keep working).
const TokenPath = "/openshift/token"

// TokenEndpoint serves the Docker registry token flow: Basic credentials
// in, a bearer token out. A token given as the password comes back as is;
// a user name and password get a new token of TTL; no credentials get
// the anonymous token.
type TokenEndpoint struct {
	Authenticator *Authenticator
	Issuer        *Issuer
	TTL           time.Duration
	Logger        *slog.Logger
}

type tokenAnswer struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// anonymousTTL is what clients are told the anonymous token lasts; it
// lasts forever, but a client that asks again now and then notices a
// project turning private sooner.
const anonymousTTL = 5 * time.Minute

func (e *TokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeTokenError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" is not supported; use GET with Basic credentials")
		return
	}
	entry := reqlog.FromContext(r.Context())
	entry.SetRoute(TokenPath)
	id, err := e.Authenticator.Request(r)
	if err != nil {
		entry.Decide(refusalOf(err))
	} else {
		entry.SetUser(LoggedUser(id.User))
	}
	var throttled *ThrottledError
	switch {
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", strconv.Itoa(int(throttled.RetryAfter.Seconds()+0.999)))
		writeTokenError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", err.Error())
		return
	case errors.Is(err, ErrUnauthenticated):
		writeTokenError(w, http.StatusUnauthorized, "UNAUTHORIZED", err.Error())
		return
	case err != nil:
		e.Logger.Error("token endpoint", "err", err)
		writeTokenError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "cannot check credentials now; retry")
		return
	}
	now := time.Now()
	answer := tokenAnswer{IssuedAt: now.UTC().Format(time.RFC3339)}
	switch {
	case id.Name == AnonymousUser:
		answer.Token, answer.ExpiresIn = AnonymousToken, int64(anonymousTTL.Seconds())
	case id.TokenID != "":
		answer.Token = id.secret
		answer.ExpiresIn = int64(id.Expires.Sub(now).Seconds())
	default:
		secret, rec, err := e.Issuer.Issue(r.Context(), id.Name, e.TTL, "registry login from "+ClientAddress(r))
		if err != nil {
			e.Logger.Error("token endpoint", "err", err)
			writeTokenError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "cannot issue a token now; retry")
			return
		}
		answer.Token, answer.ExpiresIn = secret, int64(rec.Expires.Sub(now).Seconds())
	}
	answer.AccessToken = answer.Token
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(answer)
}

func writeTokenError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
