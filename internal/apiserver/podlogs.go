package apiserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/berth-registry/berth/internal/instance"
	"github.com/berth-registry/berth/internal/limiter"
	"github.com/berth-registry/berth/internal/logging"
)

// PodLogs is this instance's log: the newest lines its process logged
// (a logging.Ring).
type PodLogs interface {
	Tail(n int) (lines []logging.Line, next uint64, changed <-chan struct{})
	Since(seq uint64, limit int) (lines []logging.Line, next uint64, changed <-chan struct{})
}

// logTimeFormat is how a kubelet stamps log lines (timestamps=true): RFC
// 3339 with nine digits of fraction, always.
const logTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// logFlushEvery paces a followed log: a burst of lines goes out in one
// write and one flush per period, not one per line.
const logFlushEvery = 50 * time.Millisecond

// logOptions are a log request's query (Kubernetes' PodLogOptions).
type logOptions struct {
	follow, timestamps bool
	tail               int   // lines from the end; -1: all
	limit              int64 // bytes; 0: no limit
	since              time.Time
}

func parseLogOptions(q url.Values, pod string) (logOptions, error) {
	o := logOptions{tail: -1}
	flag := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, badRequest("%s=%q is not a boolean", name, v)
		}
		return b, nil
	}
	number := func(name string, least int64) (int64, bool, error) {
		v := q.Get(name)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false, badRequest("%s=%q is not a number", name, v)
		}
		if n < least {
			return 0, false, invalid("PodLogOptions %q is invalid: %s: Invalid value: %d: must be greater than or equal to %d", pod, name, n, least)
		}
		return n, true, nil
	}
	var err error
	if o.follow, err = flag("follow"); err != nil {
		return o, err
	}
	if o.timestamps, err = flag("timestamps"); err != nil {
		return o, err
	}
	previous, err := flag("previous")
	if err != nil {
		return o, err
	}
	if c := q.Get("container"); c != "" && c != instance.Container {
		return o, badRequest("container %s is not valid for pod %s", c, pod)
	}
	if previous {
		return o, badRequest("previous terminated container %q in pod %q not found", instance.Container, pod)
	}
	if n, ok, err := number("tailLines", 0); err != nil {
		return o, err
	} else if ok {
		o.tail = int(min(n, 1<<30))
	}
	if o.limit, _, err = number("limitBytes", 1); err != nil {
		return o, err
	}
	secs, hasSecs, err := number("sinceSeconds", 1)
	if err != nil {
		return o, err
	}
	if hasSecs {
		o.since = time.Now().Add(-time.Duration(min(secs, 1<<32)) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		if hasSecs {
			return o, invalid("PodLogOptions %q is invalid: at most one of `sinceTime` or `sinceSeconds` may be specified", pod)
		}
		if o.since, err = time.Parse(time.RFC3339, v); err != nil {
			return o, badRequest("sinceTime=%q is not an RFC 3339 time", v)
		}
	}
	return o, nil
}

// podLog serves GET pods/{name}/log: this instance's own log. Another
// instance's pod is answered 404 with where it runs: each instance keeps
// its log in its own memory, and requests are not forwarded (yet).
func (s *Server) podLog(w http.ResponseWriter, r *http.Request) error {
	in, err := s.podNamed(r, "get", resPodLog)
	if err != nil {
		return err
	}
	opts, err := parseLogOptions(r.URL.Query(), in.Name)
	if err != nil {
		return err
	}
	if in.Name != s.opts.PodName {
		return &StatusError{http.StatusNotFound, "NotFound", fmt.Sprintf(
			"the log of pod %q is kept by its own instance (%s); this one serves the log of pod %q only",
			in.Name, instanceHint(in), s.opts.PodName)}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if s.opts.PodLogs == nil {
		return nil
	}
	ctl := http.NewResponseController(w)
	out := &logWriter{w: w, opts: opts, left: opts.limit}
	lines, next, changed := s.opts.PodLogs.Tail(opts.tail)
	if out.write(lines) != nil || out.done {
		return nil
	}
	_ = ctl.Flush()
	if !opts.follow {
		return nil
	}
	ctx := r.Context()
	// Following, the request holds a connection, not the registry's work.
	limiter.Detach(ctx)
	pace := time.NewTimer(0)
	defer pace.Stop()
	flushed := time.Now()
	for {
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		case <-s.opts.Stopping:
			return nil
		}
		// Lines that arrive within a period of the last flush wait for
		// the rest of it and go out together.
		if wait := logFlushEvery - time.Since(flushed); wait > 0 {
			pace.Reset(wait)
			select {
			case <-pace.C:
			case <-ctx.Done():
				return nil
			case <-s.opts.Stopping:
				return nil
			}
		}
		lines, next, changed = s.opts.PodLogs.Since(next, 1000)
		if out.write(lines) != nil || out.done {
			return nil
		}
		if ctl.Flush() != nil {
			return nil
		}
		flushed = time.Now()
	}
}

// logWriter writes log lines as a kubelet does, within limitBytes.
type logWriter struct {
	w    http.ResponseWriter
	opts logOptions
	left int64 // bytes left under the limit (with a limit)
	done bool  // the limit is reached
	buf  []byte
}

// write writes lines in one write, those before the since time left out.
func (lw *logWriter) write(lines []logging.Line) error {
	lw.buf = lw.buf[:0]
	for _, l := range lines {
		if !lw.opts.since.IsZero() && l.Time.Before(lw.opts.since) {
			continue
		}
		start := len(lw.buf)
		if lw.opts.timestamps {
			lw.buf = l.Time.UTC().AppendFormat(lw.buf, logTimeFormat)
			lw.buf = append(lw.buf, ' ')
		}
		lw.buf = append(lw.buf, l.Text...)
		lw.buf = append(lw.buf, '\n')
		if lw.opts.limit > 0 {
			n := int64(len(lw.buf) - start)
			if n >= lw.left {
				lw.buf = lw.buf[:start+int(lw.left)]
				lw.left, lw.done = 0, true
				break
			}
			lw.left -= n
		}
	}
	if len(lw.buf) == 0 {
		return nil
	}
	_, err := lw.w.Write(lw.buf)
	return err
}
