package limiter

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-registry/berth/internal/settings"
)

// BenchmarkMiddleware is the limiter's cost per request, configured but
// not saturated, against no limits: the "within a few percent"
// is measured end to end by scripts/bench-limiter.sh; this isolates the
// middleware.
func BenchmarkMiddleware(b *testing.B) {
	for _, c := range []struct {
		name string
		s    *settings.Settings
	}{
		{"off", &settings.Settings{}},
		{"configured", &settings.Settings{Requests: settings.Requests{
			Read:  settings.Limits{MaxRunning: 1 << 20, MaxInQueue: 100},
			Write: settings.Limits{MaxRunning: 1 << 20, MaxInQueue: 100}}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := New(rejectWith429, nil, nil)
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
			req := httptest.NewRequest("GET", "/v2/p/i/manifests/latest", nil)
			req = req.WithContext(settings.With(req.Context(), c.s))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := httptest.NewRecorder()
				for pb.Next() {
					h.ServeHTTP(w, req)
				}
			})
		})
	}
}
