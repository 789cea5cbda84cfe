package server

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/berth-registry/berth/internal/reqlog"
)

// accessLog writes one line per request: method, path, status, bytes,
// duration, client and user ("anonymous", or "-" when authentication
// failed or did not run). The user is learnt inside, by the authentication
// middleware, through a reqlog.Entry in the request's context. At debug
// level a second line follows with the route, the access decision and the
// time spent in the metadata store (see reqlog).
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		ctx := req.Context()
		entry := reqlog.New(log.Enabled(ctx, slog.LevelDebug))
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, req.WithContext(reqlog.NewContext(ctx, entry)))
		log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("method", req.Method),
			slog.String("path", req.URL.Path),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("client", clientAddr(req)),
			slog.String("user", entry.User()),
		)
		if entry.Debug() {
			log.LogAttrs(ctx, slog.LevelDebug, "request detail",
				append([]slog.Attr{slog.String("method", req.Method), slog.String("path", req.URL.Path)}, entry.DebugAttrs()...)...)
		}
	})
}

func clientAddr(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	return host
}

// recorder counts what a handler writes. It passes ReadFrom through so
// that blob bodies still reach sendfile.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wroteHeader = true
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(r.ResponseWriter, src)
	}
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(r.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
