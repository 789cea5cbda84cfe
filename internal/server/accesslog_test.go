package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
)

// logLines returns the JSON log lines with message msg.
func logLines(t *testing.T, logs *lockedBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry["msg"] == msg {
			out = append(out, entry)
		}
	}
	return out
}

// waitForLine waits, at most 10 s, for a log line with message msg and
// path path, and returns it.
func waitForLine(t *testing.T, logs *lockedBuffer, msg, path string) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := logs.changed()
		for _, e := range logLines(t, logs, msg) {
			if e["path"] == path {
				return e
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %q line for %s in:\n%s", msg, path, logs.String())
		}
	}
}

func htpasswdFile(t *testing.T, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for user, password := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(user + ":" + string(h) + "\n")
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func get(t *testing.T, url, authorization string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Each access line names who made the request: the authenticated user,
// "anonymous", or "-" when authentication failed or did not run.
func TestAccessLogNamesTheUser(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), Htpasswd: htpasswdFile(t, map[string]string{"bob": "bob-pw"})})
	resp := get(t, r.url+"/openshift/token", "Basic "+basic("bob", "bob-pw"))
	var answer struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token for bob = %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	for _, c := range []struct{ path, authorization, user string }{
		{"/v2/a1/app/tags/list", "Basic " + basic("admin", testAdminPassword), "admin"},
		{"/v2/a2/app/tags/list", "Bearer " + answer.Token, "bob"},
		{"/v2/a3/app/tags/list", "", "anonymous"},
		{"/v2/a4/app/tags/list", "Basic " + basic("bob", "wrong-pw"), "-"},
		{"/v2/a5/app/tags/list", "Bearer sha256~not-a-real-token", "-"},
		{"/apis/project.openshift.io/v1/projects", "Bearer " + answer.Token, "bob"},
		{"/healthz", "Basic " + basic("admin", testAdminPassword), "-"}, // no authentication there
	} {
		get(t, r.url+c.path, c.authorization).Body.Close()
		if got := waitForLine(t, r.logs, "request", c.path)["user"]; got != c.user {
			t.Errorf("access line of %s: user = %v, want %q", c.path, got, c.user)
		}
	}
	if got := waitForLine(t, r.logs, "request", "/openshift/token")["user"]; got != "bob" {
		t.Errorf("access line of the token endpoint: user = %v, want bob", got)
	}
	for _, secret := range []string{answer.Token, "bob-pw", "wrong-pw", testAdminPassword, "not-a-real-token"} {
		if strings.Contains(r.logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, r.logs.String())
		}
	}
}

// At debug level each request says its route, the access decision and the
// time it spent in the metadata store; at info level nothing of it.
func TestDebugLogsRouteAccessAndStoreTime(t *testing.T) {
	htpasswd := htpasswdFile(t, map[string]string{"bob": "bob-pw"})
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		logs := &lockedBuffer{}
		r := start(t, Config{DataDir: t.TempDir(), Htpasswd: htpasswd,
			Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))})
		r.logs = logs
		content := []byte("a layer to pull")
		if resp := pushBlob(t, r.url, "p/app", content); resp.StatusCode != 201 {
			t.Fatalf("push = %d", resp.StatusCode)
		}
		blob := "/v2/p/app/blobs/" + digest.FromBytes(content).String()
		get(t, r.url+blob, "Basic "+basic("admin", testAdminPassword)).Body.Close()
		waitForLine(t, logs, "request", blob)
		if level == slog.LevelInfo {
			if strings.Contains(logs.String(), `"level":"DEBUG"`) {
				t.Errorf("debug lines at info level:\n%s", logs.String())
			}
			continue
		}
		pulled := waitForLine(t, logs, "request detail", blob)
		for k, want := range map[string]any{
			"route": "/v2/{project}/{image}/blobs/{digest}", "user": "admin", "verb": "get",
			"resource": "image.openshift.io/imagestreams/layers", "project": "p", "allowed": true, "access": "allowed",
		} {
			if pulled[k] != want {
				t.Errorf("debug line of the pull: %s = %v, want %v\n%v", k, pulled[k], want, pulled)
			}
		}
		if n, _ := pulled["store_calls"].(float64); n < 1 {
			t.Errorf("debug line of the pull: store_calls = %v, want at least 1", pulled["store_calls"])
		}
		if d, ok := pulled["store"].(float64); !ok || d <= 0 {
			t.Errorf("debug line of the pull: store = %v, want a duration", pulled["store"])
		}
		// bob may not see p: his pull is answered as for a missing blob.
		other := "/v2/p/app/blobs/" + digest.FromString("other").String()
		get(t, r.url+other, "Basic "+basic("bob", "bob-pw")).Body.Close()
		refused := waitForLine(t, logs, "request detail", other)
		for k, want := range map[string]any{"user": "bob", "verb": "get", "project": "p", "allowed": false, "access": "hidden"} {
			if refused[k] != want {
				t.Errorf("debug line of bob's pull: %s = %v, want %v\n%v", k, refused[k], want, refused)
			}
		}
		anon := "/v2/p/app/manifests/v1"
		get(t, r.url+anon, "").Body.Close()
		if got := waitForLine(t, logs, "request detail", anon)["access"]; got != "unauthorized" {
			t.Errorf("debug line of an anonymous pull: access = %v, want unauthorized", got)
		}
		api := "/apis/project.openshift.io/v1/projects"
		get(t, r.url+api, "Basic "+basic("bob", "bob-pw")).Body.Close()
		if got := waitForLine(t, logs, "request detail", api)["route"]; got != "GET "+api {
			t.Errorf("debug line of an API request: route = %v, want %q", got, "GET "+api)
		}
	}
}
