package registry_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/registry"
)

const ociIndex = "application/vnd.oci.image.index.v1+json"

// specError is the first entry of a spec error body.
type specError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Detail  map[string]string `json:"detail"`
}

func firstError(t *testing.T, r response) specError {
	t.Helper()
	var body struct{ Errors []specError }
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not a spec error body (%v): %d %s", err, r.status, r.body)
	}
	return body.Errors[0]
}

// assertNotStored fails when the manifest with payload can be read from
// repo, by digest or by any of tags.
func assertNotStored(t *testing.T, srv *httptest.Server, repo string, payload []byte, tags ...string) {
	t.Helper()
	for _, ref := range append([]string{digest.FromBytes(payload).String()}, tags...) {
		if g := do(t, srv, call{method: "GET", path: "/v2/" + repo + "/manifests/" + ref}); g.status != 404 {
			t.Fatalf("refused manifest readable as %s: %d %s", ref, g.status, g.body)
		}
	}
}

// withFields returns the manifest JSON object with extra members before its
// closing brace.
func withFields(manifest []byte, extra string) []byte {
	body := bytes.TrimSuffix(bytes.TrimSpace(manifest), []byte("}"))
	return append(append(body, ","+extra...), '}')
}

// TestManifestKeysAreStrict: a manifest whose keys a case-insensitive or
// last-one-wins parser would read differently than Berth is refused before
// anything is stored; keys Berth does not know stay allowed.
func TestManifestKeysAreStrict(t *testing.T) {
	srv := newServer(t, registry.Options{})
	img := pushImage(t, srv, "p/app", "strict")
	other := pushImage(t, srv, "p/app", "other") // pushed: only the keys are wrong
	layers := func(i testImage) string {
		return fmt.Sprintf(`[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]`, i.layer, i.layerSize)
	}
	// image is img's manifest with members for the layers.
	image := func(members string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},%s}`,
			ociManifest, img.config, img.configSize, members))
	}
	subject := fmt.Sprintf(`"subject":{"mediaType":%q,"digest":%q,"size":1,`, ociManifest, digest.FromString("subject"))
	tests := []struct {
		name    string
		payload []byte
		key     string // the message names it
	}{
		{"manifests in another case", withFields(img.manifest, `"manifests":[],"MANIFESTS":null`), `"MANIFESTS"`},
		{"layers in another case", image(`"layers":` + layers(img) + `,"LAYERS":` + layers(other)), `"LAYERS"`},
		{"layers twice", image(`"layers":` + layers(img) + `,"layers":` + layers(other)), `"layers"`},
		{"descriptor key in another case", withFields(img.manifest, subject+`"Digest":"`+digest.FromString("other").String()+`"}`), `"Digest"`},
		{"descriptor key in another Unicode case", withFields(img.manifest, `"subject":{"mediaType":"a/b","digest":"`+img.config.String()+`","\u017fize":1}`), `"ſize"`},
		{"descriptor key twice", image(`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + img.layer.String() +
			`","digest":"` + other.layer.String() + fmt.Sprintf(`","size":%d}]`, other.layerSize)), `"digest"`},
		{"annotation twice", withFields(img.manifest, `"annotations":{"a":"1","a":"2"}`), `"a"`},
		{"unknown key twice", withFields(img.manifest, `"org.example":1,"org.example":2`), `"org.example"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tag := strings.ReplaceAll(tc.name, " ", "-")
			r := putManifest(t, srv, "p/app", tag, tc.payload, ociManifest)
			if r.status != 400 {
				t.Fatalf("PUT = %d %s, want 400", r.status, r.body)
			}
			if e := firstError(t, r); e.Code != "MANIFEST_INVALID" || !strings.Contains(e.Message, tc.key) {
				t.Fatalf("error = %+v, want MANIFEST_INVALID naming %s", e, tc.key)
			}
			assertNotStored(t, srv, "p/app", tc.payload, tag)
		})
	}

	custom := withFields(img.manifest, `"org.example.custom":{"Layers":1,"x":[{"x":1,"X":2}]},"annotations":{"A":"1","a":"2"}`)
	custom = bytes.Replace(custom, []byte(`"size":`), []byte(`"org.example.note":"kept","size":`), 1)
	if r := putManifest(t, srv, "p/app", "custom", custom, ociManifest); r.status != 201 {
		t.Fatalf("manifest with unknown keys = %d %s, want 201", r.status, r.body)
	}
}

// TestDescriptorSizesMatchTheStore: a descriptor whose size differs from
// the blob or child manifest the repository holds is refused, sparse or
// not, with both sizes in the message and the digest in the detail.
func TestDescriptorSizesMatchTheStore(t *testing.T) {
	for _, sparse := range []bool{false, true} {
		t.Run(fmt.Sprint("sparse=", sparse), func(t *testing.T) {
			srv := newServer(t, registry.Options{AllowSparse: sparse})
			img := pushImage(t, srv, "p/app", "sizes")
			if r := putManifest(t, srv, "p/app", "v1", img.manifest, ociManifest); r.status != 201 {
				t.Fatalf("PUT image = %d %s", r.status, r.body)
			}
			// The config's size comes first in the manifest, the layer's last.
			resize := func(from, to int, last bool) []byte {
				old, repl := []byte(fmt.Sprintf(`"size":%d`, from)), []byte(fmt.Sprintf(`"size":%d`, to))
				i := bytes.Index(img.manifest, old)
				if last {
					i = bytes.LastIndex(img.manifest, old)
				}
				return slices.Concat(img.manifest[:i], repl, img.manifest[i+len(old):])
			}
			wrongConfig, wrongLayer := resize(img.configSize, 4700, false), resize(img.layerSize, img.layerSize+1, true)
			child := func(size int) []byte {
				return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
					ociIndex, ociManifest, img.digest, size))
			}
			tests := []struct {
				name, mediaType string
				payload         []byte
				digest          digest.Digest
				declared, held  int
			}{
				{"layer", ociManifest, wrongLayer, img.layer, img.layerSize + 1, img.layerSize},
				{"config", ociManifest, wrongConfig, img.config, 4700, img.configSize},
				{"child manifest", ociIndex, child(len(img.manifest) - 1), img.digest, len(img.manifest) - 1, len(img.manifest)},
			}
			for _, tc := range tests {
				r := putManifest(t, srv, "p/app", "wrong", tc.payload, tc.mediaType)
				if r.status != 400 {
					t.Fatalf("%s of another size = %d %s, want 400", tc.name, r.status, r.body)
				}
				e := firstError(t, r)
				numbers := regexp.MustCompile(`\b[0-9]+\b`).FindAllString(strings.ReplaceAll(e.Message, tc.digest.String(), ""), -1)
				if e.Code != "MANIFEST_BLOB_UNKNOWN" || e.Detail["digest"] != tc.digest.String() ||
					!slices.Contains(numbers, fmt.Sprint(tc.declared)) || !slices.Contains(numbers, fmt.Sprint(tc.held)) {
					t.Fatalf("%s of another size: error %+v, want MANIFEST_BLOB_UNKNOWN for %s naming %d and %d",
						tc.name, e, tc.digest, tc.declared, tc.held)
				}
				assertNotStored(t, srv, "p/app", tc.payload, "wrong")
			}
			if r := putManifest(t, srv, "p/app", "index", child(len(img.manifest)), ociIndex); r.status != 201 {
				t.Fatalf("index with the right child size = %d %s", r.status, r.body)
			}
			// A foreign layer nobody pushed is not checked, whatever its size.
			foreign := bytes.Replace(img.manifest, []byte(`"layers":[`), []byte(fmt.Sprintf(
				`"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":%q,"size":99,"urls":["https://example.com/l"]},`,
				digest.FromString("foreign"))), 1)
			if r := putManifest(t, srv, "p/app", "foreign", foreign, ociManifest); r.status != 201 {
				t.Fatalf("absent foreign layer = %d %s, want 201", r.status, r.body)
			}
		})
	}
}
