package apiserver_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/settings"
)

const (
	berthAPI     = "/apis/berth.io/v1"
	teamHooks    = berthAPI + "/namespaces/team/webhooks"
	clusterHooks = berthAPI + "/clusterwebhooks"
	// publicURL is a public address (no DNS needed) with a token in its
	// query, which no table or message may show.
	publicURL = "https://93.184.216.34/hooks/build?token=s3cr3t-token"
	tableJSON = "application/json;as=Table;v=v1;g=meta.k8s.io"
)

func hook(name string, spec map[string]any) map[string]any {
	return map[string]any{"apiVersion": "berth.io/v1", "kind": "Webhook",
		"metadata": map[string]any{"name": name}, "spec": spec}
}

func clusterHook(name string, spec map[string]any) map[string]any {
	return map[string]any{"apiVersion": "berth.io/v1", "kind": "ClusterWebhook",
		"metadata": map[string]any{"name": name}, "spec": spec}
}

func webhookServer(t *testing.T, current *settings.Holder) *apiservertest.Server {
	return apiservertest.New(t, apiservertest.Options{
		Users:    map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"},
		Settings: current,
	})
}

func specOf(a answer) map[string]any {
	spec, _ := a.body["spec"].(map[string]any)
	return spec
}

func statusOf(a answer) map[string]any {
	st, _ := a.body["status"].(map[string]any)
	return st
}

func generationOf(a answer) float64 {
	g, _ := a.body["metadata"].(map[string]any)["generation"].(float64)
	return g
}

// A project admin manages the Webhooks of their project through the whole
// life of one: create, get, list (and as a Table), update, patch, delete.
func TestWebhooksCRUDByProjectAdmin(t *testing.T) {
	s := webhookServer(t, nil)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))

	created := alice.expect(201, "POST", teamHooks, hook("ci", map[string]any{
		"url": publicURL, "events": []string{"push", "tag"}, "streams": []string{"app"},
		"secretRef": map[string]any{"name": "hook-key", "key": "key"},
	}))
	if created.str("kind") != "Webhook" || created.str("apiVersion") != "berth.io/v1" ||
		created.str("metadata", "namespace") != "team" || created.str("metadata", "uid") == "" || generationOf(created) != 1 {
		t.Fatalf("created: %s", created.raw)
	}
	got := alice.expect(200, "GET", teamHooks+"/ci", nil)
	if specOf(got)["url"] != publicURL || got.str("metadata", "uid") != created.str("metadata", "uid") {
		t.Fatalf("get: %s", got.raw)
	}
	list := alice.expect(200, "GET", teamHooks, nil)
	if names := list.names(); !slices.Equal(names, []string{"ci"}) || list.str("kind") != "WebhookList" {
		t.Fatalf("list: %s", list.raw)
	}
	// alice is admin of team, not cluster-wide: the list across projects
	// is not hers.
	alice.expect(403, "GET", berthAPI+"/webhooks", nil)

	table := alice.raw("GET", teamHooks, "", nil, "Accept", tableJSON)
	if table.str("kind") != "Table" || !strings.Contains(string(table.raw),
		`"cells":["ci","https://93.184.216.34/hooks/build","push,tag",0,0,`) {
		t.Fatalf("table: %s", table.raw)
	}
	if strings.Contains(string(table.raw), "s3cr3t") {
		t.Fatalf("the table shows the URL's query: %s", table.raw)
	}

	// An update of the spec counts a generation.
	upd := got.body
	specOf(got)["events"] = []string{"push"}
	updated := alice.expect(200, "PUT", teamHooks+"/ci", upd)
	if generationOf(updated) != 2 || len(specOf(updated)["events"].([]any)) != 1 {
		t.Fatalf("update: %s", updated.raw)
	}
	patched := alice.raw("PATCH", teamHooks+"/ci", "application/merge-patch+json", []byte(`{"spec":{"disabled":true,"events":null}}`))
	if patched.code != 200 || specOf(patched)["disabled"] != true || specOf(patched)["events"] != nil || generationOf(patched) != 3 {
		t.Fatalf("patch: %d %s", patched.code, patched.raw)
	}
	table = alice.raw("GET", teamHooks+"/ci", "", nil, "Accept", tableJSON)
	if !strings.Contains(string(table.raw), `"cells":["ci","https://93.184.216.34/hooks/build","all",0,0,`) {
		t.Fatalf("table of a webhook of every event: %s", table.raw)
	}

	alice.expect(200, "DELETE", teamHooks+"/ci", nil)
	alice.expect(404, "GET", teamHooks+"/ci", nil)
}

// Only a project's admins see its Webhooks: their URLs may carry tokens.
func TestWebhooksAreTheProjectAdmins(t *testing.T) {
	s := webhookServer(t, nil)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	carol := login(t, s, "carol", "carol-pw")
	dave := login(t, s, "dave", "dave-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", teamHooks, hook("ci", map[string]any{"url": publicURL}))
	rb := rbac + "/namespaces/team/rolebindings"
	alice.expect(201, "POST", rb, binding("registry-viewer", user("bob")))
	alice.expect(201, "POST", rb, binding("registry-admin", user("carol")))
	alice.expect(201, "POST", rb, binding("edit", user("dave")))

	// A viewer, and even an editor of the project, read nothing.
	for _, c := range []client{bob, dave} {
		c.expect(403, "GET", teamHooks+"/ci", nil)
		c.expect(403, "GET", teamHooks, nil)
		c.expect(403, "GET", teamHooks+"/ci/status", nil)
		c.expect(403, "POST", teamHooks, hook("mine", map[string]any{"url": publicURL}))
	}
	// A registry-admin manages them.
	carol.expect(200, "GET", teamHooks+"/ci", nil)
	carol.expect(201, "POST", teamHooks, hook("carols", map[string]any{"url": publicURL}))
	carol.expect(200, "GET", teamHooks+"/carols/status", nil)
	carol.expect(200, "DELETE", teamHooks+"/carols", nil)
	// …but signs with no Secret she cannot read herself (registry-admin
	// holds no right on Secrets); the project admin may.
	withSecret := hook("signed", map[string]any{"url": publicURL, "secretRef": map[string]any{"name": "hook-key", "key": "key"}})
	if a := carol.expect(403, "POST", teamHooks, withSecret); !strings.Contains(a.str("message"), "may not sign with the Secret team/hook-key") {
		t.Fatalf("registry-admin signing with a Secret: %s", a.raw)
	}
	alice.expect(201, "POST", teamHooks, withSecret)
	// Once the admin chose the Secret, the registry-admin may change the
	// rest of the webhook.
	signed := carol.expect(200, "GET", teamHooks+"/signed", nil)
	specOf(signed)["events"] = []string{"push"}
	carol.expect(200, "PUT", teamHooks+"/signed", signed.body)

	// Another project's Webhooks are refused to alice.
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("bobs"))
	bobsHooks := berthAPI + "/namespaces/bobs/webhooks"
	bob.expect(201, "POST", bobsHooks, hook("b", map[string]any{"url": publicURL}))
	alice.expect(403, "GET", bobsHooks+"/b", nil)
	alice.expect(403, "GET", bobsHooks, nil)
	alice.expect(403, "POST", bobsHooks, hook("a", map[string]any{"url": publicURL}))
	alice.expect(403, "DELETE", bobsHooks+"/b", nil)
}

// ClusterWebhooks, which see every project's events, are cluster admins'.
func TestClusterWebhooksNeedClusterAdmin(t *testing.T) {
	s := webhookServer(t, nil)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	body := clusterHook("audit", map[string]any{
		"url": publicURL, "streams": []string{"team/app"},
		"secretRef": map[string]any{"namespace": "team", "name": "hook-key", "key": "key"},
	})
	alice.expect(403, "POST", clusterHooks, body)
	created := admin.expect(201, "POST", clusterHooks, body)
	if created.str("kind") != "ClusterWebhook" || created.str("metadata", "namespace") != "" {
		t.Fatalf("created: %s", created.raw)
	}
	alice.expect(403, "GET", clusterHooks+"/audit", nil)
	alice.expect(403, "GET", clusterHooks, nil)
	alice.expect(403, "DELETE", clusterHooks+"/audit", nil)
	if names := admin.expect(200, "GET", clusterHooks, nil).names(); !slices.Equal(names, []string{"audit"}) {
		t.Fatalf("clusterwebhooks: %v", names)
	}
	// Its streams are project/stream, and its Secret names its project.
	for want, spec := range map[string]map[string]any{
		`spec.streams[0]: Invalid value: "app"`: {"url": publicURL, "streams": []string{"app"}},
		"spec.secretRef.namespace: Required value": {"url": publicURL,
			"secretRef": map[string]any{"name": "hook-key", "key": "key"}},
	} {
		if a := admin.expect(422, "POST", clusterHooks, clusterHook("bad", spec)); !strings.Contains(a.str("message"), want) {
			t.Errorf("want %q: %s", want, a.raw)
		}
	}
	// The kinds are not interchangeable.
	admin.expect(400, "POST", clusterHooks, hook("wrong", map[string]any{"url": publicURL}))
	admin.expect(400, "POST", teamHooks, clusterHook("wrong", map[string]any{"url": publicURL}))
	admin.expect(200, "DELETE", clusterHooks+"/audit", nil)
}

// Each rule of the spec is refused with a 422 naming its field, and no
// message repeats a URL's secret.
func TestWebhookValidation(t *testing.T) {
	s := webhookServer(t, nil)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	for want, spec := range map[string]map[string]any{
		"spec.url: Required value":                                           {},
		`spec.url: Unsupported value: "ftp"`:                                 {"url": "ftp://93.184.216.34/hook"},
		"spec.url: Invalid value: the URL has no scheme":                     {"url": "93.184.216.34/hook"},
		"spec.url: Invalid value: the URL has no host":                       {"url": "https:///hook"},
		"spec.url: Invalid value: the URL must not contain user information": {"url": "https://user:s3cr3t-token@93.184.216.34/hook"},
		"spec.url: Invalid value: not a URL":                                 {"url": "https://93.184.216.34/%zz?token=s3cr3t-token"},
		"spec.url: Too long: may not be more than 2048 bytes":                {"url": "https://93.184.216.34/" + strings.Repeat("x", 2048)},
		`spec.events[1]: Unsupported value: "foo": supported values: "push", "pull", "delete", "tag"`: {
			"url": publicURL, "events": []string{"push", "foo"}},
		`spec.events[1]: Duplicate value: "push"`:    {"url": publicURL, "events": []string{"push", "push"}},
		`spec.streams[0]: Invalid value: "App"`:      {"url": publicURL, "streams": []string{"App"}},
		`spec.streams[0]: Invalid value: "team/app"`: {"url": publicURL, "streams": []string{"team/app"}},
		"spec.secretRef.namespace: Forbidden": {"url": publicURL,
			"secretRef": map[string]any{"namespace": "other", "name": "hook-key", "key": "key"}},
		"spec.secretRef.key: Required value": {"url": publicURL,
			"secretRef": map[string]any{"name": "hook-key"}},
		"spec.secretRef.name: Required value": {"url": publicURL,
			"secretRef": map[string]any{"key": "key"}},
	} {
		a := alice.expect(422, "POST", teamHooks, hook("bad", spec))
		if msg := a.str("message"); !strings.Contains(msg, want) || a.str("reason") != "Invalid" {
			t.Errorf("want %q: %s", want, a.raw)
		}
		if strings.Contains(string(a.raw), "s3cr3t") {
			t.Errorf("the refusal repeats the URL's secret: %s", a.raw)
		}
	}
	// The Webhook's own namespace, named, is its own.
	alice.expect(201, "POST", teamHooks, hook("own", map[string]any{"url": publicURL,
		"secretRef": map[string]any{"namespace": "team", "name": "hook-key", "key": "key"}}))
	alice.expect(404, "GET", teamHooks+"/bad", nil)
}

// A destination in the cluster's network is refused until the settings
// in effect (the registry Config's spec.webhooks.allowedDestinations)
// allow it; only a changed URL is checked again.
func TestWebhookDestinations(t *testing.T) {
	current := settings.NewHolder(settings.Defaults())
	s := webhookServer(t, current)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	const local = "http://127.0.0.1:9/x"

	a := alice.expect(422, "POST", teamHooks, hook("local", map[string]any{"url": local}))
	if msg := a.str("message"); !strings.Contains(msg, "spec.url: Forbidden: ") || !strings.Contains(msg, "allowed destinations") {
		t.Fatalf("a loopback destination: %s", a.raw)
	}
	admin.expect(422, "POST", clusterHooks, clusterHook("local", map[string]any{"url": local}))
	// The same in a dry run: nothing is written either way.
	alice.expect(422, "POST", teamHooks+"?dryRun=All", hook("local", map[string]any{"url": local}))

	current.Store(&settings.Settings{Generation: 2, WebhookDestinations: []string{"127.0.0.1"}})
	created := alice.expect(201, "POST", teamHooks, hook("local", map[string]any{"url": local}))
	if specOf(created)["url"] != local {
		t.Fatalf("created: %s", created.raw)
	}
	admin.expect(201, "POST", clusterHooks, clusterHook("local", map[string]any{"url": local}))
	// An allowed address is not an allowed range.
	alice.expect(422, "POST", teamHooks, hook("other", map[string]any{"url": "http://10.0.0.1/x"}))

	// The list narrowed again: a write that keeps the URL goes through
	// (the dispatcher stops the deliveries), a new URL is checked.
	current.Store(&settings.Settings{Generation: 3})
	kept := alice.raw("PATCH", teamHooks+"/local", "application/merge-patch+json", []byte(`{"spec":{"events":["push"]}}`))
	if kept.code != 200 {
		t.Fatalf("a write keeping the URL: %d %s", kept.code, kept.raw)
	}
	moved := alice.raw("PATCH", teamHooks+"/local", "application/merge-patch+json", []byte(`{"spec":{"url":"http://127.0.0.1:10/x"}}`))
	if moved.code != 422 || !strings.Contains(moved.str("message"), "spec.url: Forbidden: ") {
		t.Fatalf("a write moving the URL: %d %s", moved.code, moved.raw)
	}
	// The server's status write is not refused for the URL.
	st := admin.raw("PATCH", teamHooks+"/local/status", "application/merge-patch+json", []byte(`{"status":{"consecutiveFailures":1}}`))
	if st.code != 200 || statusOf(st)["consecutiveFailures"] != float64(1) {
		t.Fatalf("status write: %d %s", st.code, st.raw)
	}
}

// The status is the server's: a create starts without one, writes to the
// object keep it, /status changes it alone, and a project admin only
// reads it.
func TestWebhookStatusIsTheServers(t *testing.T) {
	s := webhookServer(t, nil)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))

	body := hook("ci", map[string]any{"url": publicURL})
	body["status"] = map[string]any{"pending": 7, "consecutiveFailures": 3,
		"deliveries": []map[string]any{{"id": "berth-1", "type": "io.berth.image.pushed", "subject": "team/app:v1",
			"time": "2026-01-01T00:00:00Z", "attempt": 1, "result": "Delivered"}}}
	created := alice.expect(201, "POST", teamHooks, body)
	if st := statusOf(created); st["pending"] != float64(0) || st["consecutiveFailures"] != float64(0) || st["deliveries"] != nil {
		t.Fatalf("a create kept the caller's status: %s", created.raw)
	}

	set := admin.raw("PATCH", teamHooks+"/ci/status", "application/merge-patch+json",
		[]byte(`{"spec":{"disabled":true},"status":{"pending":2,"consecutiveFailures":4}}`))
	if set.code != 200 || statusOf(set)["pending"] != float64(2) || specOf(set)["disabled"] != nil || generationOf(set) != 1 {
		t.Fatalf("a status write: %d %s", set.code, set.raw)
	}
	alice.expect(403, "PATCH", teamHooks+"/ci/status", map[string]any{"status": map[string]any{"pending": 0}})
	alice.expect(403, "PUT", teamHooks+"/ci/status", set.body)
	if got := alice.expect(200, "GET", teamHooks+"/ci/status", nil); statusOf(got)["pending"] != float64(2) {
		t.Fatalf("get status: %s", got.raw)
	}
	over := alice.raw("PATCH", teamHooks+"/ci", "application/merge-patch+json", []byte(`{"spec":{"disabled":true},"status":{"pending":0,"consecutiveFailures":0}}`))
	if over.code != 200 || specOf(over)["disabled"] != true || statusOf(over)["pending"] != float64(2) || statusOf(over)["consecutiveFailures"] != float64(4) {
		t.Fatalf("a write to the object changed the status: %d %s", over.code, over.raw)
	}
	table := alice.raw("GET", teamHooks, "", nil, "Accept", tableJSON)
	if !strings.Contains(string(table.raw), `"cells":["ci","https://93.184.216.34/hooks/build","all",2,4,`) {
		t.Fatalf("table: %s", table.raw)
	}
}

// Discovery lists the berth.io group and its kinds, and OpenAPI has their
// schemas (kubectl api-resources, kubectl explain).
func TestWebhookDiscovery(t *testing.T) {
	s := webhookServer(t, nil)
	anon := client{t: t, base: s.URL}
	groups := anon.expect(200, "GET", "/apis", nil)
	found := false
	for _, g := range groups.body["groups"].([]any) {
		found = found || g.(map[string]any)["name"] == "berth.io"
	}
	if !found {
		t.Fatalf("/apis lacks berth.io: %s", groups.raw)
	}
	res := anon.expect(200, "GET", berthAPI, nil)
	want := map[string]bool{"auditevents": true, "webhooks": true, "webhooks/status": true, "clusterwebhooks": false, "clusterwebhooks/status": false, "proxycaches": false}
	for _, r := range res.body["resources"].([]any) {
		r := r.(map[string]any)
		name := r["name"].(string)
		namespaced, ok := want[name]
		if !ok || r["namespaced"] != namespaced {
			t.Errorf("resource %s namespaced %v: %s", name, r["namespaced"], res.raw)
		}
		delete(want, name)
	}
	if len(want) > 0 {
		t.Errorf("discovery lacks %v: %s", want, res.raw)
	}
	doc := anon.expect(200, "GET", "/openapi/v3/apis/berth.io/v1", nil)
	schemas := doc.body["components"].(map[string]any)["schemas"].(map[string]any)
	for _, kind := range []string{"Webhook", "ClusterWebhook"} {
		schema, ok := schemas["io.berth.v1."+kind].(map[string]any)
		if !ok {
			t.Fatalf("no schema for %s: %.300s", kind, doc.raw)
		}
		url := schema["properties"].(map[string]any)["spec"].(map[string]any)["properties"].(map[string]any)["url"].(map[string]any)
		if url["type"] != "string" || !strings.Contains(url["description"].(string), "allowedDestinations") {
			t.Errorf("%s spec.url schema: %v", kind, url)
		}
	}
	paths := doc.body["paths"].(map[string]any)
	if paths["/apis/berth.io/v1/namespaces/{namespace}/webhooks/{name}"] == nil || paths["/apis/berth.io/v1/clusterwebhooks/{name}"] == nil {
		t.Errorf("paths: %v", paths)
	}
}

// ProxyCaches are for cluster admins alone (a proxy cache makes the
// registry reach a host of the writer's choosing), and name a registry.
func TestProxyCachesAreClusterAdmins(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("hub"))
	pc := func(upstream, prefix string) map[string]any {
		return map[string]any{"apiVersion": "berth.io/v1", "kind": "ProxyCache", "metadata": map[string]any{"name": "hub"},
			"spec": map[string]any{"upstream": upstream, "prefix": prefix}}
	}
	const path = berthAPI + "/proxycaches"
	alice.expect(403, "POST", path, pc("docker.io", "library"))
	for _, bad := range []map[string]any{pc("", ""), pc("https://docker.io", ""), pc("docker.io/library", ""), pc("docker.io", "Lib")} {
		if a := admin.do("POST", path, bad); a.code != 422 {
			t.Errorf("POST %v = %d %s, want 422", bad, a.code, a.raw)
		}
	}
	admin.expect(201, "POST", path, pc("registry.example.com:5000", "mirror/lib"))
	alice.expect(403, "GET", path+"/hub", nil)
}
