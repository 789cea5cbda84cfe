package registry

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	k8sjson "sigs.k8s.io/json"

	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/store"
)

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"p/app", "a/b/c", "../x", "a__b/c--d", "a/", "/a", "A/b", "a.b_c/d-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := names.Repository(s)
		if err != nil {
			return
		}
		// Whatever is accepted is safe as a path and a SQL key: two
		// lowercase components, no dot segments, no empty parts.
		parts := strings.Split(s, "/")
		if len(parts) != 2 || len(s) > names.MaxRepositoryLength {
			t.Fatalf("accepted %q", s)
		}
		for _, p := range parts {
			if p == "" || p == "." || p == ".." || strings.ToLower(p) != p {
				t.Fatalf("accepted %q", s)
			}
			for _, c := range p {
				if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyz0123456789._-", c) {
					t.Fatalf("accepted %q with %q", s, c)
				}
			}
		}
	})
}

// tagPattern is the distribution spec's tag grammar.
var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", "v1.0", "-x", "sha256:" + strings.Repeat("a", 64), "sha512:ab", "sha256:", ":", "a:b",
		"_", strings.Repeat("a", 128), strings.Repeat("a", 129), ".x", "x\n", "ü", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := parseReference(s)
		if err == nil && ref.String() != s {
			t.Fatalf("%q parsed to %q", s, ref.String())
		}
		switch {
		case err == nil && ref.tag != "":
			if !tagPattern.MatchString(s) || ref.digest != "" {
				t.Fatalf("accepted tag %q", s)
			}
		case err == nil:
			if ref.digest.Validate() != nil || !strings.Contains(s, ":") {
				t.Fatalf("accepted digest %q", s)
			}
		case tagPattern.MatchString(s):
			t.Fatalf("refused tag %q: %v", s, err)
		}
	})
}

// contentRangePattern is what a PATCH's Content-Range may be: inclusive
// start and end, as the spec has it, or with the RFC 9110 unit and
// complete length some clients send; optional whitespace around.
var contentRangePattern = regexp.MustCompile(`^[ \t]*(?:bytes )?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?[ \t]*$`)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-9", "bytes 0-9/10", "bytes 0-9/*", "5-", "-5", "9-0", "1-2-3", "99999999999999999999-1",
		"0-9223372036854775807", "0-9223372036854775808", "007-8", " 0-9\t", "+1-2", "1-+2", "\u00a00-9", "0-9/*/1"} {
		f.Add(s)
	}
	maxInt64 := new(big.Int).SetInt64(math.MaxInt64)
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := parseContentRange(s)
		// What the grammar alone says, with the numbers read as big
		// integers so that none can overflow here.
		wantOK, wantStart, wantEnd := false, new(big.Int), new(big.Int)
		if m := contentRangePattern.FindStringSubmatch(s); m != nil {
			wantStart.SetString(m[1], 10)
			wantEnd.SetString(m[2], 10)
			wantOK = wantEnd.Cmp(maxInt64) <= 0 && wantStart.Cmp(wantEnd) <= 0
		}
		if (err == nil) != wantOK {
			t.Fatalf("parseContentRange(%q) = %d, %d, %v; the grammar says ok=%v", s, start, end, err, wantOK)
		}
		if err != nil {
			return
		}
		if wantStart.Cmp(big.NewInt(start)) != 0 || wantEnd.Cmp(big.NewInt(end)) != 0 || start < 0 || end < start {
			t.Fatalf("%q parsed to %d-%d, the text says %s-%s", s, start, end, wantStart, wantEnd)
		}
		again, againEnd, err := parseContentRange(fmt.Sprintf("%d-%d", start, end))
		if err != nil || again != start || againEnd != end {
			t.Fatalf("%d-%d formatted and parsed again = %d-%d, %v", start, end, again, againEnd, err)
		}
	})
}

// Keys of the objects a manifest is read with, written out here apart from
// the parser's types.
var (
	manifestKeys   = []string{"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject", "annotations"}
	descriptorKeys = []string{"mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType"}
	platformKeys   = []string{"architecture", "os", "os.version", "os.features", "variant"}
)

func FuzzParseManifest(f *testing.F) {
	l := "sha256:" + strings.Repeat("a", 64)
	b := "sha256:" + strings.Repeat("b", 64)
	desc := func(d string, size int) string {
		return fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, d, size)
	}
	image := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + desc(l, 1)
	for _, s := range []string{
		image + `,"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"a/b","digest":"` + l + `","size":1}]}`,
		`{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + l + `","size":-1}}`,
		`{"schemaVersion":1}`, `null`, `[]`, `{"schemaVersion":2,"subject":{"digest":"x"}}`,
		// Keys that a case-insensitive, last-one-wins parser reads
		// differently.
		image + `,"manifests":[` + desc(b, 2) + `],"MANIFESTS":null}`,
		image + `,"layers":[` + desc(l, 1) + `],"LAYERS":[` + desc(b, 2) + `]}`,
		image + `,"layers":[` + desc(l, 1) + `],"layers":[` + desc(b, 2) + `]}`,
		image + `,"layers":[{"mediaType":"a/b","digest":"` + l + `","Digest":"` + b + `","size":1}]}`,
		image + `,"layers":[{"mediaType":"a/b","digest":"` + l + `","\u017fize":1}]}`,
		image + `,"layers":[],"annotations":{"k":"1","k":"2"}}`,
		image + `,"layers":[],"org.example":{"a":1,"a":2}}`,
		// Sizes a store would have to refuse: one blob declared with two
		// sizes, a size no blob has.
		image + `,"layers":[` + desc(l, 2) + `,` + desc(b, 9223372036854775807) + `]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc(l, 1) + `,` + desc(l, 0) + `]}`,
	} {
		f.Add([]byte(s), "")
	}
	f.Fuzz(func(t *testing.T, payload []byte, contentType string) {
		m, err := parseManifest(payload, contentType, digest.FromBytes(payload), false)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not a spec error", err)
			}
			return
		}
		isIndex, known := manifestKinds[m.MediaType]
		if !known {
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		// Every reader sees one meaning: no key twice in an object...
		var generic map[string]any
		problems, err := k8sjson.UnmarshalStrict(payload, &generic, k8sjson.DisallowDuplicateFields)
		if err != nil || len(problems) > 0 {
			t.Fatalf("accepted %q: strict decoding: %v %v", payload, err, problems)
		}
		// ... and none differing only in case from a key Berth reads.
		checkKeyCase(t, generic, manifestKeys)
		for _, k := range []string{"config", "subject"} {
			checkDescriptorKeys(t, generic[k])
		}
		for _, k := range []string{"layers", "manifests"} {
			list, _ := generic[k].([]any)
			for _, d := range list {
				checkDescriptorKeys(t, d)
			}
		}
		// The references are the descriptors a case-sensitive reader sees.
		type seenDescriptor struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		}
		var seen struct {
			Config    *seenDescriptor  `json:"config"`
			Layers    []seenDescriptor `json:"layers"`
			Manifests []seenDescriptor `json:"manifests"`
		}
		if err := k8sjson.UnmarshalCaseSensitivePreserveInts(payload, &seen); err != nil {
			t.Fatalf("accepted %q: %v", payload, err)
		}
		var want []store.Reference
		if isIndex {
			for _, d := range seen.Manifests {
				want = append(want, store.Reference{Digest: d.Digest, Manifest: true, Size: d.Size, Required: true})
			}
		} else {
			want = append(want, store.Reference{Digest: seen.Config.Digest, Size: seen.Config.Size, Required: true})
			for _, d := range seen.Layers {
				foreign := strings.Contains(d.MediaType, "nondistributable") || d.MediaType == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
				want = append(want, store.Reference{Digest: d.Digest, Size: d.Size, Required: !foreign})
			}
		}
		if !slices.Equal(m.References, want) {
			t.Fatalf("accepted %q with references %+v, want %+v", payload, m.References, want)
		}
		for _, r := range m.References {
			if r.Digest.Validate() != nil || r.Size < 0 {
				t.Fatalf("accepted reference %+v", r)
			}
		}
	})
}

// checkKeyCase fails when obj has a key that is not one of known but equals
// one of them ignoring case.
func checkKeyCase(t *testing.T, obj map[string]any, known []string) {
	t.Helper()
	for k := range obj {
		for _, name := range known {
			if k != name && strings.EqualFold(k, name) {
				t.Fatalf("accepted key %q beside %q", k, name)
			}
		}
	}
}

func checkDescriptorKeys(t *testing.T, v any) {
	t.Helper()
	d, ok := v.(map[string]any)
	if !ok {
		return
	}
	checkKeyCase(t, d, descriptorKeys)
	if p, ok := d["platform"].(map[string]any); ok {
		checkKeyCase(t, p, platformKeys)
	}
}
