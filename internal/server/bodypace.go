package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
)

// bodyPace is how slowly a request body may arrive. A body must deliver
// minBytes within each window, counted from the start of the request and
// restarted each time the quota is met; otherwise the connection's read
// deadline passes and the next read fails. A slow but live client (a
// large layer over a poor link) keeps uploading for as long as it needs; a
// stalled or trickling one (a byte every few seconds) is cut off after one
// window. The rule is one read deadline per connection, renewed when the
// quota is met, so it costs nothing per byte.
type bodyPace struct {
	window   time.Duration
	minBytes int64
}

// newBodyPace returns the pace for a window and a minimum rate in bytes per
// second; a window ≤ 0 turns pacing off.
func newBodyPace(window time.Duration, minRate int64) bodyPace {
	if window <= 0 {
		return bodyPace{}
	}
	return bodyPace{window: window, minBytes: max(1, int64(window.Seconds()*float64(minRate)))}
}

// paceBodies applies p to every request that has a body.
func paceBodies(p bodyPace, next http.Handler) http.Handler {
	if p.window <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Body == nil || req.Body == http.NoBody {
			next.ServeHTTP(w, req)
			return
		}
		b := &pacedBody{ReadCloser: req.Body, ctl: http.NewResponseController(w), pace: p}
		if err := b.renew(); err != nil {
			// A connection without deadlines (not a network connection)
			// has nothing to pace.
			next.ServeHTTP(w, req)
			return
		}
		req.Body = b
		next.ServeHTTP(w, req)
	})
}

// pacedBody renews the connection's read deadline each time the body
// delivers its quota, and says what happened when the deadline passed.
type pacedBody struct {
	io.ReadCloser
	ctl  *http.ResponseController
	pace bodyPace
	// got counts bytes since the quota was last met; renewed is when the
	// deadline was last moved.
	got     int64
	renewed time.Time
	// reading: the handler has read; done: the body ended (EOF or error).
	reading, done bool
}

func (b *pacedBody) renew() error {
	b.got, b.renewed = 0, time.Now()
	return b.ctl.SetReadDeadline(b.renewed.Add(b.pace.window))
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if !b.reading {
		// The first window started with the request, so that a body no
		// handler reads (an early refusal) is drained under a deadline too;
		// a handler that takes its time before reading (a password check)
		// must not spend the client's window, so reading starts a new one.
		b.reading = true
		_ = b.renew()
	}
	n, err := b.ReadCloser.Read(p)
	if b.done {
		return n, err
	}
	b.got += int64(n)
	if err == nil && b.got >= b.pace.minBytes {
		// A fast body meets the quota on every read; moving the deadline
		// that often buys nothing, so the next window may start up to an
		// eighth of a window late (the client still has 7/8 of one).
		if time.Since(b.renewed) >= b.pace.window/8 {
			_ = b.renew() // it worked when the body was wrapped
		} else {
			b.got = 0
		}
	}
	switch {
	case err == io.EOF:
		b.done = true
		// After the body, net/http reads on in the background to notice a
		// client that hangs up; a deadline left behind would end that read
		// and cancel the request's context.
		_ = b.ctl.SetReadDeadline(time.Time{})
	case err != nil:
		b.done = true
		// The deadline stays: net/http drains an unread body before it
		// answers, and a stalled one must fail that at once too.
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			err = fmt.Errorf("request body stalled: fewer than %d bytes arrived within %s: %w: %w",
				b.pace.minBytes, b.pace.window, errdefs.ErrTimeout, err)
		}
	}
	return n, err
}
