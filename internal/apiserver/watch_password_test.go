package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/store"
)

// A watch authenticated with a password (Basic, as any HTTP client may
// send) ends once the password stops working: a user removed from the
// htpasswd file (or whose password there changed) moves no access
// generation, so the watch checks its password again as often as a new
// request would (the password cache's life, a minute in berth serve).
func TestPasswordWatchEndsWithTheHtpasswdEntry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	must(t, st.CreateUser(ctx, store.User{Name: "admin", PasswordHash: hash("admin-pw")}))
	must(t, st.AddBinding(ctx, "", "cluster-admin", "User", "admin"))
	htpasswd := filepath.Join(dir, "htpasswd")
	must(t, os.WriteFile(htpasswd, []byte("carol:"+hash("carol-pw")+"\n"), 0o600))
	ht, err := auth.OpenHtpasswd(htpasswd)
	if err != nil {
		t.Fatal(err)
	}
	must(t, st.CreateProject(ctx, store.Project{Name: "team"}))
	must(t, st.AddBinding(ctx, "team", "edit", "User", "carol"))

	authn := &auth.Authenticator{
		Tokens: st, Groups: st,
		Identity: auth.Chain{auth.LocalUsers{PasswordHash: func(ctx context.Context, name string) (string, error) {
			u, err := st.User(ctx, name)
			return u.PasswordHash, err
		}}, ht},
		Users:       &auth.Throttle{Limit: 100, Window: time.Minute, Lockout: time.Minute},
		Clients:     &auth.Throttle{Limit: 100, Window: time.Minute, Lockout: time.Minute},
		Generation:  st.AccessGenerationAt,
		PasswordTTL: 100 * time.Millisecond, // a minute in berth serve
	}
	authz := auth.NewRBAC(st)
	authz.Generation = st.AccessGenerationAt
	api := apiserver.New(apiserver.Options{Store: st, Authorizer: authz, Authenticator: authn, Issuer: &auth.Issuer{Tokens: st}})
	mux := http.NewServeMux()
	for _, prefix := range apiserver.Paths {
		mux.Handle(prefix, authn.Middleware(api, apiserver.WriteAuthError))
	}
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	do := func(user, pw, method, path string, body any) *http.Response {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		req, _ := http.NewRequest(method, hs.URL+path, bytes.NewReader(b))
		req.SetBasicAuth(user, pw)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	secret := func(name string) {
		t.Helper()
		resp := do("admin", "admin-pw", "POST", "/api/v1/namespaces/team/secrets", map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": name}, "data": map[string]string{"password": "c2VjcmV0"}})
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("create secret %s = %d", name, resp.StatusCode)
		}
	}

	// carol's first login records her (an access change); then she watches.
	do("carol", "carol-pw", "GET", "/api/v1/namespaces/team/secrets", nil).Body.Close()
	watch := do("carol", "carol-pw", "GET", "/api/v1/namespaces/team/secrets?watch=true", nil)
	defer watch.Body.Close()
	if watch.StatusCode != 200 {
		t.Fatalf("carol's watch = %d", watch.StatusCode)
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(watch.Body)
		for sc.Scan() {
			events <- sc.Text()
		}
		close(events)
	}()
	next := func() string {
		select {
		case e, ok := <-events:
			if !ok {
				return "(the watch ended)"
			}
			return e
		case <-time.After(3 * time.Second):
			return "(nothing within 3s)"
		}
	}
	secret("before")
	if e := next(); !bytes.Contains([]byte(e), []byte(`"before"`)) {
		t.Fatalf("first event = %s", e)
	}

	// The administrator removes carol from the htpasswd file.
	must(t, os.WriteFile(htpasswd, []byte("# carol left\n"), 0o600))
	time.Sleep(300 * time.Millisecond) // past the password cache
	if resp := do("carol", "carol-pw", "GET", "/api/v1/namespaces/team/secrets", nil); resp.StatusCode != 401 {
		t.Fatalf("a new request of carol's after her removal = %d, want 401", resp.StatusCode)
	} else {
		resp.Body.Close()
	}

	secret("after")
	e := next()
	if bytes.Contains([]byte(e), []byte(`"after"`)) {
		t.Fatalf("carol's watch, opened with a password that no longer works, delivered a Secret created after her removal:\n%s", e)
	}
	if !bytes.Contains([]byte(e), []byte(`"ERROR"`)) || !bytes.Contains([]byte(e), []byte(`"code":401`)) {
		t.Fatalf("carol's watch after her removal: %s, want an ERROR event with a 401", e)
	}
}
