package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-registry/berth/internal/store"
)

// The console has no API of its own and no authorizer: every page reads
// and every form writes through the registry's own handlers (/apis, /v2,
// /oauth), called in process with the signed-in user's token, so what the
// console shows or does is exactly what that user may, refused by the
// same code that refuses kubectl.

// backend calls the server's handlers in process.
type backend struct {
	handler http.Handler
}

// call is one in-process request, made as the console's request r was:
// its context (cancellation, the settings in effect), host and client
// address, with token as the credentials.
type call struct {
	method, path string
	query        url.Values
	body         []byte
	contentType  string
	accept       string
	// viewing marks a /v2 read that shows a manifest: not a pull.
	viewing bool
}

// apiError is a refusal of the backend: its status code and message.
type apiError struct {
	Code    int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// maxBackendBody bounds what one in-process answer may hold in memory.
const maxBackendBody = 32 << 20

// request is c as an in-process request made as the console's request r
// was: in ctx (r's, or one derived from it), with r's host, client
// address and TLS state, and token as the credentials.
func (b *backend) request(ctx context.Context, r *http.Request, token string, c call) (*http.Request, error) {
	u := &url.URL{Path: c.path}
	if c.query != nil {
		u.RawQuery = c.query.Encode()
	}
	if c.viewing {
		ctx = store.Viewing(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u.String(), bytes.NewReader(c.body))
	if err != nil {
		return nil, err
	}
	req.Host, req.RemoteAddr, req.TLS = r.Host, r.RemoteAddr, r.TLS
	req.RequestURI = u.RequestURI()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.accept != "" {
		req.Header.Set("Accept", c.accept)
	}
	// The client address the throttles count by, as the console saw it.
	for _, h := range []string{"X-Forwarded-For", "User-Agent"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	return req, nil
}

// do runs c as token and returns the answer's status and body; an answer
// of 300 or more is an *apiError carrying the Status message.
func (b *backend) do(r *http.Request, token string, c call) (int, []byte, http.Header, error) {
	req, err := b.request(r.Context(), r, token, c)
	if err != nil {
		return 0, nil, nil, err
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	b.handler.ServeHTTP(rec, req)
	if rec.overflow {
		return rec.code, nil, rec.header, fmt.Errorf("%s %s: the answer is larger than %d bytes", c.method, c.path, maxBackendBody)
	}
	if rec.code < 400 && rec.code >= 300 {
		// A redirect (the mux cleaning a path of "..") is no answer of
		// the API's: the console does not follow it.
		return http.StatusBadRequest, nil, rec.header, &apiError{Code: http.StatusBadRequest, Message: "no such page: the address names none"}
	}
	if rec.code >= 400 {
		return rec.code, rec.body.Bytes(), rec.header, &apiError{Code: rec.code, Message: statusMessage(rec.body.Bytes())}
	}
	return rec.code, rec.body.Bytes(), rec.header, nil
}

// getJSON reads path as token into out.
func (b *backend) getJSON(r *http.Request, token, path string, query url.Values, out any) error {
	_, body, _, err := b.do(r, token, call{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// sendJSON sends in as the body of method on path, and decodes the answer
// into out when out is not nil.
func (b *backend) sendJSON(r *http.Request, token, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	_, answer, _, err := b.do(r, token, call{method: method, path: path, body: body, contentType: "application/json"})
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(answer, out)
}

// statusMessage is the message of a Kubernetes Status, an OAuth error or
// a /v2 error body; the body itself, shortened, otherwise.
func statusMessage(body []byte) string {
	var s struct {
		Message     string `json:"message"`
		Description string `json:"error_description"`
		Errors      []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &s) == nil {
		switch {
		case s.Message != "":
			return s.Message
		case s.Description != "":
			return s.Description
		case len(s.Errors) > 0:
			return s.Errors[0].Message
		}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// recorder is the ResponseWriter of an in-process call: it keeps the
// answer, up to maxBackendBody.
type recorder struct {
	header   http.Header
	code     int
	wrote    bool
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(p) > maxBackendBody {
		r.overflow = true
		return 0, io.ErrShortWrite
	}
	return r.body.Write(p)
}

// streamer is the ResponseWriter of an in-process watch: what the handler
// writes goes to a pipe the console reads as it comes.
type streamer struct {
	header  http.Header
	code    int
	started chan int // the status code, once
	w       *io.PipeWriter
}

func (s *streamer) Header() http.Header { return s.header }

func (s *streamer) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
		s.started <- code
	}
}

func (s *streamer) Write(p []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return s.w.Write(p)
}

func (s *streamer) Flush() {}

// stream runs a long GET (a watch, an export) as token and returns its
// body as it is written, and its headers; closing the reader ends the call
// (its context is cancelled).
func (b *backend) stream(r *http.Request, token, path string, query url.Values, accept string) (io.ReadCloser, http.Header, error) {
	ctx, cancel := context.WithCancel(r.Context())
	req, err := b.request(ctx, r, token, call{method: http.MethodGet, path: path, query: query, accept: accept})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	pr, pw := io.Pipe()
	s := &streamer{header: http.Header{}, started: make(chan int, 1), w: pw}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			// The handler runs in this goroutine, not in one the server
			// recovers: a panic ends this call, not the process.
			if v := recover(); v != nil {
				s.WriteHeader(http.StatusInternalServerError)
				_ = pw.CloseWithError(fmt.Errorf("the call panicked: %v", v))
			}
		}()
		b.handler.ServeHTTP(s, req)
		s.WriteHeader(http.StatusOK)
		_ = pw.Close()
	}()
	code := <-s.started
	if code >= 300 {
		body, _ := io.ReadAll(io.LimitReader(pr, 64<<10))
		cancel()
		_ = pr.Close()
		<-done
		return nil, nil, &apiError{Code: code, Message: statusMessage(body)}
	}
	return &watchBody{PipeReader: pr, cancel: cancel, done: done}, s.header, nil
}

// watchBody ends its call when closed, and waits for it.
type watchBody struct {
	*io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *watchBody) Close() error {
	w.cancel()
	err := w.PipeReader.Close()
	<-w.done
	return err
}
