package upstream

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// A registry answering every request but the ping with one status.
func TestClassifyUpstreamStatuses(t *testing.T) {
	cases := []struct {
		status      int
		code        string
		reason      string
		unavailable bool
	}{
		{http.StatusInternalServerError, "UNKNOWN", ReasonInternalError, true},
		{http.StatusBadGateway, "", ReasonInternalError, true},
		{http.StatusServiceUnavailable, "UNAVAILABLE", ReasonInternalError, true},
		{http.StatusTooManyRequests, "TOOMANYREQUESTS", ReasonTooManyRequests, true},
		{http.StatusNotFound, "MANIFEST_UNKNOWN", ReasonNotFound, false},
		{http.StatusNotFound, "", ReasonNotFound, false},
		{http.StatusUnauthorized, "UNAUTHORIZED", ReasonUnauthorized, false},
		{http.StatusForbidden, "DENIED", ReasonUnauthorized, false},
		{http.StatusBadRequest, "NAME_INVALID", ReasonBadRequest, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s", c.status, c.code), func(t *testing.T) {
			srv := quietServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.status)
				if c.code != "" {
					fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"from the test","detail":"Bearer s3cr3t-detail"}]}`, c.code)
				}
			}), true)
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "https://")
			ref, err := name.ParseReference(host + "/team/app:v1")
			if err != nil {
				t.Fatal(err)
			}
			a := testAccess(Policy{}, map[string][]byte{TrustKey(host): (&testRegistry{srv: srv}).pemCert()})
			// No retries: ggcr would retry 5xx and 429 for seconds.
			_, err = get(context.Background(), a, ref, false, false, remote.WithRetryStatusCodes())
			if err == nil {
				t.Fatal("no error")
			}
			reason, msg := Classify(err)
			if reason != c.reason {
				t.Errorf("Classify(%v) = %q, %q; want %q", err, reason, msg, c.reason)
			}
			if !strings.Contains(msg, host) || strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "\n") {
				t.Errorf("message %q", msg)
			}
			if got := Unavailable(err); got != c.unavailable {
				t.Errorf("Unavailable(%v) = %v, want %v", err, got, c.unavailable)
			}
		})
	}
}

func TestClassifyConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	ref, err := name.ParseReference(host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, insecure := range []bool{false, true} {
		_, err = get(context.Background(), testAccess(Policy{}, nil), ref, insecure, false)
		if !Unavailable(err) {
			t.Errorf("insecure %v: Unavailable(%v) = false", insecure, err)
		}
		if reason, msg := Classify(err); reason != ReasonInternalError || !strings.Contains(msg, "unreachable") || !strings.Contains(msg, "refused") {
			t.Errorf("insecure %v: Classify(%v) = %q, %q", insecure, err, reason, msg)
		}
	}
}

func TestClassifyErrors(t *testing.T) {
	req := func(rawURL string) *http.Request {
		u, _ := url.Parse(rawURL)
		return &http.Request{Method: http.MethodGet, URL: u}
	}
	urlErr := func(err error) error {
		return &url.Error{Op: "Get", URL: "https://reg.example.com/v2/", Err: err}
	}
	diag := func(status int, code transport.ErrorCode) error {
		return &transport.Error{StatusCode: status, Request: req("https://reg.example.com/v2/app/manifests/v1"),
			Errors: []transport.Diagnostic{{Code: code, Message: "m"}}}
	}
	cases := []struct {
		name        string
		err         error
		reason      string
		unavailable bool
	}{
		{"forbidden", &forbiddenError{"registry \"x\" is blocked"}, ReasonForbidden, false},
		{"forbidden wrapped", fmt.Errorf("importing: %w", ErrForbidden), ReasonForbidden, false},
		{"500", &transport.Error{StatusCode: 500}, ReasonInternalError, true},
		{"503", &transport.Error{StatusCode: 503}, ReasonInternalError, true},
		{"504 wrapped", fmt.Errorf("fetching: %w", &transport.Error{StatusCode: 504}), ReasonInternalError, true},
		{"429", &transport.Error{StatusCode: 429}, ReasonTooManyRequests, true},
		{"408", &transport.Error{StatusCode: 408}, ReasonInternalError, true},
		{"404", &transport.Error{StatusCode: 404}, ReasonNotFound, false},
		{"401", &transport.Error{StatusCode: 401}, ReasonUnauthorized, false},
		{"403", &transport.Error{StatusCode: 403}, ReasonUnauthorized, false},
		{"code TOOMANYREQUESTS on 200-ish", diag(409, transport.TooManyRequestsErrorCode), ReasonTooManyRequests, true},
		{"code NAME_UNKNOWN", diag(409, transport.NameUnknownErrorCode), ReasonNotFound, false},
		{"code UNAUTHORIZED", diag(409, transport.UnauthorizedErrorCode), ReasonUnauthorized, false},
		{"code UNAVAILABLE", diag(409, transport.UnavailableErrorCode), ReasonInternalError, true},
		{"refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &osSyscallError{syscall.ECONNREFUSED}}), ReasonInternalError, true},
		{"reset", urlErr(&net.OpError{Op: "read", Net: "tcp", Err: &osSyscallError{syscall.ECONNRESET}}), ReasonInternalError, true},
		{"dns", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "reg.example.com", IsNotFound: true}}), ReasonInternalError, true},
		{"deadline", urlErr(context.DeadlineExceeded), ReasonInternalError, true},
		{"eof", urlErr(io.EOF), ReasonInternalError, true},
		{"cancelled", urlErr(context.Canceled), ReasonInternalError, false},
		{"unknown authority", urlErr(x509.UnknownAuthorityError{}), ReasonInternalError, false},
		{"wrong host", urlErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "reg.example.com"}), ReasonInternalError, false},
		{"expired", urlErr(x509.CertificateInvalidError{Reason: x509.Expired}), ReasonInternalError, false},
		{"http only", urlErr(http.ErrSchemeMismatch), ReasonBadRequest, false},
		{"plain refused", urlErr(&plainHTTPError{host: "reg.example.com"}), ReasonBadRequest, false},
		{"other", errors.New("manifest digest mismatch"), ReasonInternalError, false},
	}
	for _, c := range cases {
		reason, msg := Classify(c.err)
		if reason != c.reason || msg == "" {
			t.Errorf("%s: Classify(%v) = %q, %q; want %q", c.name, c.err, reason, msg, c.reason)
		}
		if got := Unavailable(c.err); got != c.unavailable {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", c.name, c.err, got, c.unavailable)
		}
	}
	if reason, msg := Classify(nil); reason != "" || msg != "" {
		t.Errorf("Classify(nil) = %q, %q", reason, msg)
	}
	if Unavailable(nil) {
		t.Error("Unavailable(nil)")
	}
}

// osSyscallError stands for os.SyscallError: it unwraps to the errno.
type osSyscallError struct{ errno syscall.Errno }

func (e *osSyscallError) Error() string { return "connect: " + e.errno.Error() }
func (e *osSyscallError) Unwrap() error { return e.errno }

func TestClassifyMessagesHideSecrets(t *testing.T) {
	errs := []error{
		&url.Error{Op: "Get", URL: "https://user:hunter2@blobs.example.com/x?X-Amz-Signature=hunter2&token=hunter2",
			Err: errors.New("something odd")},
		fmt.Errorf("sent Authorization: Basic %s and Bearer hunter2hunter2: %w", b64("alice:hunter2"), errors.New("odd")),
		errors.New("GET https://reg.example.com/token?service=x&refresh_token=hunter2: something odd"),
	}
	for _, err := range errs {
		_, msg := Classify(err)
		if strings.Contains(msg, "hunter2") || strings.Contains(msg, b64("alice:hunter2")) {
			t.Errorf("Classify(%v) message %q holds a secret", err, msg)
		}
	}
	_, msg := Classify(errors.New(strings.Repeat("long line\n", 200)))
	if len(msg) > maxMessage+10 || strings.Contains(msg, "\n") {
		t.Errorf("message of %d bytes, multi-line %v", len(msg), strings.Contains(msg, "\n"))
	}
}

func TestAnonymousRetry(t *testing.T) {
	checkErr := func(status int, body string) error {
		resp := &http.Response{
			StatusCode: status,
			Body:       io.NopCloser(bytes.NewBufferString(body)),
			Request:    &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: "auth.example.com", Path: "/token"}},
		}
		return transport.CheckError(resp, http.StatusOK)
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"token server wrong password", checkErr(401, `{"details":"incorrect username or password"}`), true},
		{"UNAUTHORIZED code", checkErr(401, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`), true},
		{"wrapped", fmt.Errorf("import: %w", checkErr(401, `{"errors":[{"code":"UNAUTHORIZED"}]}`)), true},
		{"bare 401", checkErr(401, ""), false},
		{"403 username or password", checkErr(403, `incorrect username or password`), false},
		{"404", checkErr(404, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`), false},
		{"not HTTP", errors.New("incorrect username or password"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := AnonymousRetry(c.err); got != c.want {
			t.Errorf("%s: AnonymousRetry(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
	reason, msg := Classify(cases[0].err)
	if reason != ReasonUnauthorized || !strings.Contains(msg, "incorrect username or password") || !strings.Contains(msg, "auth.example.com") {
		t.Errorf("Classify(token server 401) = %q, %q", reason, msg)
	}
}
