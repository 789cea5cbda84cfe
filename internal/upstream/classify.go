package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	"github.com/berth-registry/berth/internal/webhook"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// The reasons Classify returns: the metav1.Status reasons the reference
// puts on a failed import (ImportSuccess=False), plus TooManyRequests for
// an upstream 429, which pull-through reports as TOOMANYREQUESTS.
const (
	ReasonNotFound        = "NotFound"
	ReasonUnauthorized    = "Unauthorized"
	ReasonForbidden       = "Forbidden"
	ReasonBadRequest      = "BadRequest"
	ReasonTooManyRequests = "TooManyRequests"
	ReasonInternalError   = "InternalError"
)

// Classify maps an error from a call made with Remote's options (ggcr's
// transport and remote errors, *url.Error, TLS and x509 errors,
// ErrForbidden) to a reason and a one-line message for users. The message
// never holds credentials: URLs lose their query and user information,
// Authorization values are cut out, and response bodies appear only as
// the registry's error codes and messages.
//
//   - ErrForbidden (the cluster's policy): Forbidden, with the rule's
//     message.
//   - HTTP 401, and UNAUTHORIZED codes: Unauthorized (as the reference).
//     403 and DENIED are Unauthorized too: the upstream refused this
//     caller, which is not the cluster's Forbidden.
//   - 404, MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN: NotFound.
//   - 429, TOOMANYREQUESTS: TooManyRequests.
//   - 400 and invalid-name codes, and a registry that speaks only plain
//     HTTP while not marked insecure: BadRequest (as the reference).
//   - An untrusted, expired or mismatched certificate: InternalError, as
//     in the reference, where it falls to its default; the message says
//     which additionalTrustedCA key would hold the CA.
//   - Unreachable (see Unavailable), cancelled, anything else:
//     InternalError.
func Classify(err error) (reason, message string) {
	if err == nil {
		return "", ""
	}
	var fe *forbiddenError
	if errors.As(err, &fe) {
		return ReasonForbidden, fe.msg
	}
	if errors.Is(err, ErrForbidden) {
		return ReasonForbidden, sanitize(err.Error())
	}
	if errors.Is(err, webhook.ErrDestinationRefused) {
		return ReasonForbidden, sanitize(err.Error())
	}
	if terr := httpError(err); terr != nil {
		return classifyHTTP(terr)
	}
	host := hostOf(err)
	if cause, ok := certificateProblem(err); ok {
		key := "<host> or <host>..<port>"
		if host != "" {
			key = TrustKey(host)
		}
		return ReasonInternalError, fmt.Sprintf("%s presents a certificate that is not trusted (%s): add its CA to the additionalTrustedCA ConfigMap of %s under the key %q, or mark the registry insecure",
			registryName(host), sanitize(cause), configName, key)
	}
	if errors.Is(err, context.Canceled) {
		return ReasonInternalError, fmt.Sprintf("the request to %s was cancelled", registryName(host))
	}
	if Unavailable(err) {
		return ReasonInternalError, fmt.Sprintf("%s is unreachable: %s", registryName(host), networkCause(err))
	}
	if plainHTTPOnly(err) {
		return ReasonBadRequest, fmt.Sprintf("%s serves plain HTTP only, which needs an insecure import (importPolicy.insecure) or the registry in registrySources.insecureRegistries of %s",
			registryName(host), configName)
	}
	return ReasonInternalError, sanitize(err.Error())
}

// Unavailable reports whether err means the upstream could not serve the
// request now — 5xx, 408, 429, an UNAVAILABLE or TOOMANYREQUESTS code, a
// timeout (the context's deadline included), a refused, reset or
// unreachable connection, a DNS failure, a connection closed early — so
// that pull-through serves what it has cached instead. A cancelled
// context, a policy refusal, an authentication failure, a missing image
// or an untrusted certificate are not unavailability.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, ErrForbidden) || errors.Is(err, context.Canceled) {
		return false
	}
	if terr := httpError(err); terr != nil {
		switch {
		case terr.StatusCode >= 500, terr.StatusCode == http.StatusTooManyRequests, terr.StatusCode == http.StatusRequestTimeout:
			return true
		}
		return hasCode(terr, transport.UnavailableErrorCode, transport.TooManyRequestsErrorCode)
	}
	if _, ok := certificateProblem(err); ok {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.EPIPE} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// AnonymousRetry reports whether the reference would run the failed call
// again without credentials: a 401 that mentions a wrong username or
// password, or carries an UNAUTHORIZED code. A public image may answer
// 401 to a wrong secret and succeed anonymously; the caller retries with
// WithoutCredentials() and, if that fails too, reports the first error.
// It is also true when no secret matched and the call was anonymous
// already; a retry then costs one call and changes nothing.
func AnonymousRetry(err error) bool {
	terr := httpError(err)
	if terr == nil || terr.StatusCode != http.StatusUnauthorized {
		return false
	}
	return mentionsUsernamePassword(terr) || hasCode(terr, transport.UnauthorizedErrorCode)
}

func httpError(err error) *transport.Error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr
	}
	return nil
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// mentionsUsernamePassword looks at the whole error, raw body included,
// since token servers (Docker Hub's among them) answer a wrong password
// with a body outside the registry error format.
func mentionsUsernamePassword(e *transport.Error) bool {
	return strings.Contains(strings.ToLower(e.Error()), "username or password")
}

func classifyHTTP(e *transport.Error) (reason, message string) {
	host := ""
	if e.Request != nil && e.Request.URL != nil {
		host = e.Request.URL.Host
	}
	who := registryName(host)
	status := fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if d := diagnostics(e); d != "" {
		status += ": " + d
	}
	switch {
	case e.StatusCode == http.StatusTooManyRequests:
		return ReasonTooManyRequests, fmt.Sprintf("%s is limiting the rate of requests (%s)", who, status)
	case e.StatusCode == http.StatusUnauthorized:
		return unauthorized(e, who, status)
	case e.StatusCode == http.StatusForbidden:
		return ReasonUnauthorized, fmt.Sprintf("%s denied access (%s)", who, status)
	case e.StatusCode == http.StatusNotFound:
		return ReasonNotFound, fmt.Sprintf("not found on %s (%s)", who, status)
	case e.StatusCode == http.StatusBadRequest:
		return ReasonBadRequest, fmt.Sprintf("%s refused the request as invalid (%s)", who, status)
	case e.StatusCode >= 500:
		return ReasonInternalError, fmt.Sprintf("%s is unavailable (%s)", who, status)
	case hasCode(e, transport.TooManyRequestsErrorCode):
		return ReasonTooManyRequests, fmt.Sprintf("%s is limiting the rate of requests (%s)", who, status)
	case hasCode(e, transport.UnauthorizedErrorCode):
		return unauthorized(e, who, status)
	case hasCode(e, transport.DeniedErrorCode):
		return ReasonUnauthorized, fmt.Sprintf("%s denied access (%s)", who, status)
	case hasCode(e, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode):
		return ReasonNotFound, fmt.Sprintf("not found on %s (%s)", who, status)
	case hasCode(e, transport.NameInvalidErrorCode, transport.TagInvalidErrorCode, transport.DigestInvalidErrorCode, transport.ManifestInvalidErrorCode):
		return ReasonBadRequest, fmt.Sprintf("%s refused the request as invalid (%s)", who, status)
	}
	return ReasonInternalError, fmt.Sprintf("%s answered %s", who, status)
}

func unauthorized(e *transport.Error, who, status string) (reason, message string) {
	if mentionsUsernamePassword(e) {
		return ReasonUnauthorized, fmt.Sprintf("incorrect username or password for %s (%s)", who, status)
	}
	return ReasonUnauthorized, fmt.Sprintf("%s refused access (%s): the project's pull secrets hold no credentials it accepts for this repository", who, status)
}

// diagnostics is the registry's own error codes and messages, without the
// free-form detail, which may echo anything.
func diagnostics(e *transport.Error) string {
	var parts []string
	for _, d := range e.Errors {
		s := string(d.Code)
		if d.Message != "" {
			s += ": " + d.Message
		}
		parts = append(parts, s)
	}
	return sanitize(strings.Join(parts, "; "))
}

// hostOf finds the server an error is about, from the failed request.
func hostOf(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if u, perr := url.Parse(uerr.URL); perr == nil {
			return u.Host
		}
	}
	var pe *plainHTTPError
	if errors.As(err, &pe) {
		return pe.host
	}
	return ""
}

func registryName(host string) string {
	if host == "" {
		return "the registry"
	}
	return fmt.Sprintf("registry %q", host)
}

// certificateProblem finds a failed verification of the server's
// certificate and returns its cause.
func certificateProblem(err error) (string, bool) {
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return cve.Err.Error(), true
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return ua.Error(), true
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		return he.Error(), true
	}
	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) {
		return ci.Error(), true
	}
	return "", false
}

// plainHTTPOnly recognises HTTPS reaching an HTTP-only server (the
// reference's "HTTP only and requires the insecure flag"), and the guard's
// refusal of plain HTTP.
func plainHTTPOnly(err error) bool {
	var pe *plainHTTPError
	var rh tls.RecordHeaderError
	if errors.Is(err, http.ErrSchemeMismatch) || errors.As(err, &pe) || errors.As(err, &rh) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, http.ErrSchemeMismatch.Error()) || strings.Contains(msg, "tls: oversized record received")
}

// networkCause is the short cause of a network failure.
func networkCause(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.As(err, &dnsErr):
		return sanitize(dnsErr.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed early"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return sanitize(opErr.Err.Error())
	}
	var uerr *url.Error
	if errors.As(err, &uerr) && uerr.Err != nil {
		return sanitize(uerr.Err.Error())
	}
	return sanitize(err.Error())
}

var (
	urlPattern  = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)
	authPattern = regexp.MustCompile(`(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]+`)
	spaces      = regexp.MustCompile(`\s+`)
)

// maxMessage bounds a message: it goes into a condition users read.
const maxMessage = 400

// sanitize makes text fit for users: URLs keep scheme, host and path
// (queries carry signatures and tokens), Authorization values are cut,
// and it becomes one bounded line.
func sanitize(s string) string {
	s = urlPattern.ReplaceAllStringFunc(s, func(m string) string {
		u, err := url.Parse(m)
		if err != nil {
			return "<url>"
		}
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		return u.String()
	})
	s = authPattern.ReplaceAllString(s, "$1 <redacted>")
	s = strings.TrimSpace(spaces.ReplaceAllString(s, " "))
	if r := []rune(s); len(r) > maxMessage {
		s = string(r[:maxMessage]) + "…"
	}
	return s
}
