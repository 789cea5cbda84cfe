package names

import (
	"strings"
	"testing"
)

func TestRepository(t *testing.T) {
	for name, ok := range map[string]bool{
		"team/app": true, "a.b/c__d": true, "a-b/c---d": true, "p/x_y.z": true,
		"app": false, "a/b/c": false, "Team/app": false, "team/-app": false, "team/app-": false,
		"team/a___b": false, "team/a..b": false, "/app": false, "team/": false,
		"t/" + strings.Repeat("a", 253): true, "t/" + strings.Repeat("a", 254): false,
	} {
		if err := Repository(name); (err == nil) != ok {
			t.Errorf("Repository(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestTag(t *testing.T) {
	for tag, ok := range map[string]bool{
		"latest": true, "v1.2-rc_3": true, "_x": true, "A": true, strings.Repeat("a", 128): true,
		"": false, ".x": false, "-x": false, "a:b": false, "a/b": false, strings.Repeat("a", 129): false,
	} {
		if Tag(tag) != ok {
			t.Errorf("Tag(%q) = %v, want %v", tag, !ok, ok)
		}
	}
}

func TestDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("a", 64)
	if d, err := Digest(good); err != nil || string(d) != good {
		t.Errorf("Digest(%q) = %s, %v", good, d, err)
	}
	for _, bad := range []string{"sha256:abc", "md5:" + strings.Repeat("a", 32), "sha256:" + strings.Repeat("A", 64), "latest"} {
		if _, err := Digest(bad); err == nil {
			t.Errorf("Digest(%q) accepted", bad)
		}
	}
}
