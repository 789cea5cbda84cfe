package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/store"
)

// openWatch is a watch request as kubectl sends it, read event by event;
// every read gives up when limit has passed since it was opened.
type openWatch struct {
	t    *testing.T
	what string
	sc   *bufio.Scanner
}

// watchEvent is a watch event as the tests read it: the object's name,
// or, for an ERROR, its Status.
type watchEvent struct {
	Type   string
	Object struct {
		Kind     string
		Metadata struct{ Name string }
		Code     int
		Reason   string
		Message  string
	}
	raw string
}

func startWatch(t *testing.T, base, token, path string, limit time.Duration) *openWatch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch %s = %d", path, resp.StatusCode)
	}
	return &openWatch{t: t, what: path, sc: bufio.NewScanner(resp.Body)}
}

// next is the next event; false when the server ended the watch. The
// test fails when the time limit passes first.
func (w *openWatch) next() (watchEvent, bool) {
	w.t.Helper()
	if !w.sc.Scan() {
		if err := w.sc.Err(); err != nil {
			w.t.Fatalf("watch %s: no event and no end in time: %v", w.what, err)
		}
		return watchEvent{}, false
	}
	var e watchEvent
	if err := json.Unmarshal(w.sc.Bytes(), &e); err != nil {
		w.t.Fatalf("watch %s: line %q: %v", w.what, w.sc.Text(), err)
	}
	e.raw = w.sc.Text()
	return e, true
}

// expectAdded reads the next event, which must be name ADDED.
func (w *openWatch) expectAdded(name string) {
	w.t.Helper()
	e, ok := w.next()
	if !ok || e.Type != "ADDED" || e.Object.Metadata.Name != name {
		w.t.Fatalf("watch %s: want ADDED %s, got %v %s", w.what, name, ok, e.raw)
	}
}

// expectError reads the next event, which must be an ERROR carrying a
// Status with code and reason, and then the end of the watch.
func (w *openWatch) expectError(code int, reason string) watchEvent {
	w.t.Helper()
	e, ok := w.next()
	if !ok {
		w.t.Fatalf("watch %s ended without an ERROR event", w.what)
	}
	if e.Type != "ERROR" || e.Object.Kind != "Status" || e.Object.Code != code || e.Object.Reason != reason {
		w.t.Fatalf("watch %s: want ERROR %d %s, got %s", w.what, code, reason, e.raw)
	}
	if e, ok := w.next(); ok {
		w.t.Fatalf("watch %s went on after its ERROR: %s", w.what, e.raw)
	}
	return e
}

// A watchable kind, for tests that hold for all of them: where to watch
// it in project team, the role that lets bob watch it, and how to make a
// new object appear in team.
type watchedKind struct {
	name, path, role string
	add              func(t *testing.T, s *apiservertest.Server, alice client, name string)
	// shown is the name the object add made has in the watch (name when
	// nil).
	shown func(name string) string
}

func (k watchedKind) nameOf(name string) string {
	if k.shown == nil {
		return name
	}
	return k.shown(name)
}

// pushEmpty pushes, in one commit (so one event), a manifest that names
// no blobs, tagged tag in repo.
func pushEmpty(t *testing.T, s *apiservertest.Server, repo, tag, seed string) {
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"annotations":{"name":%q}}`, seed))
	must(t, s.Store.PutManifest(context.Background(), store.Only(store.DefaultStorage), repo, store.Manifest{Digest: digest.FromBytes(payload),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload}, []string{tag}))
}

var watchedKinds = []watchedKind{
	{"secrets", "/api/v1/namespaces/team/secrets", "edit",
		func(t *testing.T, _ *apiservertest.Server, alice client, name string) {
			alice.expect(201, "POST", "/api/v1/namespaces/team/secrets", map[string]any{"apiVersion": "v1", "kind": "Secret",
				"metadata": map[string]any{"name": name}, "data": map[string]string{"password": "c2VjcmV0"}})
		}, nil},
	{"imagestreams", "/apis/image.openshift.io/v1/namespaces/team/imagestreams", "registry-viewer",
		func(t *testing.T, s *apiservertest.Server, _ client, name string) {
			pushEmpty(t, s, "team/"+name, "v1", name)
		}, nil},
	{"imagestreamtags", "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags", "registry-viewer",
		func(t *testing.T, s *apiservertest.Server, _ client, name string) {
			pushEmpty(t, s, "team/app", name, name)
		},
		func(name string) string { return "app:" + name }},
}

// A watch ends, with the refusal a new request would get, as soon as its
// caller loses access: a role binding removed, the token revoked or
// expired. Nothing that happens afterwards reaches it, and the end does
// not wait for an object of the watched kind to change.
func TestWatchEndsWhenAccessEnds(t *testing.T) {
	const limit = 20 * time.Second
	for _, k := range watchedKinds {
		setup := func(t *testing.T) (*apiservertest.Server, client, client) {
			s := newServer(t)
			alice := login(t, s, "alice", "alice-pw")
			alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
			alice.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding(k.role, user("bob")))
			return s, alice, login(t, s, "bob", "bob-pw")
		}
		t.Run(k.name+"/unbound, then a new object", func(t *testing.T) {
			s, alice, bob := setup(t)
			w := startWatch(t, s.URL, bob.token, k.path+"?watch=true", limit)
			k.add(t, s, alice, "before")
			w.expectAdded(k.nameOf("before"))
			alice.expect(200, "DELETE", rbac+"/namespaces/team/rolebindings/"+k.role, nil)
			k.add(t, s, alice, "after")
			refusal := w.expectError(http.StatusForbidden, "Forbidden")
			want := bob.expect(http.StatusForbidden, "GET", k.path+"?watch=true", nil).str("message")
			if refusal.Object.Message != want {
				t.Fatalf("the watch's 403 says %q, a new request's %q", refusal.Object.Message, want)
			}
		})
		t.Run(k.name+"/unbound, nothing else changes", func(t *testing.T) {
			s, alice, bob := setup(t)
			w := startWatch(t, s.URL, bob.token, k.path+"?watch=true", limit)
			k.add(t, s, alice, "before")
			w.expectAdded(k.nameOf("before"))
			alice.expect(200, "DELETE", rbac+"/namespaces/team/rolebindings/"+k.role, nil)
			w.expectError(http.StatusForbidden, "Forbidden")
		})
		t.Run(k.name+"/token revoked", func(t *testing.T) {
			s, alice, bob := setup(t)
			w := startWatch(t, s.URL, bob.token, k.path+"?watch=true", limit)
			k.add(t, s, alice, "before")
			w.expectAdded(k.nameOf("before"))
			bob.expect(200, "DELETE", tokens+"/~", nil)
			if e := w.expectError(http.StatusUnauthorized, "Unauthorized"); !strings.Contains(e.Object.Message, "revoked") {
				t.Fatalf("the watch's 401 does not say why: %q", e.Object.Message)
			}
		})
		t.Run(k.name+"/token expired", func(t *testing.T) {
			s, _, _ := setup(t)
			a := tokenRequest(t, s.URL, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob-pw"},
				"expires_in": {"3"}})
			if a.code != 200 {
				t.Fatalf("login for 3 s = %d %s", a.code, a.raw)
			}
			w := startWatch(t, s.URL, a.str("access_token"), k.path+"?watch=true", limit)
			if e := w.expectError(http.StatusUnauthorized, "Unauthorized"); !strings.Contains(e.Object.Message, "expired") {
				t.Fatalf("the watch's 401 does not say why: %q", e.Object.Message)
			}
		})
	}
}

// timeoutSeconds ends a watch of any kind.
func TestWatchTimeoutSeconds(t *testing.T) {
	for _, k := range watchedKinds {
		t.Run(k.name, func(t *testing.T) {
			s := newServer(t)
			alice := login(t, s, "alice", "alice-pw")
			alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
			w := startWatch(t, s.URL, alice.token, k.path+"?watch=true&timeoutSeconds=1", 20*time.Second)
			if e, ok := w.next(); ok {
				t.Fatalf("a watch of an empty project sent %s", e.raw)
			}
		})
	}
}

// A watch of any kind whose history was pruned, before it started or
// while it waited, gets a 410 Expired ERROR: the client lists again.
func TestWatchFromPrunedHistoryIsExpired(t *testing.T) {
	ctx := context.Background()
	secret := func(alice client, name string) {
		alice.expect(201, "POST", "/api/v1/namespaces/team/secrets", map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": name}})
	}
	for _, k := range []watchedKind{watchedKinds[1], watchedKinds[2], {name: "configmaps", path: cms}} {
		t.Run(k.name+"/from before the kept history", func(t *testing.T) {
			s := newServer(t)
			alice := login(t, s, "alice", "alice-pw")
			alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
			secret(alice, "a")
			secret(alice, "b")
			if _, err := s.Store.PruneEvents(ctx, 1); err != nil {
				t.Fatal(err)
			}
			w := startWatch(t, s.URL, alice.token, k.path+"?watch=true&resourceVersion=1", 20*time.Second)
			w.expectError(http.StatusGone, "Expired")
		})
		t.Run(k.name+"/pruned while watching", func(t *testing.T) {
			s := newServer(t)
			alice := login(t, s, "alice", "alice-pw")
			alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
			rv := alice.expect(200, "GET", k.path, nil).str("metadata", "resourceVersion")
			w := startWatch(t, s.URL, alice.token, k.path+"?watch=true&resourceVersion="+rv, 20*time.Second)
			// Changes the watch does not show: its place in the history
			// stays where it started.
			secret(alice, "a")
			secret(alice, "b")
			if _, err := s.Store.PruneEvents(ctx, 1); err != nil {
				t.Fatal(err)
			}
			w.expectError(http.StatusGone, "Expired")
		})
	}
}

// A watch of ImageStreamTags shows a tag's first push as ADDED, each move
// as MODIFIED with the new image, and its deletion as DELETED.
func TestWatchImageStreamTags(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	const path = "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags"
	rv := alice.expect(200, "GET", path, nil).str("metadata", "resourceVersion")
	w := startWatch(t, s.URL, alice.token, path+"?watch=true&resourceVersion="+rv, 20*time.Second)
	pushEmpty(t, s, "team/app", "v1", "one")
	w.expectAdded("app:v1")
	pushEmpty(t, s, "team/app", "v1", "two")
	if e, ok := w.next(); !ok || e.Type != "MODIFIED" || e.Object.Metadata.Name != "app:v1" || !strings.Contains(e.raw, `"image":{"metadata":{"name":"sha256:`) {
		t.Fatalf("want MODIFIED app:v1, got %v %s", ok, e.raw)
	}
	alice.expect(200, "DELETE", path+"/app:v1", nil)
	if e, ok := w.next(); !ok || e.Type != "DELETED" || e.Object.Metadata.Name != "app:v1" {
		t.Fatalf("want DELETED app:v1, got %v %s", ok, e.raw)
	}
}
