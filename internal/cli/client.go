package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// errNotLoggedIn is what every command that needs a session says without one.
var errNotLoggedIn = errors.New("not logged in: run berth login URL")

// apiClient talks to the management API of one server.
type apiClient struct {
	server string
	token  string
	http   *http.Client
}

// httpClient trusts caFile (when set) besides the system's CAs, or no one
// at all with insecure.
func httpClient(caFile string, insecure bool) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch {
	case insecure:
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // asked for with --insecure-skip-tls-verify
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the certificate authority: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

func newAPIClient(cfg *clientConfig) (*apiClient, error) {
	hc, err := httpClient(cfg.CertificateAuthority, cfg.InsecureSkipTLSVerify)
	if err != nil {
		return nil, err
	}
	return &apiClient{server: cfg.Server, token: cfg.Token, http: hc}, nil
}

// session loads the configuration and a client for its server and token,
// or errNotLoggedIn.
func session() (*clientConfig, *apiClient, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, nil, err
	}
	if cfg.Server == "" || cfg.Token == "" {
		return nil, nil, errNotLoggedIn
	}
	c, err := newAPIClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, c, nil
}

// statusError is a failure the server reported as a Kubernetes Status.
type statusError struct {
	Code    int
	Reason  string
	Message string
	server  string
}

func (e *statusError) Error() string {
	if e.Code == http.StatusUnauthorized {
		// The server may say "token expired; log in again" already.
		if strings.HasSuffix(e.Message, "log in again") {
			return e.Message + " with berth login " + e.server
		}
		return e.Message + ": log in again with berth login " + e.server
	}
	return e.Message
}

func isNotFound(err error) bool {
	se, ok := errors.AsType[*statusError](err)
	return ok && se.Code == http.StatusNotFound
}

// do sends in (JSON, when not nil) with method to path and decodes the
// answer into out (when not nil); a PATCH is a JSON merge patch. A failure
// answer becomes a *statusError
// carrying the server's message.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	contentType := "application/json"
	if method == http.MethodPatch {
		contentType = "application/merge-patch+json"
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	return c.send(req, out)
}

func (c *apiClient) send(req *http.Request, out any) error {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", c.server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s: %w", c.server, err)
	}
	if err := c.failure(req, resp, b); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what berth expects (is %s a Berth server?): %w", req.Method, req.URL.Path, c.server, err)
	}
	return nil
}

// stream sends a bodiless request with method to path and returns the
// answer to read as it arrives, with no time limit on it (the caller's
// ctx ends it); a failure answer is a *statusError.
func (c *apiClient) stream(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach %s: %w", c.server, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", c.server, err)
	}
	return nil, c.failure(req, resp, b)
}

// failure is the *statusError of a failure answer with body b, nil for a
// success.
func (c *apiClient) failure(req *http.Request, resp *http.Response, b []byte) error {
	if resp.StatusCode >= 300 {
		se := &statusError{Code: resp.StatusCode, server: c.server}
		var st struct {
			Reason           string `json:"reason"`
			Message          string `json:"message"`
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		if json.Unmarshal(b, &st) == nil {
			se.Reason, se.Message = st.Reason, st.Message
			if se.Message == "" {
				se.Message = st.ErrorDescription
			}
		}
		if se.Message == "" {
			se.Message = fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
		}
		return se
	}
	return nil
}

// normalizeServer accepts "host:port" for "https://host:port" and drops a
// trailing slash.
func normalizeServer(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%q is not a server URL (https://HOST:PORT)", s)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// projectOf is the project a command acts in: -n, else the current one.
// projectSession is session for a command that acts in a project: -n
// (flag) or the current one.
func projectSession(flag string) (*apiClient, string, error) {
	cfg, c, err := session()
	if err != nil {
		return nil, "", err
	}
	ns, err := projectOf(cfg, flag)
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

func projectOf(cfg *clientConfig, flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if cfg.Project != "" {
		return cfg.Project, nil
	}
	return "", errors.New("no project: pass -n PROJECT, or choose a current one with berth project NAME (berth new-project NAME creates one)")
}

func addProjectFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "namespace", "n", "", "project to act in (default: the current project)")
}

// errConflictRetries is what retryOnConflict answers when every attempt
// lost its race.
var errConflictRetries = errors.New("it kept changing while berth wrote it; try again")

// retryOnConflict runs attempt until it does not end in 409 Conflict (the
// object changed since attempt read it, or someone created it at the same
// time), at most 30 times, with a growing random pause between tries so
// that writers who collided do not collide again. first tells an attempt
// whether it is the first.
func retryOnConflict(ctx context.Context, attempt func(first bool) error) error {
	const attempts = 30
	for n := range attempts {
		if n > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(n) * int64(10*time.Millisecond)))):
			}
		}
		err := attempt(n == 0)
		if se, ok := errors.AsType[*statusError](err); !ok || se.Code != http.StatusConflict {
			return err
		}
	}
	return errConflictRetries
}
