// Package apiservertest runs the management API over a real store and
// real authentication and authorization, for tests of the API and of its
// clients. It wires the parts as internal/server does.
package apiservertest

import (
	"context"
	"crypto/rand"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/quota"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// AdminPassword is the password of "admin", the cluster administrator.
const AdminPassword = "admin-Pa55"

// Server is a running API server.
type Server struct {
	*httptest.Server
	Store *store.Store
}

// Options for New.
type Options struct {
	// Users are extra users and their passwords (people, not service
	// accounts), created as Berth's own users.
	Users map[string]string
	// TLS serves HTTPS with httptest's certificate.
	TLS bool
	// LoginAttempts before a user is throttled (default 5).
	LoginAttempts int
	// Blobs reads image configs (none when nil).
	Blobs apiserver.Blobs
	// PodName and PodLogs are the instance whose log pods/log serves.
	PodName string
	PodLogs apiserver.PodLogs
	// Stopping, closed, tells watches and followed logs to end.
	Stopping <-chan struct{}
	// StorageMigrator runs storage migrations (none when nil).
	StorageMigrator apiserver.StorageMigrator
	// Settings, when set, gives each request the snapshot in effect, as
	// the server's middleware does (without it requests read the
	// defaults); a test changes the settings with Settings.Store.
	Settings *settings.Holder
}

// New starts a server with "admin" (cluster-admin) and opts.Users, and the
// bootstrap bindings (every person may create projects). It stops when
// the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	ctx := context.Background()
	// Secrets encrypted at rest, as berth serve keeps them: every API test
	// of Secrets (watch, patch, apply) runs through the encryption.
	secretKey := make([]byte, store.SecretKeySize)
	_, _ = rand.Read(secretKey)
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "meta.db"), store.WithSecretKeys(secretKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.SetLimitsPolicy(quota.Policy())
	users := map[string]string{"admin": AdminPassword}
	for u, p := range opts.Users {
		users[u] = p
	}
	for name, password := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateUser(ctx, store.User{Name: name, PasswordHash: string(hash)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []struct{ role, kind, subject string }{
		{"cluster-admin", "User", "admin"},
		{"self-provisioner", "Group", auth.GroupPeople},
	} {
		if err := st.AddBinding(ctx, "", b.role, b.kind, b.subject); err != nil {
			t.Fatal(err)
		}
	}
	attempts := opts.LoginAttempts
	if attempts == 0 {
		attempts = 5
	}
	authn := &auth.Authenticator{
		Tokens: st, Groups: st,
		Identity: auth.LocalUsers{PasswordHash: func(ctx context.Context, name string) (string, error) {
			u, err := st.User(ctx, name)
			return u.PasswordHash, err
		}},
		Users:    &auth.Throttle{Limit: attempts, Window: time.Minute, Lockout: time.Minute},
		Annotate: func(ctx context.Context, id auth.Identity) context.Context { return store.WithActor(ctx, id.User.Name) },
		Clients:  &auth.Throttle{Limit: 4 * attempts, Window: time.Minute, Lockout: time.Minute},
		// Cached as in the server: a test of a change to access sees what
		// a real request would.
		Generation: st.AccessGenerationAt,
	}
	authz := auth.NewRBAC(st)
	authz.Generation = st.AccessGenerationAt
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	api := apiserver.New(apiserver.Options{
		Store: st, Authorizer: authz, Authenticator: authn, Issuer: &auth.Issuer{Tokens: st}, Logger: log,
		Blobs: opts.Blobs, PodName: opts.PodName, PodLogs: opts.PodLogs, Stopping: opts.Stopping,
		StorageMigrator: opts.StorageMigrator,
	})
	mux := http.NewServeMux()
	for _, prefix := range apiserver.Paths {
		mux.Handle(prefix, authn.Middleware(api, apiserver.WriteAuthError))
	}
	mux.Handle("/oauth/", api)
	var handler http.Handler = mux
	if opts.Settings != nil {
		handler = opts.Settings.Middleware(mux)
	}
	hs := httptest.NewUnstartedServer(handler)
	// Clients that do not trust the certificate are what some tests are
	// about: their handshake errors are not news.
	hs.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	if opts.TLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return &Server{Server: hs, Store: st}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
