package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/store"
)

// What the console lists: tags sorted, filtered and paged in the store,
// with a total; pull counts; what projects hold and share; the audit log.

// sizedImage stores a manifest of a config and a layer of the sizes
// given, tagged tag in repo, and returns it.
func sizedImage(t *testing.T, s *store.Store, repo, tag string, cfgSize, layerSize int64) store.Manifest {
	t.Helper()
	ctx := context.Background()
	seed := repo + ":" + tag
	cfg, layer := digest.FromString(seed+"cfg"), digest.FromString(seed+"layer")
	must(t, s.LinkBlob(ctx, store.DefaultStorage, repo, cfg, cfgSize))
	must(t, s.LinkBlob(ctx, store.DefaultStorage, repo, layer, layerSize))
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"seed":%q}`, seed))
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: cfg, Size: cfgSize, Required: true}, {Digest: layer, Size: layerSize, Required: true}}}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{tag}))
	return m
}

func tagNames(p store.TagPage) []string {
	var out []string
	for _, r := range p.Rows {
		out = append(out, r.Repository+":"+r.Tag)
	}
	return out
}

func testTagListing(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	// Sizes chosen so that no two orders agree: name, size and push time.
	small := sizedImage(t, s, "p/b", "v1", 10, 100)
	time.Sleep(2 * time.Millisecond)
	big := sizedImage(t, s, "p/a", "v2", 10, 5000)
	time.Sleep(2 * time.Millisecond)
	mid := sizedImage(t, s, "p/a", "v1", 10, 1000)
	sizedImage(t, s, "q/c", "other", 1, 1)
	payload := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","seed":"multi"}`)
	index := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.index.v1+json", Payload: payload,
		References: []store.Reference{{Digest: mid.Digest, Manifest: true, Size: int64(len(mid.Payload)), Required: true}}}
	time.Sleep(2 * time.Millisecond)
	must(t, s.PutManifest(store.WithActor(ctx, "alice"), store.Only(store.DefaultStorage), "p/a", index, []string{"multi"}))

	list := func(q store.TagQuery) store.TagPage {
		t.Helper()
		p, err := s.ListTags(ctx, q)
		must(t, err)
		return p
	}
	all := list(store.TagQuery{Project: "p"})
	if got := tagNames(all); all.Total != 4 || !slices.Equal(got, []string{"p/a:multi", "p/a:v1", "p/a:v2", "p/b:v1"}) {
		t.Fatalf("tags of p by name = %v (total %d)", got, all.Total)
	}
	sizeOf := func(m store.Manifest) int64 {
		return int64(len(m.Payload)) + m.References[0].Size + m.References[1].Size
	}
	byTag := map[string]store.TagRow{}
	for _, r := range all.Rows {
		byTag[r.Repository+":"+r.Tag] = r
	}
	if r := byTag["p/a:v2"]; r.Size != sizeOf(big) || r.Digest != big.Digest || r.MediaType != big.MediaType || r.Pushed.IsZero() {
		t.Errorf("p/a:v2 = %+v, want size %d", r, sizeOf(big))
	}
	// An index counts its children whole: the child's manifest, config and layer.
	if r := byTag["p/a:multi"]; r.Size != int64(len(payload))+sizeOf(mid) || r.PushedBy != "alice" {
		t.Errorf("p/a:multi = %+v, want size %d pushed by alice", r, int64(len(payload))+sizeOf(mid))
	}
	for _, tc := range []struct {
		q    store.TagQuery
		want []string
	}{
		{store.TagQuery{Project: "p", Sort: store.TagsBySize}, []string{"p/b:v1", "p/a:v1", "p/a:multi", "p/a:v2"}},
		{store.TagQuery{Project: "p", Sort: store.TagsBySize, Descending: true}, []string{"p/a:v2", "p/a:multi", "p/a:v1", "p/b:v1"}},
		{store.TagQuery{Project: "p", Sort: store.TagsByPushed}, []string{"p/b:v1", "p/a:v2", "p/a:v1", "p/a:multi"}},
		{store.TagQuery{Project: "p", Sort: store.TagsByName, Descending: true}, []string{"p/b:v1", "p/a:v2", "p/a:v1", "p/a:multi"}},
		{store.TagQuery{Repository: "p/a", Search: "V"}, []string{"p/a:v1", "p/a:v2"}},
		{store.TagQuery{Search: "b:"}, []string{"p/b:v1"}},
		{store.TagQuery{Search: "%"}, nil}, // wildcards are literal
		{store.TagQuery{Search: "_"}, nil},
		{store.TagQuery{}, []string{"p/a:multi", "p/a:v1", "p/a:v2", "p/b:v1", "q/c:other"}},
	} {
		p := list(tc.q)
		if got := tagNames(p); !slices.Equal(got, tc.want) || p.Total != len(tc.want) {
			t.Errorf("ListTags(%+v) = %v (total %d), want %v", tc.q, got, p.Total, tc.want)
		}
	}
	// Pages of the whole order: the total on each, nothing twice or lost.
	var paged []string
	for off := 0; off < 10; off += 2 {
		p := list(store.TagQuery{Project: "p", Sort: store.TagsBySize, Descending: true, Offset: off, Limit: 2})
		if p.Total != 4 {
			t.Fatalf("page at %d: total %d", off, p.Total)
		}
		paged = append(paged, tagNames(p)...)
	}
	if !slices.Equal(paged, []string{"p/a:v2", "p/a:multi", "p/a:v1", "p/b:v1"}) {
		t.Errorf("pages by size = %v", paged)
	}
	if _, err := s.ListTags(ctx, store.TagQuery{Sort: "digest; DROP TABLE tags"}); err == nil {
		t.Error("ListTags accepted an unknown sort key")
	}

	// An index stored before its child (sparse, as an import may store
	// them) counts the child once it is here.
	child := Image(t, s, "p/late", "late child")
	ipayload := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","seed":"early"}`)
	early := store.Manifest{Digest: digest.FromBytes(ipayload), MediaType: "application/vnd.oci.image.index.v1+json", Payload: ipayload,
		References: []store.Reference{{Digest: child.Digest, Manifest: true, Size: int64(len(child.Payload))}}}
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/late", early, []string{"early"}))
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "p/late", child, nil))
	if p := list(store.TagQuery{Repository: "p/late"}); len(p.Rows) != 1 || p.Rows[0].Size != int64(len(ipayload))+int64(len(child.Payload))+10+20 {
		t.Errorf("an index stored before its child: %+v, want its size with the child's config and layer", p.Rows)
	}
	must(t, s.DeleteTag(ctx, "p/late", "early"))

	// Pull counts, from the pull log's batches, sort and show.
	log := s.NewPullLog(time.Hour)
	for range 3 {
		log.Pulled("p/b", small.Digest, "bob")
	}
	log.Pulled("p/a", mid.Digest, "carol")
	must(t, log.Flush(ctx))
	log.Pulled("p/b", small.Digest, "dave") // within the interval: counted, its audit row waits
	must(t, log.Flush(ctx))
	p := list(store.TagQuery{Project: "p", Sort: store.TagsByPulls, Descending: true})
	if got := tagNames(p); !slices.Equal(got, []string{"p/b:v1", "p/a:v1", "p/a:multi", "p/a:v2"}) {
		t.Errorf("tags by pulls = %v", got)
	}
	if r := p.Rows[0]; r.Pulls != 4 || r.LastPulled.IsZero() || p.Rows[2].Pulls != 0 || !p.Rows[2].LastPulled.IsZero() {
		t.Errorf("pull counts = %+v, %+v", r, p.Rows[2])
	}
	pulls, err := s.PullsOf(ctx, "p/a")
	must(t, err)
	if pulls[mid.Digest].Pulls != 1 || len(pulls) != 1 {
		t.Errorf("PullsOf(p/a) = %+v", pulls)
	}
	audit, err := s.AuditLog(ctx, store.AuditQuery{Action: store.AuditPull})
	must(t, err)
	got := map[string]string{}
	for _, e := range audit.Entries {
		got[e.Name+" "+e.Actor] = e.Detail
	}
	if audit.Total != 2 || got["p/b bob"] != "3 pulls" || got["p/a carol"] != "1 pull" {
		t.Errorf("pull audit rows = %+v", audit.Entries)
	}
}

func testProjectSummaries(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	m := sizedImage(t, s, "p/a", "v1", 10, 100)
	sizedImage(t, s, "p/b", "v1", 7, 50)
	// q holds p's image too (a mount and a tag): those bytes are shared.
	must(t, s.TagImage(ctx, "q/copy", "same", "p/a", m.Digest, store.ReasonTagged))
	sizedImage(t, s, "q/own", "x", 3, 30)
	sum, err := s.ProjectSummaries(ctx, nil)
	must(t, err)
	shared := int64(len(m.Payload)) + 10 + 100
	p, q := sum["p"], sum["q"]
	if p.Streams != 2 || p.Tags != 2 || p.Storage != shared+int64(len(fmt.Sprintf(`{"schemaVersion":2,"seed":%q}`, "p/b:v1")))+57 || p.Shared != shared || p.LastPush.IsZero() {
		t.Errorf("p = %+v, want 2 streams, 2 tags, %d shared", p, shared)
	}
	if q.Streams != 2 || q.Tags != 2 || q.Shared != shared || q.Storage <= shared {
		t.Errorf("q = %+v", q)
	}
	// Among p alone, nothing of p is shared: q is not among them.
	alone, err := s.ProjectSummaries(ctx, []string{"p"})
	must(t, err)
	if alone["p"].Shared != 0 || alone["p"].Storage != p.Storage {
		t.Errorf("p among p alone = %+v, want nothing shared", alone["p"])
	}
	// However many projects the caller sees (past the dialects' limits on
	// parameters).
	many := []string{"p", "q"}
	for i := range 70000 {
		many = append(many, fmt.Sprint("x", i))
	}
	both, err := s.ProjectSummaries(ctx, many)
	must(t, err)
	if both["p"].Shared != shared {
		t.Errorf("p among p and q = %+v", both["p"])
	}
	sums, err := s.RepositorySummaries(ctx, "q")
	must(t, err)
	if len(sums) != 2 || sums[0].Name != "q/copy" || sums[0].Tags != 1 || sums[0].Updated.IsZero() {
		t.Errorf("RepositorySummaries(q) = %+v", sums)
	}
}

func testAuditLog(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	alice := store.WithActor(ctx, "alice")
	must(t, s.CreateProject(alice, store.Project{Name: "team", Creator: "alice"}))
	cfg := digest.FromString("cfg")
	must(t, s.LinkBlob(alice, store.DefaultStorage, "team/app", cfg, 3))
	payload := []byte(`{"schemaVersion":2}`)
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: payload,
		References: []store.Reference{{Digest: cfg, Size: 3, Required: true}}}
	must(t, s.PutManifest(alice, store.Only(store.DefaultStorage), "team/app", m, []string{"v1"}))
	bob := store.WithActor(ctx, "bob")
	must(t, s.TagImage(bob, "team/app", "prod", "team/app", m.Digest, store.ReasonTagged))
	must(t, s.DeleteTag(bob, "team/app", "prod"))
	body := `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"viewers","namespace":"team"},` +
		`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"registry-viewer"},"subjects":[{"kind":"User","name":"carol"}]}`
	_, err := s.CreateObject(alice, store.Object{ObjectKey: store.BindingKey("team", "viewers"), UID: "u1", Body: []byte(body)})
	must(t, err)
	// A change Berth makes itself (no actor) is not an audit row.
	_, err = s.CreateObject(ctx, store.Object{ObjectKey: store.ObjectKey{Resource: "configmaps", Namespace: "team", Name: "quiet"}, UID: "u2", Body: []byte(`{}`)})
	must(t, err)
	must(t, s.CreateToken(alice, store.Token{ID: "t1", SecretHash: []byte("hash-1"), User: "alice", Description: "console", Expires: time.Now().Add(time.Hour)}))
	must(t, s.RevokeToken(alice, "t1"))

	page, err := s.AuditLog(ctx, store.AuditQuery{Project: "team"})
	must(t, err)
	var rows []string
	for _, e := range page.Entries {
		rows = append(rows, strings.Join([]string{e.Actor, e.Action, e.Resource, e.Name, e.Detail}, " "))
	}
	want := []string{
		"alice create rolebindings viewers role registry-viewer: User:carol",
		"bob untag tags team/app:prod ",
		"bob tag tags team/app:prod Tagged",
		"alice tag tags team/app:v1 Pushed",
		"alice push manifests team/app ",
		"alice create projects team ",
		// The creator's admin binding, made with the project.
		"alice create rolebindings admin role admin: User:alice",
	}
	if !slices.Equal(rows, want) || page.Total != len(want) {
		t.Fatalf("audit of team, newest first:\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if page.Entries[4].Digest != m.Digest {
		t.Errorf("push row digest = %s", page.Entries[4].Digest)
	}
	tokens, err := s.AuditLog(ctx, store.AuditQuery{Actor: "alice", Project: ""})
	must(t, err)
	if tokens.Entries[0].Action != store.AuditDelete || tokens.Entries[0].Resource != "tokens" || tokens.Entries[1].Detail == "" ||
		!strings.HasPrefix(tokens.Entries[1].Detail, "console, expires ") {
		t.Errorf("token rows = %+v", tokens.Entries[:2])
	}
	// Pages: newest first, older than the last row seen, same total.
	first, err := s.AuditLog(ctx, store.AuditQuery{Actor: "bob", Limit: 1})
	must(t, err)
	second, err := s.AuditLog(ctx, store.AuditQuery{Actor: "bob", Limit: 1, Before: first.Entries[0].ID})
	must(t, err)
	if first.Total != 2 || second.Total != 1 || first.Entries[0].Action != store.AuditUntag || second.Entries[0].Action != store.AuditTag {
		t.Errorf("bob's pages = %+v, %+v", first, second)
	}
	future, err := s.AuditLog(ctx, store.AuditQuery{Since: time.Now().Add(time.Hour)})
	must(t, err)
	if future.Total != 0 || len(future.Entries) != 0 {
		t.Errorf("rows since an hour from now: %+v", future)
	}
	n, err := s.PruneAudit(ctx, time.Now().Add(time.Minute))
	must(t, err)
	left, err := s.AuditLog(ctx, store.AuditQuery{})
	must(t, err)
	if n < int64(len(want)) || left.Total != 0 {
		t.Errorf("PruneAudit removed %d, %d left", n, left.Total)
	}
}
