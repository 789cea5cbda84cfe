package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// htpasswdUsers writes an htpasswd file (bcrypt) of users and returns its
// path, for `berth serve --htpasswd`.
func htpasswdUsers(t testing.TB, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for user, password := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", user, h)
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiCall sends a JSON request to the management API as the admin and
// returns the status and body.
func (s *server) apiCall(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// newProject creates a project as the admin.
func (s *server) newProject(name string) {
	s.t.Helper()
	st, b := s.apiCall("POST", "/apis/project.openshift.io/v1/projectrequests",
		map[string]any{"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": map[string]string{"name": name}})
	if st != http.StatusCreated && st != http.StatusOK {
		s.t.Fatalf("create project %s: %d %s", name, st, b)
	}
}

// grant binds role to user in project through the RBAC API, as
// `berth policy add-role-to-user` does.
func (s *server) grant(project, role, user string) {
	s.t.Helper()
	path := "/apis/rbac.authorization.k8s.io/v1/namespaces/" + project + "/rolebindings"
	st, b := s.apiCall("GET", path+"/"+role, nil)
	binding := map[string]any{}
	switch st {
	case http.StatusOK:
		if err := json.Unmarshal(b, &binding); err != nil {
			s.t.Fatal(err)
		}
	case http.StatusNotFound:
		binding = map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
			"metadata": map[string]string{"name": role, "namespace": project},
			"roleRef":  map[string]string{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
		}
	default:
		s.t.Fatalf("read binding %s in %s: %d %s", role, project, st, b)
	}
	subjects, _ := binding["subjects"].([]any)
	binding["subjects"] = append(subjects, map[string]string{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user})
	method, target := "PUT", path+"/"+role
	if st == http.StatusNotFound {
		method, target = "POST", path
	}
	if st, b := s.apiCall(method, target, binding); st != http.StatusOK && st != http.StatusCreated {
		s.t.Fatalf("grant %s to %s in %s: %d %s", role, user, project, st, b)
	}
}

// TestRegistryLoginFlows drives the token flow and Basic credentials over
// a real listener: what podman, docker and crane do under the hood.
func TestRegistryLoginFlows(t *testing.T) {
	users := map[string]string{"alice": "alice-pw", "mallory": "mallory-pw"}
	s := startServer(t, "--insecure-http", "--htpasswd", htpasswdUsers(t, users))
	s.newProject("team")
	s.grant("team", "registry-editor", "alice")

	anon := s.AnonymousClient()
	resp, err := anon.Get(s.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 401 || challenge != `Bearer realm="`+s.URL+`/openshift/token",service="berth"` {
		t.Fatalf("GET /v2/ without credentials = %d %q", resp.StatusCode, challenge)
	}
	token := func(c *http.Client) (int, string) {
		resp, err := c.Get(s.URL + "/openshift/token?service=berth&scope=repository:team/app:pull,push")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &raw)
		if resp.StatusCode == 200 {
			for _, k := range []string{"token", "access_token", "expires_in", "issued_at"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("token answer lacks %q: %s", k, b)
				}
			}
		}
		tok, _ := raw["token"].(string)
		if access, _ := raw["access_token"].(string); access != tok {
			t.Errorf("token %q and access_token %q differ", tok, access)
		}
		return resp.StatusCode, tok
	}
	st, aliceToken := token(s.ClientAs("alice", "alice-pw"))
	if st != 200 || !strings.HasPrefix(aliceToken, "sha256~") {
		t.Fatalf("token for alice's password = %d %q", st, aliceToken)
	}
	if st, tok := token(anon); st != 200 || tok != "anonymous" {
		t.Fatalf("anonymous token = %d %q", st, tok)
	}
	if st, _ := token(s.ClientAs("alice", "wrong")); st != 401 {
		t.Fatalf("token for a wrong password = %d", st)
	}

	// The bearer token pushes; the anonymous one is refused a push.
	bearer := func(tok string) *http.Client {
		c := s.AnonymousClient()
		c.Transport = headerTransport{next: c.Transport, name: "Authorization", value: "Bearer " + tok}
		return c
	}
	blob := []byte("pushed with a bearer token")
	d := sha256Digest(blob)
	resp, err = bearer(aliceToken).Post(s.URL+"/v2/team/app/blobs/uploads/?digest="+d, "application/octet-stream", bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push with alice's bearer token = %d", resp.StatusCode)
	}
	resp, err = bearer("anonymous").Post(s.URL+"/v2/team/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("push with the anonymous token = %d, want 401", resp.StatusCode)
	}
	// Basic with the token as password and any user name (the reference's
	// `podman login -u anything -p TOKEN`).
	if st, _, _ := getURL(t, s.ClientAs("whatever", aliceToken), s.URL+"/v2/team/app/blobs/"+d, ""); st != 200 {
		t.Fatalf("pull with Basic anything:TOKEN = %d", st)
	}
	// mallory authenticates but sees nothing of team: it looks missing.
	if st, _, _ := getURL(t, s.ClientAs("mallory", "mallory-pw"), s.URL+"/v2/team/app/blobs/"+d, ""); st != 404 {
		t.Fatalf("pull by a user without access = %d, want 404", st)
	}
	st, _, body := getURL(t, s.ClientAs("mallory", "mallory-pw"), s.URL+"/v2/_catalog", "")
	var cat struct{ Repositories []string }
	if err := json.Unmarshal(body, &cat); err != nil || st != 200 || slices.Contains(cat.Repositories, "team/app") {
		t.Fatalf("mallory's catalog = %d %s", st, body)
	}
	if strings.Contains(s.Logs(), aliceToken) || strings.Contains(s.Logs(), "alice-pw") {
		t.Fatal("the server log contains a secret")
	}
}

// TestPasswordTypedAsUserNameIsNotLogged: a password typed into the user
// name field (of podman login, the token endpoint or berth login) never
// reaches the log, which logs a short hash of it instead; a known user's
// failed login is still named.
func TestPasswordTypedAsUserNameIsNotLogged(t *testing.T) {
	s := startServer(t, "--insecure-http", "--htpasswd", htpasswdUsers(t, map[string]string{"bob": "bob-pw"}))
	const typed = "Bob-S3cret-Passw0rd"
	for _, c := range []struct{ user, password, path string }{
		{typed, "bob", "/v2/"}, {typed, "bob", "/openshift/token"}, {"bob", "wrong-guess", "/v2/"}, {"admin", "wrong-guess", "/v2/"},
	} {
		resp, err := s.ClientAs(c.user, c.password).Get(s.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("GET %s as %s = %d, want 401", c.path, c.user, resp.StatusCode)
		}
	}
	resp, err := s.AnonymousClient().PostForm(s.URL+"/oauth/token", url.Values{"grant_type": {"password"}, "username": {typed}, "password": {"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("OAuth login with a password as the user name = %d, want 400", resp.StatusCode)
	}
	// The log is read from the server's stderr as it comes: wait for the
	// three failures with the name hashed, bounded.
	hashed := regexp.MustCompile(`msg="login failed" user_hash=([0-9a-f]{12}) client=127\.0\.0\.1`)
	for i := 0; i < 50 && len(hashed.FindAllString(s.Logs(), -1)) < 3; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	logs := s.Logs()
	if strings.Contains(logs, typed) {
		t.Fatalf("the server log holds the password typed as a user name:\n%s", logs)
	}
	hashes := map[string]bool{}
	for _, m := range hashed.FindAllStringSubmatch(logs, -1) {
		hashes[m[1]] = true
	}
	// One name, one hash, so attempts can be correlated; keyed, so the log
	// does not let a reader test guesses at the password.
	plain := sha256.Sum256([]byte(typed))
	if len(hashes) != 1 || hashes[hex.EncodeToString(plain[:6])] {
		t.Errorf("want one keyed hash for the three attempts, got %v:\n%s", hashes, logs)
	}
	for _, want := range []string{`msg="login failed" user=bob client=127.0.0.1`, `msg="login failed" user=admin client=127.0.0.1`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

type headerTransport struct {
	next        http.RoundTripper
	name, value string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.next.RoundTrip(r)
}

// TestBruteForceIsThrottled: wrong passwords lock the user out for the
// lockout window, even with the right password; after it, the right one
// works.
func TestBruteForceIsThrottled(t *testing.T) {
	s := startServer(t, "--insecure-http", "--htpasswd", htpasswdUsers(t, map[string]string{"bob": "bob-pw"}),
		"--login-attempts", "3", "--login-lockout", "3s")
	get := func(password string) (int, http.Header) {
		resp, err := s.ClientAs("bob", password).Get(s.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i := range 3 {
		if st, _ := get(fmt.Sprintf("guess-%d", i)); st != 401 {
			t.Fatalf("wrong password %d = %d, want 401", i, st)
		}
	}
	// Locked out: the right password is not even checked.
	st, h := get("bob-pw")
	if st != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("right password during the lockout = %d (Retry-After %q), want 429 with Retry-After", st, h.Get("Retry-After"))
	}
	if strings.Contains(s.Logs(), "guess-") || strings.Contains(s.Logs(), "bob-pw") {
		t.Fatal("the server log contains a password")
	}
	// The log is read from the server's stderr as it comes: give it a moment.
	logged := func() bool {
		return strings.Contains(s.Logs(), `msg="login failed" user=bob client=127.0.0.1`) &&
			strings.Contains(s.Logs(), `msg="login throttled" user=bob`)
	}
	for i := 0; i < 50 && !logged(); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("failed and throttled logins are not logged:\n%s", s.Logs())
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := get("bob-pw")
		if st == 200 {
			break
		}
		if st != 429 || time.Now().After(deadline) {
			t.Fatalf("right password after the lockout = %d", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
