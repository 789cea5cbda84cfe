package upstream

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/time/rate"
)

// guard is the innermost RoundTripper of every call, under ggcr's retry
// and auth layers, so that it sees each HTTP request once per attempt:
// it paces requests with the Access's limiter and holds the call to the
// scheme its insecure flag allows.
type guard struct {
	next     http.RoundTripper
	limiter  *rate.Limiter
	insecure bool
}

// plainHTTPError refuses plain HTTP for a registry that is not insecure.
// ggcr tries HTTP itself for loopback and private addresses; Berth does
// not, as the reference does not.
type plainHTTPError struct{ host string }

func (e *plainHTTPError) Error() string {
	return fmt.Sprintf("plain HTTP to %s refused: the registry is not marked insecure", e.host)
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	// A refused request sends nothing, so it takes no token.
	if req.URL.Scheme == "http" && !g.insecure {
		closeBody(req)
		return nil, &plainHTTPError{host: req.URL.Host}
	}
	if err := g.wait(req.Context()); err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := g.next.RoundTrip(req)
	if err == nil || !g.insecure || req.URL.Scheme != "https" || req.Context().Err() != nil {
		return resp, err
	}
	// An insecure registry may speak only HTTP: try the same request
	// over HTTP, as Docker does for its insecure registries. ggcr learns
	// the scheme from the response's request and keeps to it after the
	// ping.
	plain := req.Clone(req.Context())
	plain.URL.Scheme = "http"
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, err
		}
		body, berr := req.GetBody()
		if berr != nil {
			return nil, err
		}
		plain.Body = body
	}
	if werr := g.wait(req.Context()); werr != nil {
		closeBody(plain)
		return nil, werr
	}
	resp, perr := g.next.RoundTrip(plain)
	if perr != nil {
		// The HTTPS failure says more (a certificate, a refused port):
		// report that one.
		return nil, err
	}
	return resp, nil
}

// wait takes a token, honouring ctx: a cancelled or expired context ends
// the wait with its error, and a deadline too close for the next token
// fails at once with one wrapping context.DeadlineExceeded.
func (g *guard) wait(ctx context.Context) error {
	err := g.limiter.Wait(ctx)
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("waiting for the upstream rate limit: %w", ctxErr)
	}
	if _, ok := ctx.Deadline(); ok {
		return fmt.Errorf("waiting for the upstream rate limit: %w (%v)", context.DeadlineExceeded, err)
	}
	return fmt.Errorf("waiting for the upstream rate limit: %w", err)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
