package registry

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"p/app", "a/b/c", "../x", "a__b/c--d", "a/", "/a", "A/b", "a.b_c/d-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := parseName(s)
		if err != nil {
			return
		}
		// Whatever is accepted is safe as a path and a SQL key: two
		// lowercase components, no dot segments, no empty parts.
		parts := strings.Split(s, "/")
		if len(parts) != 2 || len(s) > maxNameLength {
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

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", "v1.0", "-x", "sha256:" + strings.Repeat("a", 64), "sha512:ab", "sha256:", ":", "a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := parseReference(s)
		if err != nil {
			return
		}
		if ref.tag != "" {
			if !validTag(ref.tag) || strings.ContainsAny(ref.tag, "/:") {
				t.Fatalf("accepted tag %q", s)
			}
			return
		}
		if err := ref.digest.Validate(); err != nil {
			t.Fatalf("accepted digest %q: %v", s, err)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-9", "bytes 0-9/10", "5-", "-5", "9-0", "1-2-3", "99999999999999999999-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := parseContentRange(s)
		if err == nil && (start < 0 || end < start) {
			t.Fatalf("%q parsed to %d-%d", s, start, end)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	l := "sha256:" + strings.Repeat("a", 64)
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"` + l + `","size":1},"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"a/b","digest":"` + l + `","size":1}]}`,
		`{"schemaVersion":2,"config":{"mediaType":"a","digest":"` + l + `","size":-1}}`,
		`{"schemaVersion":1}`, `null`, `[]`, `{"schemaVersion":2,"subject":{"digest":"x"}}`,
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
		if _, known := manifestKinds[m.MediaType]; !known {
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		for _, r := range m.References {
			if r.Digest.Validate() != nil {
				t.Fatalf("accepted reference %q", r.Digest)
			}
		}
	})
}
