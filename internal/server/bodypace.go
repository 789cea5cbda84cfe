package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
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

// paceBodies applies p to every request that has a body, and to every
// response.
func paceBodies(p bodyPace, next http.Handler) http.Handler {
	if p.window <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctl := http.NewResponseController(w)
		// A write deadline left by the connection's previous response must
		// not cut this one; until the handler writes, nothing is due.
		if err := ctl.SetWriteDeadline(time.Time{}); err != nil {
			// A connection without deadlines (not a network connection)
			// has nothing to pace.
			next.ServeHTTP(w, req)
			return
		}
		pw := &pacedWriter{ResponseWriter: w, ctl: ctl, pace: p, sendfile: req.TLS == nil}
		if req.Body != nil && req.Body != http.NoBody {
			b := &pacedBody{ReadCloser: req.Body, ctl: ctl, pace: p}
			_ = b.renew() // it worked just now
			req.Body = b
		}
		next.ServeHTTP(pw, req)
		// net/http writes what the handler left buffered (and the end of a
		// chunked body) after it returns: under a deadline of its own, not
		// the last write's, which a handler that went quiet (a watch that
		// saw no change) outlived long ago.
		pw.due = time.Time{}
		pw.allow(flushSize)
	})
}

// pacedWriter bounds how long a response may take to reach a client that
// stops reading it: each write gets a window plus the time its bytes take
// at the minimum rate. A blob sent with sendfile gets a window at a time,
// and goes on as long as each window moved its quota. (Without a bound, a
// client that asked for a large blob and never read held the connection,
// the handler and the blob's file for as long as it liked.)
type pacedWriter struct {
	http.ResponseWriter
	ctl  *http.ResponseController
	pace bodyPace
	// sendfile: the connection is plain TCP, where a file is sent with
	// sendfile and a send cut short by the deadline can go on.
	sendfile bool
	// due is the write deadline set last.
	due time.Time
	// slice is how much a write sends at once now (see Write).
	slice int
}

// allow makes sure the write deadline leaves time to write n bytes: a
// window, and n bytes at the minimum rate. The deadline moves only when it
// falls short by more than an eighth of a window, so a run of small writes
// sets it once.
func (w *pacedWriter) allow(n int) {
	need := time.Now().Add(w.pace.window + time.Duration(int64(n)*int64(w.pace.window)/w.pace.minBytes))
	if w.due.Before(need.Add(-w.pace.window / 8)) {
		w.due = need
		_ = w.ctl.SetWriteDeadline(need)
	}
}

func (w *pacedWriter) WriteHeader(code int) {
	w.allow(0) // an informational answer (100, 103) is written at once
	w.ResponseWriter.WriteHeader(code)
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		w.allow(0)
		return w.ResponseWriter.Write(p)
	}
	// A large write goes in slices, each with the time its size takes at
	// the minimum rate. Slices start at 64 KiB, so a client that stops
	// reading is cut off a window and 64 KiB's time after it stopped; they
	// double, up to 512 KiB, while the client takes each at once (every
	// slice costs a system call: a pull from object storage took half the
	// CPU with 512 KiB writes), and fall back as soon as one is slow. A
	// client that read fast and then stops dead is thus held at most a
	// window and 512 KiB's time.
	if w.slice == 0 {
		w.slice = minPacedSlice
	}
	written := 0
	for len(p) > 0 {
		slice := p[:min(len(p), w.slice)]
		w.allow(len(slice))
		start := time.Now()
		n, err := w.ResponseWriter.Write(slice)
		written += n
		if err != nil {
			return written, err
		}
		if time.Since(start) < w.pace.window/16 {
			w.slice = min(2*w.slice, maxPacedSlice)
		} else {
			w.slice = minPacedSlice
		}
		p = p[n:]
	}
	return written, nil
}

// The least and most a paced write sends at once.
const (
	minPacedSlice = 64 << 10
	maxPacedSlice = 512 << 10
)

// flushSize bounds what a Flush sends: what net/http buffers.
const flushSize = 8 << 10

func (w *pacedWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (w *pacedWriter) FlushError() error {
	w.allow(flushSize)
	return w.ctl.Flush()
}

// ReadFrom sends a file with sendfile where it can, a window at a time: a
// send the deadline cut short goes on if it moved the window's quota (the
// file's offset and the limit of a LimitedReader have moved with it).
// Anything else is copied in pieces, each written with time for its size.
func (w *pacedWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok || !w.sendfile || !isFile(src) {
		buf := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(buf)
		return io.CopyBuffer(writerOnly{w}, src, *buf)
	}
	var total int64
	for {
		w.due = time.Now().Add(w.pace.window)
		_ = w.ctl.SetWriteDeadline(w.due)
		n, err := rf.ReadFrom(src)
		total += n
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && n >= w.pace.minBytes {
			continue // slow but live: another window
		}
		return total, err
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isFile reports whether src is a file net/http can send with sendfile.
func isFile(src io.Reader) bool {
	if lr, ok := src.(*io.LimitedReader); ok {
		src = lr.R
	}
	_, ok := src.(syscall.Conn)
	return ok
}

// writerOnly hides a writer's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// copyBuffers hold what goes from a reader that is no file (object
// storage's response, through Berth) to the client: large, since every
// piece costs a read and a write system call (512 KiB against 64 KiB
// took a third less CPU per GiB pulled from S3, scripts/bench-s3.sh).
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 512<<10); return &b }}

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
