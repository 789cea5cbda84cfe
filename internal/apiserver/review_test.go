package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A dry run checks and answers as the write would, and changes nothing;
// handlers that cannot honour it refuse it.
func TestDryRunChangesNothing(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", cms, cm("a", map[string]string{"k": "1"}))
	if a := alice.raw("PATCH", cms+"/a?dryRun=All", "application/merge-patch+json", []byte(`{"data":{"k":"DRY"}}`)); a.code != 200 ||
		a.body["data"].(map[string]any)["k"] != "DRY" {
		t.Fatalf("dry-run patch: %d %s", a.code, a.raw)
	}
	upd := cm("a", map[string]string{"k": "PUT"})
	alice.expect(200, "PUT", cms+"/a?dryRun=All", upd)
	if a := alice.raw("DELETE", cms+"/a", "application/json", []byte(`{"propagationPolicy":"Background","dryRun":["All"]}`)); a.code != 200 {
		t.Fatalf("dry-run delete: %d %s", a.code, a.raw)
	}
	got := alice.expect(200, "GET", cms+"/a", nil)
	if got.body["data"].(map[string]any)["k"] != "1" {
		t.Fatalf("a dry run changed the object: %s", got.raw)
	}
	if a := alice.raw("DELETE", "/api/v1/namespaces/team", "application/json", []byte(`{"dryRun":["All"]}`)); a.code != 400 {
		t.Fatalf("dry-run namespace delete: %d %s", a.code, a.raw)
	}
	alice.expect(200, "GET", "/api/v1/namespaces/team", nil)
	if a := alice.raw("POST", "/api/v1/namespaces?dryRun=All", "application/json", []byte(`{"metadata":{"name":"dry"}}`)); a.code != 400 {
		t.Fatalf("dry-run namespace create: %d %s", a.code, a.raw)
	}
	alice.expect(404, "GET", "/api/v1/namespaces/dry", nil)
}

// Concurrent patches without a resourceVersion all land (no 409s).
func TestConcurrentPatchesAllLand(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", cms, cm("a", nil))
	const n = 20
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for i := range n {
		wg.Go(func() {
			codes <- alice.raw("PATCH", cms+"/a", "application/merge-patch+json", []byte(fmt.Sprintf(`{"data":{"k%d":"v"}}`, i))).code
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a concurrent patch = %d", c)
		}
	}
	if data := alice.expect(200, "GET", cms+"/a", nil).body["data"].(map[string]any); len(data) != n {
		t.Fatalf("%d of %d patched keys landed", len(data), n)
	}
}

func TestImmutableFields(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	frozen := cm("frozen", map[string]string{"a": "1"})
	frozen["immutable"] = true
	alice.expect(201, "POST", cms, frozen)
	if a := alice.raw("PATCH", cms+"/frozen", "application/merge-patch+json", []byte(`{"data":{"a":"2"},"immutable":false}`)); a.code != 422 {
		t.Fatalf("patching an immutable ConfigMap: %d %s", a.code, a.raw)
	}
	secrets := "/api/v1/namespaces/team/secrets"
	alice.expect(201, "POST", secrets, map[string]any{"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": "s"}, "stringData": map[string]string{"u": "x"}})
	if a := alice.raw("PATCH", secrets+"/s", "application/merge-patch+json", []byte(`{"type":"kubernetes.io/basic-auth"}`)); a.code != 422 {
		t.Fatalf("changing a Secret's type: %d %s", a.code, a.raw)
	}
}

// A label-selector watch sees the changes of matching objects only, and a
// list's limit holds with a selector.
func TestSelectorsOnWatchAndLimit(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	start := alice.expect(201, "POST", cms, cm("first", nil)).str("metadata", "resourceVersion")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+cms+"?watch=true&labelSelector=app%3Dweb&resourceVersion="+start, nil)
	req.Header.Set("Authorization", "Bearer "+alice.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	alice.expect(201, "POST", cms, cm("other", nil))
	alice.expect(201, "POST", cms, cm("web", nil)) // labelled app=web by cm()
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() {
		t.Fatal("the selector watch saw nothing")
	}
	var e struct {
		Type   string
		Object struct{ Metadata struct{ Name string } }
	}
	if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Type != "ADDED" || e.Object.Metadata.Name != "web" {
		t.Fatalf("first event = %s", sc.Text())
	}
	for _, name := range []string{"x1", "x2", "x3", "x4"} {
		obj := cm(name, nil)
		obj["metadata"].(map[string]any)["labels"] = map[string]string{"sel": "y"}
		alice.expect(201, "POST", cms, obj)
	}
	page := alice.expect(200, "GET", cms+"?limit=3&labelSelector=sel%3Dy", nil)
	if names := page.names(); len(names) != 3 || page.body["metadata"].(map[string]any)["continue"] == nil {
		t.Fatalf("limit 3 with a selector: %v %s", names, page.raw)
	}
	next := page.body["metadata"].(map[string]any)["continue"].(string)
	if names := alice.expect(200, "GET", cms+"?limit=3&labelSelector=sel%3Dy&continue="+next, nil).names(); strings.Join(names, ",") != "x4" {
		t.Fatalf("second page: %v", names)
	}
}

// SelfSubjectAccessReview answers for the caller from the same
// authorizer: what kubectl auth can-i and the console ask.
func TestSelfSubjectAccessReview(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("registry-viewer", user("bob")))
	const path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
	review := func(verb, group, resource, sub string) map[string]any {
		return map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
			"spec": map[string]any{"resourceAttributes": map[string]any{"namespace": "team", "verb": verb, "group": group, "resource": resource, "subresource": sub}}}
	}
	for _, c := range []struct {
		who            client
		verb, res, sub string
		allowed        bool
	}{
		{alice, "delete", "imagestreamtags", "", true},
		{bob, "delete", "imagestreamtags", "", false},
		{bob, "list", "imagestreamtags", "", true},
		{bob, "get", "imagestreams", "layers", true},
		{bob, "update", "imagestreams", "layers", false},
	} {
		a := c.who.expect(201, "POST", path, review(c.verb, "image.openshift.io", c.res, c.sub))
		if got := a.body["status"].(map[string]any)["allowed"] == true; got != c.allowed {
			t.Errorf("%s may %s %s/%s: %v, want %v", c.who.token[:12], c.verb, c.res, c.sub, got, c.allowed)
		}
	}
	alice.expect(422, "POST", path, map[string]any{"spec": map[string]any{}})
	client{t: t, base: s.URL}.expect(401, "POST", path, review("get", "", "configmaps", ""))
}
