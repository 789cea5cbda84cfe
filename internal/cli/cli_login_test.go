package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
)

// berthEnv runs berth commands against a real API server over TLS, with a
// configuration file per user.
type berthEnv struct {
	t      *testing.T
	srv    *apiservertest.Server
	caFile string
	dir    string
}

func newBerthEnv(t *testing.T) *berthEnv {
	s := apiservertest.New(t, apiservertest.Options{
		Users: map[string]string{"bob": "bob-pw", "alice": "alice-pw", "carol": "carol-pw"},
		TLS:   true,
	})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return &berthEnv{t: t, srv: s, caFile: ca, dir: dir}
}

// as runs berth with user's configuration file and stdin.
func (e *berthEnv) as(user, stdin string, args ...string) (string, string, error) {
	e.t.Setenv("BERTH_CONFIG", filepath.Join(e.dir, user, "config"))
	root := NewRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// ok runs berth and fails the test on an error.
func (e *berthEnv) ok(user string, args ...string) string {
	e.t.Helper()
	out, errOut, err := e.as(user, "", args...)
	if err != nil {
		e.t.Fatalf("%s: berth %s: %v\n%s%s", user, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// fails runs berth, expects an error containing want, and returns it.
func (e *berthEnv) fails(user, want string, args ...string) string {
	e.t.Helper()
	out, _, err := e.as(user, "", args...)
	if err == nil {
		e.t.Fatalf("%s: berth %s succeeded:\n%s", user, strings.Join(args, " "), out)
	}
	if !strings.Contains(err.Error(), want) {
		e.t.Fatalf("%s: berth %s: error %q does not say %q", user, strings.Join(args, " "), err, want)
	}
	return err.Error()
}

func (e *berthEnv) login(user, password string) {
	e.t.Helper()
	out := e.ok(user, "login", e.srv.URL, "-u", user, "-p", password, "--certificate-authority", e.caFile)
	if !strings.Contains(out, "Logged into "+e.srv.URL+" as "+user) {
		e.t.Fatalf("login %s: %s", user, out)
	}
}

func (e *berthEnv) config(user string) clientConfig {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, user, "config"))
	if err != nil {
		e.t.Fatal(err)
	}
	var c clientConfig
	if err := json.Unmarshal(b, &c); err != nil {
		e.t.Fatalf("config of %s is not JSON: %v\n%s", user, err, b)
	}
	return c
}

// get sends GET path with a bearer token and returns the status code.
func (e *berthEnv) get(token, path string) int {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLoginWhoamiLogout(t *testing.T) {
	e := newBerthEnv(t)
	e.fails("admin", "not logged in: run berth login URL", "whoami")
	e.fails("admin", "not logged in", "whoami", "-t")
	e.fails("admin", "not logged in", "get", "projects")
	// Without the CA the server's certificate is not trusted.
	e.fails("admin", "certificate", "login", e.srv.URL, "-u", "admin", "-p", apiservertest.AdminPassword)
	e.fails("admin", "login failed: wrong user name or password",
		"login", e.srv.URL, "-u", "admin", "-p", "nope", "--certificate-authority", e.caFile)
	e.login("admin", apiservertest.AdminPassword)

	st, err := os.Stat(filepath.Join(e.dir, "admin", "config"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st.Mode(), err)
	}
	cfg := e.config("admin")
	if cfg.Server != e.srv.URL || cfg.User != "admin" || !strings.HasPrefix(cfg.Token, "sha256~") || !filepath.IsAbs(cfg.CertificateAuthority) {
		t.Fatalf("config = %+v", cfg)
	}
	if out := e.ok("admin", "whoami"); out != "admin\n" {
		t.Fatalf("whoami = %q", out)
	}
	token := strings.TrimSpace(e.ok("admin", "whoami", "-t"))
	if token != cfg.Token {
		t.Fatalf("whoami -t = %q, config has %q", token, cfg.Token)
	}
	if code := e.get(token, "/apis/user.openshift.io/v1/users/~"); code != 200 {
		t.Fatalf("token works: %d", code)
	}

	// The password from standard input (not a terminal here).
	out, errOut, err := e.as("bob", "bob-pw\n", "login", strings.TrimPrefix(e.srv.URL, "https://"), "-u", "bob", "--certificate-authority", e.caFile)
	if err != nil || !strings.Contains(out, "Logged into "+e.srv.URL+" as bob") {
		t.Fatalf("login with the password on stdin: %v\n%s%s", err, out, errOut)
	}
	// Logging in again to the same server keeps the TLS settings.
	if out, _, err := e.as("bob", "bob-pw\n", "login", "-u", "bob"); err != nil || !strings.Contains(out, "as bob") {
		t.Fatalf("second login: %v %s", err, out)
	}

	if out := e.ok("admin", "logout"); !strings.Contains(out, `Logged "admin" out`) {
		t.Fatalf("logout = %q", out)
	}
	if code := e.get(token, "/apis/user.openshift.io/v1/users/~"); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	e.fails("admin", "not logged in", "whoami")
	if c := e.config("admin"); c.Token != "" || c.Server != e.srv.URL {
		t.Fatalf("config after logout = %+v", c)
	}

	// Log in with a token; an invalid one is refused.
	e.ok("carol", "login", e.srv.URL, "--token", strings.TrimSpace(e.ok("bob", "whoami", "-t")), "--certificate-authority", e.caFile)
	if out := e.ok("carol", "whoami"); out != "bob\n" {
		t.Fatalf("whoami with bob's token = %q", out)
	}
	e.fails("dave", "login failed", "login", e.srv.URL, "--token", "sha256~nope", "--insecure-skip-tls-verify")
	e.fails("dave", "not logged in", "whoami")
	// A token the server no longer accepts says to log in again.
	e.ok("bob", "logout")
	e.fails("carol", "log in again with berth login "+e.srv.URL, "whoami")
}

func TestYAMLConfig(t *testing.T) {
	e := newBerthEnv(t)
	e.login("admin", apiservertest.AdminPassword)
	c := e.config("admin")
	yaml := "# written by hand\nserver: " + c.Server + "\ncertificateAuthority: " + c.CertificateAuthority +
		"\ntoken: " + c.Token + "\nuser: admin\nproject: team\n"
	if err := os.WriteFile(filepath.Join(e.dir, "admin", "config"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("admin", "whoami"); out != "admin\n" {
		t.Fatalf("whoami = %q", out)
	}
	if out := e.ok("admin", "project"); !strings.Contains(out, `Using project "team"`) {
		t.Fatalf("project = %q", out)
	}
}
