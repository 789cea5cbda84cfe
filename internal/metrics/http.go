package metrics

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Instrument counts, times and sizes every request next serves (the
// imageregistry_http_* series), and adds the bytes of /v2 bodies to the
// pushed and pulled totals. Sizes are counted in plain fields of one
// wrapper per request and added to the metrics once, when the request
// ends: no lock, atomic or allocation per read or write, so a blob's
// bytes cost nothing more. Writes of a blob still reach sendfile.
func (m *Metrics) Instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		x := &exchange{rw: responseWriter{ResponseWriter: w, status: http.StatusOK}}
		if r.Body != nil && r.Body != http.NoBody {
			x.body.ReadCloser = r.Body
			r.Body = &x.body
		}
		// Deferred, so that a handler's panic (which net/http recovers
		// from) does not leave the request in flight for ever.
		defer m.done(r, x, start)
		next.ServeHTTP(&x.rw, r)
	})
}

func (m *Metrics) done(r *http.Request, x *exchange, start time.Time) {
	m.inFlight.Dec()
	method := methodLabel(r.Method)
	m.requests.WithLabelValues(codeLabel(x.rw.status), method).Inc()
	m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	m.requestSize.Observe(float64(x.body.n))
	m.responseSize.Observe(float64(x.rw.n))
	if !strings.HasPrefix(r.URL.Path, "/v2/") {
		return
	}
	switch r.Method {
	case http.MethodGet:
		m.bytesPulled.Add(float64(x.rw.n))
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		m.bytesPushed.Add(float64(x.body.n))
	}
}

// exchange is one request's wrappers, allocated together.
type exchange struct {
	rw   responseWriter
	body countingBody
}

// countingBody counts the bytes of a request body the handler read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// responseWriter records the status and counts the bytes of the body.
type responseWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	n           int64
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 { // 1xx are interim answers
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// ReadFrom passes a blob's file on, so that it is sent with sendfile.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	w.wroteHeader = true
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(w.ResponseWriter, src)
	}
	w.n += n
	return n, err
}

// Flush is for the watches, which flush each event.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError reports a failed flush to http.ResponseController.
func (w *responseWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// methodLabel is the method as the reference labels it: lower case, and
// "unknown" for a method HTTP does not define (a label value per made-up
// method would let any client grow the scrape without bound).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet:
		return "get"
	case http.MethodHead:
		return "head"
	case http.MethodPost:
		return "post"
	case http.MethodPut:
		return "put"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	case http.MethodOptions:
		return "options"
	case http.MethodConnect:
		return "connect"
	case http.MethodTrace:
		return "trace"
	}
	return "unknown"
}

// codeLabels are the status codes as label values, made once so that a
// request does not format (and allocate) its own.
var codeLabels = func() []string {
	labels := make([]string, 600)
	for i := range labels {
		labels[i] = strconv.Itoa(i)
	}
	return labels
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}
