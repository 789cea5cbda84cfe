package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/auth"
)

// A self-provisioner is refused a name that is taken by a project they
// cannot see, and a name reserved for the system. The two refusals are the
// same answer, so a refusal does not say which of the two it is. (That a
// name is not free is inherent: a free one must be creatable.)
func TestTakenAndReservedNamesAnswerAlike(t *testing.T) {
	f := newAccessFixture(t)
	secret, _, err := (&auth.Issuer{Tokens: f.meta}).Issue(context.Background(), "newbie", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.tokens["newbie"] = "Bearer " + secret
	const hidden = "elsewhere" // other's project: newbie cannot see it
	projectRequest := func(name string) []byte {
		b, _ := json.Marshal(map[string]any{"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": map[string]any{"name": name}})
		return b
	}
	namespace := func(name string) []byte {
		b, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}})
		return b
	}
	manifest := f.manifest(digest.FromString("config"), 6, digest.FromString("layer"), 5)
	requests := []struct {
		what   string
		method string
		path   func(name string) string
		body   func(name string) []byte
		header []string
	}{
		{"project request", "POST", func(string) string { return "/apis/project.openshift.io/v1/projectrequests" }, projectRequest, []string{"Content-Type", "application/json"}},
		{"namespace", "POST", func(string) string { return "/api/v1/namespaces" }, namespace, []string{"Content-Type", "application/json"}},
		{"push start", "POST", func(n string) string { return "/v2/" + n + "/newrepo/blobs/uploads/" }, func(string) []byte { return nil }, nil},
		{"monolithic push", "POST", func(n string) string {
			return "/v2/" + n + "/newrepo/blobs/uploads/?digest=" + digest.FromString("x").String()
		}, func(string) []byte { return []byte("x") }, nil},
		{"manifest push", "PUT", func(n string) string { return "/v2/" + n + "/newrepo/manifests/v1" }, func(string) []byte { return manifest },
			[]string{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}},
	}
	// The answers differ by the name they echo only.
	normalized := func(r reply, name string) []byte { return bytes.ReplaceAll(r.body, []byte(name), []byte("NAME")) }
	for _, rq := range requests {
		taken := f.do("newbie", rq.method, rq.path(hidden), rq.body(hidden), rq.header...)
		if taken.status < 400 {
			t.Errorf("%s of %s (taken, hidden) = %d %s, want a refusal", rq.what, hidden, taken.status, taken.body)
			continue
		}
		for _, reserved := range []string{"openshift-mine", "kube-x", "default", "openshift"} {
			r := f.do("newbie", rq.method, rq.path(reserved), rq.body(reserved), rq.header...)
			if r.status != taken.status || !bytes.Equal(normalized(r, reserved), normalized(taken, hidden)) ||
				r.header.Get("Content-Type") != taken.header.Get("Content-Type") {
				t.Errorf("%s: taken %s answers %d %s; reserved %s answers %d %s", rq.what,
					hidden, taken.status, taken.body, reserved, r.status, r.body)
			}
		}
	}
	// What is inherent: a free name is granted, and a taken one the caller
	// can see says so, as Kubernetes does.
	if r := f.do("newbie", "POST", "/apis/project.openshift.io/v1/projectrequests", projectRequest("mine"), "Content-Type", "application/json"); r.status != http.StatusCreated {
		t.Fatalf("request for a free name = %d %s", r.status, r.body)
	}
	if r := f.do("newbie", "POST", "/apis/project.openshift.io/v1/projectrequests", projectRequest("mine"), "Content-Type", "application/json"); r.status != http.StatusConflict {
		t.Errorf("request for one's own project = %d %s, want 409", r.status, r.body)
	}
}
