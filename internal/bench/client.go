package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// NewHTTPClient returns a client whose transport keeps one idle
// connection per worker, so that no request of a run waits for a
// connection a finished request could have handed on. It speaks
// HTTP/1.1 (one request per connection at a time, as zb does), asks for
// no compression and uses large buffers to keep syscalls per MB low.
func NewHTTPClient(concurrency int, insecureSkipVerify bool, caCertFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify} //nolint:gosec // the user asked for it
	if caCertFile != "" {
		pem, err := os.ReadFile(caCertFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA certificate: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caCertFile)
		}
		tlsConf.RootCAs = pool
	}
	concurrency = max(concurrency, 1)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          2 * concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: 0,
		DisableCompression:    true,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        64 << 10,
	}
	return &http.Client{Transport: tr}, nil
}

// client speaks the OCI distribution API to one registry.
type client struct {
	base     *url.URL
	hc       *http.Client
	user     string
	password string
}

// StatusError is a response with a status the workload did not expect.
type StatusError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d", e.Method, e.URL, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

func newClient(rawURL string, hc *http.Client, user, password string) (*client, error) {
	u, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("registry URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("registry URL %q: scheme must be http or https", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("registry URL %q has no host", rawURL)
	}
	u.RawQuery, u.Fragment = "", ""
	return &client{base: u, hc: hc, user: user, password: password}, nil
}

func (c *client) endpoint(path string) string {
	return c.base.String() + path
}

// resolve turns a Location header into an absolute URL.
func (c *client) resolve(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s %s: HTTP %d without a Location header", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("bad Location %q: %w", loc, err)
	}
	return resp.Request.URL.ResolveReference(ref), nil
}

// send makes one request and checks its status. body, when not nil, is
// bytes [off, off+n) of p. On success the caller owns resp.Body; on
// failure it is drained and closed.
func (c *client) send(ctx context.Context, method, rawURL string, hdr http.Header, p *payload, off, n int64, want int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if p != nil {
		req.ContentLength = n
		if n > 0 {
			pp := *p
			req.Body = io.NopCloser(pp.section(off, n))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(pp.section(off, n)), nil }
		} else {
			req.Body = http.NoBody
			req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		}
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		drain(resp)
		return nil, &StatusError{Method: method, URL: req.URL.Path, Status: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	}
	return resp, nil
}

// drain reads what is left of a body so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

var octetStream = http.Header{"Content-Type": {"application/octet-stream"}}

// pushBlob uploads p to repo: POST for a session, then either one PUT
// with the whole blob (chunk <= 0) or a PATCH per chunk and an empty PUT.
func (c *client) pushBlob(ctx context.Context, repo string, p payload, chunk int64) error {
	resp, err := c.send(ctx, http.MethodPost, c.endpoint("/v2/"+repo+"/blobs/uploads/"), nil, &payload{}, 0, 0, http.StatusAccepted)
	if err != nil {
		return err
	}
	drain(resp)
	loc, err := c.resolve(resp)
	if err != nil {
		return err
	}
	var putOff, putLen int64 = 0, p.size
	if chunk > 0 {
		for off := int64(0); off < p.size; off += chunk {
			n := min(chunk, p.size-off)
			hdr := http.Header{
				"Content-Type":  {"application/octet-stream"},
				"Content-Range": {strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+n-1, 10)},
			}
			resp, err := c.send(ctx, http.MethodPatch, loc.String(), hdr, &p, off, n, http.StatusAccepted)
			if err != nil {
				return err
			}
			drain(resp)
			if loc, err = c.resolve(resp); err != nil {
				return err
			}
		}
		putOff, putLen = p.size, 0
	}
	q := loc.Query()
	q.Set("digest", p.digest)
	loc.RawQuery = q.Encode()
	resp, err = c.send(ctx, http.MethodPut, loc.String(), octetStream, &p, putOff, putLen, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// pushImage pushes layer, a config for it and a manifest tagged tag, as
// zb does. It returns the bytes sent in bodies.
func (c *client) pushImage(ctx context.Context, repo, tag string, layer payload, chunk int64) (int64, error) {
	if err := c.pushBlob(ctx, repo, layer, chunk); err != nil {
		return 0, err
	}
	cfg := imageConfig(layer)
	if err := c.pushBlob(ctx, repo, cfg, chunk); err != nil {
		return 0, err
	}
	m := manifestFor(cfg, layer)
	if err := c.putManifest(ctx, repo, tag, m); err != nil {
		return 0, err
	}
	return layer.size + cfg.size + int64(len(m)), nil
}

// putManifest PUTs manifest m into repo as tag.
func (c *client) putManifest(ctx context.Context, repo, tag string, m []byte) error {
	mp := payload{parts: [][]byte{m}, size: int64(len(m))}
	hdr := http.Header{"Content-Type": {mediaTypeManifest}}
	resp, err := c.send(ctx, http.MethodPut, c.endpoint("/v2/"+repo+"/manifests/"+tag), hdr, &mp, 0, mp.size, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// tags fetches one page of repo's tags, at most n.
func (c *client) tags(ctx context.Context, repo string, n int, buf []byte) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, c.endpoint("/v2/"+repo+"/tags/list?n="+strconv.Itoa(n)), nil, nil, 0, 0, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return discard(resp.Body, buf)
}

var manifestAccept = http.Header{"Accept": {strings.Join([]string{
	mediaTypeManifest, mediaTypeIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")}}

// getManifest fetches a manifest into a new slice.
func (c *client) getManifest(ctx context.Context, repo, ref string) ([]byte, error) {
	resp, err := c.send(ctx, http.MethodGet, c.endpoint("/v2/"+repo+"/manifests/"+ref), manifestAccept, nil, 0, 0, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if resp.ContentLength > 0 && resp.ContentLength < 4<<20 {
		b.Grow(int(resp.ContentLength))
	}
	if _, err := b.ReadFrom(io.LimitReader(resp.Body, 4<<20)); err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	return b.Bytes(), nil
}

// getBlob fetches a blob and discards it, reading through buf so large
// bodies go from the socket straight into one buffer. It checks the size
// when want >= 0.
func (c *client) getBlob(ctx context.Context, repo, dgst string, want int64, buf []byte) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, c.endpoint("/v2/"+repo+"/blobs/"+dgst), nil, nil, 0, 0, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := discard(resp.Body, buf)
	if err != nil {
		return n, fmt.Errorf("GET blob %s: %w after %d bytes", dgst, err, n)
	}
	if want >= 0 && n != want {
		return n, fmt.Errorf("GET blob %s: got %d bytes, want %d", dgst, n, want)
	}
	return n, nil
}

func discard(r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// pull fetches repo:tag as a client pulling an image would: the manifest
// by tag, then its config and each layer. It returns the bytes received.
func (c *client) pull(ctx context.Context, repo, tag string, buf []byte) (int64, error) {
	body, err := c.getManifest(ctx, repo, tag)
	if err != nil {
		return 0, err
	}
	var m imageManifest
	if err := json.Unmarshal(body, &m); err != nil {
		return 0, fmt.Errorf("parsing manifest %s:%s: %w", repo, tag, err)
	}
	total := int64(len(body))
	for _, d := range append([]descriptor{m.Config}, m.Layers...) {
		n, err := c.getBlob(ctx, repo, d.Digest, d.Size, buf)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// catalog fetches one page of the catalog of at most n repositories.
func (c *client) catalog(ctx context.Context, n int, buf []byte) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, c.endpoint("/v2/_catalog?n="+strconv.Itoa(n)), nil, nil, 0, 0, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return discard(resp.Body, buf)
}

// ping checks the registry answers /v2/ with 200, so a wrong URL or
// missing credentials fail once instead of in every request.
func (c *client) ping(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, c.endpoint("/v2/"), nil, nil, 0, 0, http.StatusOK)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			return fmt.Errorf("%w (give --username and --password; only Basic auth is supported)", err)
		}
		return err
	}
	drain(resp)
	return nil
}

// SpreadConnections makes c open each new connection to the next of
// addrs (host:port), round robin, whatever host a request names: several
// instances of one registry measured as a TCP load balancer in front of
// them would spread the load. Keep-alive connections stay where they
// were opened, so -c workers end up spread evenly.
func SpreadConnections(c *http.Client, addrs []string) error {
	tr, ok := c.Transport.(*http.Transport)
	if !ok || len(addrs) == 0 {
		return fmt.Errorf("spread connections: a transport of %T over %d addresses", c.Transport, len(addrs))
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	var next atomic.Uint64
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addrs[(next.Add(1)-1)%uint64(len(addrs))])
	}
	return nil
}
