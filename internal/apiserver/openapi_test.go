package apiserver_test

import (
	"strings"
	"testing"
)

// The OpenAPI v3 documents give every served kind a schema kubectl explain
// finds (by a GET operation carrying the kind), and no PATCH operation:
// with one, kubectl would switch to server-side field validation and
// strategic merge patches computed from these schemas.
func TestOpenAPIv3(t *testing.T) {
	s := newServer(t)
	anon := client{t: t, base: s.URL}
	index := anon.expect(200, "GET", "/openapi/v3", nil)
	paths := index.body["paths"].(map[string]any)
	for _, gv := range []string{"api/v1", "apis/image.openshift.io/v1", "apis/imageregistry.operator.openshift.io/v1", "apis/config.openshift.io/v1", "apis/rbac.authorization.k8s.io/v1"} {
		entry, ok := paths[gv].(map[string]any)
		if !ok {
			t.Fatalf("index lacks %s: %s", gv, index.raw)
		}
		url := entry["serverRelativeURL"].(string)
		if !strings.HasPrefix(url, "/openapi/v3/"+gv+"?hash=") {
			t.Errorf("%s at %q", gv, url)
		}
		doc := anon.expect(200, "GET", url, nil)
		if doc.str("openapi") != "3.0.0" {
			t.Errorf("%s: %.200s", gv, doc.raw)
		}
		for path, item := range doc.body["paths"].(map[string]any) {
			ops := item.(map[string]any)
			if len(ops) != 1 || ops["get"] == nil {
				t.Errorf("%s: path %s has operations other than get: %v", gv, path, ops)
			}
		}
	}
	doc := anon.expect(200, "GET", "/openapi/v3/apis/image.openshift.io/v1", nil)
	get := doc.body["paths"].(map[string]any)["/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams/{name}"].(map[string]any)["get"].(map[string]any)
	if gvk := get["x-kubernetes-group-version-kind"].(map[string]any); gvk["kind"] != "ImageStream" || gvk["group"] != "image.openshift.io" {
		t.Fatalf("imagestreams GET carries %v", gvk)
	}
	is := doc.body["components"].(map[string]any)["schemas"].(map[string]any)["io.openshift.image.v1.ImageStream"].(map[string]any)
	items := is["properties"].(map[string]any)["status"].(map[string]any)["properties"].(map[string]any)["tags"].(map[string]any)["items"].(map[string]any)["properties"].(map[string]any)["items"].(map[string]any)
	if items["type"] != "array" || items["items"].(map[string]any)["properties"].(map[string]any)["created"].(map[string]any)["format"] != "date-time" {
		t.Errorf("status.tags[].items schema: %v", items)
	}
	if !strings.Contains(items["description"].(string), "newest first") {
		t.Errorf("status.tags[].items has no description: %v", items)
	}
	meta := is["properties"].(map[string]any)["metadata"].(map[string]any)["properties"].(map[string]any)
	if meta["name"] == nil || meta["labels"].(map[string]any)["type"] != "object" {
		t.Errorf("metadata schema: %v", meta)
	}
	anon.expect(404, "GET", "/openapi/v3/apis/nothing/v1", nil)
}
