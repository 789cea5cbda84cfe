package apiserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

func TestQuotasAreTheClusterAdminsAndCountLive(t *testing.T) {
	s := newServer(t)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice := login(t, s, "alice", "alice-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	const quotas = "/api/v1/namespaces/team/resourcequotas"
	const limits = "/api/v1/namespaces/team/limitranges"
	q := map[string]any{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": map[string]any{"name": "registry"},
		"spec": map[string]any{"hard": map[string]any{"openshift.io/imagestreams": "2", "berth.io/storage": "1Ki"}}}

	// The project's admin reads its quotas but does not set them.
	alice.expect(403, "POST", quotas, q)
	alice.expect(403, "POST", limits, map[string]any{"apiVersion": "v1", "kind": "LimitRange", "metadata": map[string]any{"name": "l"}})
	admin.expect(201, "POST", quotas, q)
	alice.expect(200, "GET", quotas+"/registry", nil)
	alice.expect(403, "DELETE", quotas+"/registry", nil)

	// What Berth would not enforce is refused, not stored.
	for body, want := range map[string]string{
		`{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"pods"},"spec":{"hard":{"pods":"10"}}}`:                                  `spec.hard[pods]: Unsupported value: "pods"`,
		`{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"neg"},"spec":{"hard":{"berth.io/storage":"-1"}}}`:                       `must be greater than or equal to 0`,
		`{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"frac"},"spec":{"hard":{"openshift.io/imagestreams":"1500m"}}}`:          `must be a whole number`,
		`{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"sc"},"spec":{"hard":{"berth.io/storage":"1"},"scopes":["BestEffort"]}}`: `spec.scopes: Forbidden`,
	} {
		if r := admin.expect(422, "POST", quotas, json.RawMessage(body)); !strings.Contains(r.str("message"), want) {
			t.Fatalf("%s: %s, want %q", body, r.raw, want)
		}
	}
	for body, want := range map[string]string{
		`{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"c"},"spec":{"limits":[{"type":"Container","max":{"cpu":"1"}}]}}`:               `spec.limits[0].type: Unsupported value: "Container"`,
		`{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"m"},"spec":{"limits":[{"type":"openshift.io/Image","min":{"storage":"1"}}]}}`:  `spec.limits[0].min: Forbidden`,
		`{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"r"},"spec":{"limits":[{"type":"openshift.io/Image","max":{"memory":"1Gi"}}]}}`: `spec.limits[0].max[memory]: Unsupported value`,
	} {
		if r := admin.expect(422, "POST", limits, json.RawMessage(body)); !strings.Contains(r.str("message"), want) {
			t.Fatalf("%s: %s, want %q", body, r.raw, want)
		}
	}
	admin.expect(201, "POST", limits, json.RawMessage(`{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"images"},"spec":{"limits":[{"type":"openshift.io/Image","max":{"storage":"100"}}]}}`))

	// status is what the project holds when it is read.
	ctx := context.Background()
	must(t, s.Store.LinkBlob(ctx, store.DefaultStorage, "team/a", digest.FromString("a"), 1000))
	got := alice.expect(200, "GET", quotas+"/registry", nil)
	status := got.body["status"].(map[string]any)
	used, hard := status["used"].(map[string]any), status["hard"].(map[string]any)
	if used["openshift.io/imagestreams"] != "1" || used["berth.io/storage"] != "1k" || hard["berth.io/storage"] != "1Ki" {
		t.Fatalf("status: %s", got.raw)
	}
	if list := alice.expect(200, "GET", quotas, nil); !strings.Contains(string(list.raw), `"used":{"berth.io/storage":"1k","openshift.io/imagestreams":"1"}`) {
		t.Fatalf("list: %s", list.raw)
	}

	// The API's own stream creation is bound by the quota too.
	alice.expect(201, "POST", "/apis/image.openshift.io/v1/namespaces/team/imagestreams",
		map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": map[string]any{"name": "b"}})
	refused := alice.expect(403, "POST", "/apis/image.openshift.io/v1/namespaces/team/imagestreams",
		map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": map[string]any{"name": "c"}})
	if !strings.Contains(string(refused.raw), "exceeded quota: registry, requested: openshift.io/imagestreams=1, used: openshift.io/imagestreams=2, limited: openshift.io/imagestreams=2") {
		t.Fatalf("refusal: %s", refused.raw)
	}
	alice.expect(404, "GET", "/apis/image.openshift.io/v1/namespaces/team/imagestreams/c", nil)
	err := s.Store.LinkBlob(ctx, store.DefaultStorage, "team/a", digest.FromString("b"), 25)
	if !errors.Is(err, errdefs.ErrQuotaExceeded) {
		t.Fatalf("1025 bytes in a quota of 1Ki: %v", err)
	}
	// The cluster admin raises it, and the push fits.
	if p := admin.raw("PATCH", quotas+"/registry", "application/merge-patch+json", []byte(`{"spec":{"hard":{"berth.io/storage":"2Ki"}}}`)); p.code != 200 {
		t.Fatalf("raise the quota: %d %s", p.code, p.raw)
	}
	must(t, s.Store.LinkBlob(ctx, store.DefaultStorage, "team/a", digest.FromString("b"), 25))
	// The answer to a write shows the usage too.
	if p := admin.raw("PATCH", quotas+"/registry", "application/merge-patch+json", []byte(`{"metadata":{"labels":{"a":"b"}}}`)); !strings.Contains(string(p.raw), `"used":{`) {
		t.Fatalf("patch answer: %s", p.raw)
	}

	// Deleting the project would lift its quota (a project requested
	// again starts without one): its admin may not, a cluster admin may.
	refused = alice.expect(403, "DELETE", projects+"/projects/team", nil)
	if !strings.Contains(refused.str("message"), `project "team" holds ResourceQuota "registry"`) {
		t.Fatalf("project deletion: %s", refused.raw)
	}
	alice.expect(403, "DELETE", "/api/v1/namespaces/team", nil)
	admin.expect(200, "DELETE", projects+"/projects/team", nil)
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("own"))
	alice.expect(200, "DELETE", projects+"/projects/own", nil) // no quota: hers to delete
}
