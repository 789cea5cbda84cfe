package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
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

// watchedKinds are a stored kind and a view, where to watch them in
// project team.
var watchedKinds = []struct{ name, path string }{
	{"secrets", "/api/v1/namespaces/team/secrets"},
	{"imagestreams", "/apis/image.openshift.io/v1/namespaces/team/imagestreams"},
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
	for _, k := range []struct{ name, path string }{watchedKinds[1], {"configmaps", cms}} {
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
