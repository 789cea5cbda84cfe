package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/registry"
)

// BenchmarkAuthOverhead serves the same manifest GET by tag (the cheapest
// request, where access control weighs most) with no access control, with
// a bearer token, and with Basic user name and password, side by side.
// Run: go test ./internal/server -run '^$' -bench AuthOverhead
func BenchmarkAuthOverhead(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	meta := openTestStore(b, dir)
	storages := emptyDirStorages(b, dir, meta)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{AdminPassword: testAdminPassword}
	cfg.setDefaults()
	if err := bootstrap(ctx, meta, dir, cfg.AdminPassword, log); err != nil {
		b.Fatal(err)
	}
	secured, _, err := newHandler(cfg, meta, storages, []byte("test key of logged user names"), log, nil, "", metrics.New(), nil, nil, nil, adminActions{})
	if err != nil {
		b.Fatal(err)
	}
	open := registry.New(registry.Options{Metadata: meta, Blobs: storages.inEffect().Driver, StorageID: storages.inEffect().ID, Logger: log})

	// One image, pushed through the secured handler as the admin.
	f := &accessFixture{t: b, meta: meta}
	srv := httptest.NewServer(secured)
	defer srv.Close()
	f.url = srv.URL
	token, _, err := (&auth.Issuer{Tokens: meta}).Issue(ctx, "admin", time.Hour, "bench")
	if err != nil {
		b.Fatal(err)
	}
	f.tokens = map[string]string{"cadmin": "Bearer " + token}
	f.pushImage("bench/app", "v1", []byte("bench layer"))

	for _, c := range []struct {
		name          string
		h             http.Handler
		authorization func(*http.Request)
	}{
		{"open", open, func(*http.Request) {}},
		{"bearer-token", secured, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }},
		{"basic-password", secured, func(r *http.Request) { r.SetBasicAuth("admin", testAdminPassword) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/v2/bench/app/manifests/v1", nil)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			c.authorization(req)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
