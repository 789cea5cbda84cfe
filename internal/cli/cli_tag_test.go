package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/store"
)

func pushTo(t *testing.T, st *store.Store, repo, tag, seed string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	layer := digest.FromString(seed)
	if err := st.LinkBlob(ctx, store.DefaultStorage, repo, layer, 1); err != nil {
		t.Fatal(err)
	}
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"layers":[{"digest":%q}]}`, layer))
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Payload: payload, References: []store.Reference{{Digest: layer, Size: 1, Required: true}}}
	if err := st.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{tag}); err != nil {
		t.Fatal(err)
	}
	return m.Digest
}

func TestTagAndRollback(t *testing.T) {
	e := newBerthEnv(t)
	e.login("bob", "bob-pw")
	e.ok("bob", "new-project", "team")
	st := e.srv.Store
	one := pushTo(t, st, "team/app", "latest", "one")
	two := pushTo(t, st, "team/app", "latest", "two")
	head := func(tag string) digest.Digest {
		t.Helper()
		m, err := st.Manifest(context.Background(), "team/app", tag)
		if err != nil {
			t.Fatalf("team/app:%s: %v", tag, err)
		}
		return m.Digest
	}

	// A tag takes the source's image now; several destinations at once.
	if out := e.ok("bob", "tag", "app:latest", "app:prod", "team/app:v2"); out != "Tag team/app:prod set to team/app@"+string(two)+".\nTag team/app:v2 set to team/app@"+string(two)+".\n" {
		t.Fatalf("tag = %q", out)
	}
	e.ok("bob", "tag", "--alias", "app:latest", "app:edge")
	e.ok("bob", "tag", "app@"+string(one), "app:v1")
	three := pushTo(t, st, "team/app", "latest", "three")
	if head("prod") != two || head("edge") != three || head("v1") != one {
		t.Fatalf("prod %s (want %s), edge %s (want %s, it follows latest), v1 %s (want %s)", head("prod"), two, head("edge"), three, head("v1"), one)
	}

	// Rollback: to the previous image, then to an entry, then by digest.
	if out := e.ok("bob", "rollback", "app:latest"); out != "Rolled back team/app:latest to "+string(two)+".\n" {
		t.Fatalf("rollback = %q", out)
	}
	if head("latest") != two || head("edge") != two {
		t.Fatalf("after rollback latest %s, edge %s; want %s", head("latest"), head("edge"), two)
	}
	e.ok("bob", "rollback", "team/app:latest", "--to", "3") // entries: two, three, two, one
	if head("latest") != one {
		t.Fatalf("after --to 3 latest = %s, want %s", head("latest"), one)
	}
	e.ok("bob", "rollback", "app:latest", "--to", string(three))
	if head("latest") != three {
		t.Fatalf("after --to digest latest = %s, want %s", head("latest"), three)
	}
	h, err := st.TagHistory(context.Background(), "team/app", "latest")
	if err != nil || len(h) != 6 || h[0].Reason != store.ReasonRollback || h[0].Actor != "bob" {
		t.Fatalf("history: %+v %v", h, err)
	}
	e.fails("bob", "not in the tag's history", "rollback", "app:latest", "--to", string(digest.FromString("x")))
	e.fails("bob", "has 6 entries (0 to 5), not 9", "rollback", "app:latest", "--to", "9")
	e.fails("bob", "no history", "rollback", "app:none")
	e.fails("bob", "is not [PROJECT/]STREAM:TAG", "tag", "app", "app:x")
	e.fails("bob", "not found", "tag", "app:absent", "app:x")
	e.fails("bob", "importing from other registries is not available", "tag", "--source=docker", "docker.io/library/busybox:1", "app:x")

	// Delete.
	if out := e.ok("bob", "tag", "-d", "app:prod"); out != "Deleted tag team/app:prod.\n" {
		t.Fatalf("tag -d = %q", out)
	}
	if _, err := st.Manifest(context.Background(), "team/app", "prod"); err == nil {
		t.Fatal("prod is still there")
	}
	// Another user may not tag into team.
	e.login("alice", "alice-pw")
	out := e.fails("alice", "forbidden", "tag", "team/app:latest", "team/app:mine")
	if !strings.Contains(out, "imagestreamtags") {
		t.Errorf("refusal names no resource: %s", out)
	}
	e.fails("alice", "names no project", "tag", "team/app:latest", "app:mine")
}
