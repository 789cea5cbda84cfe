package metrics

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/reqlog"
)

// MinSecretLength is the shortest metrics secret accepted. A secret is
// compared before any login throttling applies (a bearer token is never
// throttled), so it must be too long to guess.
const MinSecretLength = 16

// CheckSecret says why secret cannot be the metrics secret ("" is none,
// which is fine: then only users granted the metrics may read them).
func CheckSecret(secret string) error {
	if secret != "" && len(secret) < MinSecretLength {
		return fmt.Errorf("the metrics secret has %d characters; it needs at least %d (e.g. openssl rand -hex 16)", len(secret), MinSecretLength)
	}
	return nil
}

// SecretUser is how the access log names a request that presented the
// metrics secret (never the secret itself).
const SecretUser = "(metrics secret)"

// authenticator is the authentication middleware (auth.Authenticator).
type authenticator interface {
	Middleware(next http.Handler, fail func(http.ResponseWriter, *http.Request, error)) http.Handler
}

// Access is who may read the metrics, the reference's two ways.
type Access struct {
	// Secret, when set, is accepted as the password of Basic credentials,
	// with any user name, or as a bearer token.
	Secret string
	// Authn identifies other callers; Authz must then allow them get on
	// registry/metrics in image.openshift.io, cluster-wide.
	Authn  authenticator
	Authz  auth.Authorizer
	Logger *slog.Logger // nil: slog.Default()
}

// Endpoint serves the metrics to whoever a allows. No or refused
// credentials are 401 with a challenge, a caller who may not read them
// 403. The secret is checked before authentication, so that a scraper
// presenting it is never taken for a user name and password (a correct
// secret is not a failed login of its user name); a wrong one goes on to
// authentication like any credentials, and fails there as they would.
func (m *Metrics) Endpoint(a Access) http.Handler {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	serve := m.Handler()
	var secret *[sha256.Size]byte
	if a.Secret != "" {
		sum := sha256.Sum256([]byte(a.Secret))
		secret = &sum
	}
	byUser := a.Authn.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		u := auth.IdentityFrom(ctx).User
		ok, err := a.Authz.Authorize(ctx, u, "get", auth.RegistryMetrics, "")
		entry := reqlog.FromContext(ctx)
		switch {
		case err != nil:
			entry.Decide(reqlog.Failed)
			log.ErrorContext(ctx, "decide access to the metrics", "user", u.Name, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "access to the metrics could not be decided")
		case ok:
			entry.Decide(reqlog.Allowed)
			serve.ServeHTTP(w, r)
		case u.Name == auth.AnonymousUser:
			entry.Decide(reqlog.Unauthorized)
			challenge(w, "authentication required")
		default:
			entry.Decide(reqlog.Denied)
			writeError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("access denied: %s may not get registry/metrics", u.Name))
		}
	}), writeAuthError)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if secret != nil && presentsSecret(r, secret) {
			entry := reqlog.FromContext(r.Context())
			entry.SetUser(SecretUser)
			entry.Decide(reqlog.Allowed)
			serve.ServeHTTP(w, r)
			return
		}
		byUser.ServeHTTP(w, r)
	})
}

// presentsSecret reports whether r's credentials are the secret: the
// password of Basic credentials, or a bearer token. Hashes are compared,
// in constant time, so neither the secret nor its length shows in timing.
func presentsSecret(r *http.Request, secret *[sha256.Size]byte) bool {
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return false
		}
		_, password, ok := strings.Cut(string(raw), ":")
		if !ok {
			return false
		}
		cred = password
	default:
		return false
	}
	sum := sha256.Sum256([]byte(cred))
	return subtle.ConstantTimeCompare(sum[:], secret[:]) == 1
}

// writeAuthError answers credentials that were refused: 401 with a
// challenge, or 429 when too many failed.
func writeAuthError(w http.ResponseWriter, _ *http.Request, err error) {
	var throttled *auth.ThrottledError
	if errors.As(err, &throttled) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(throttled.RetryAfter.Seconds()+0.5))))
		writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", err.Error())
		return
	}
	challenge(w, err.Error())
}

func challenge(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="berth"`)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", msg)
}

// writeError answers in the registry's error envelope (the endpoint is
// under /extensions/v2, the reference registry's).
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
