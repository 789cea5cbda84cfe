package apiserver_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/store"
)

// pushSized stores an image of one layer of size bytes as repo:tag.
func pushSized(t *testing.T, st *store.Store, repo, tag string, size int64) digest.Digest {
	t.Helper()
	ctx := context.Background()
	layer := digest.FromString(repo + tag)
	must(t, st.LinkBlob(ctx, store.DefaultStorage, repo, layer, size))
	payload := []byte(fmt.Sprintf(`{"schemaVersion":2,"layers":[{"digest":%q,"size":%d}]}`, layer, size))
	m := store.Manifest{Digest: digest.FromBytes(payload), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Payload: payload, References: []store.Reference{{Digest: layer, Size: size, Required: true}}}
	must(t, st.PutManifest(ctx, store.Only(store.DefaultStorage), repo, m, []string{tag}))
	return m.Digest
}

func remaining(a answer) int {
	meta, _ := a.body["metadata"].(map[string]any)
	n, ok := meta["remainingItemCount"].(float64)
	if !ok {
		return -1
	}
	return int(n)
}

// Lists are sorted, searched and paged by the server: every page is a
// window of the whole order, carries the count of what follows, and its
// continue token is bound to the sort it was given for.
func TestListsAreSortedAndPagedByTheServer(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("other"))
	// Sizes against names: t00 is the largest, t06 the smallest.
	for i := range 7 {
		pushSized(t, s.Store, "team/app", fmt.Sprintf("t%02d", i), int64(1000-100*i))
	}
	pushSized(t, s.Store, "team/lib", "v1", 5)
	pushSized(t, s.Store, "other/x", "v1", 5)

	const tags = "/apis/image.openshift.io/v1/namespaces/team/imagestreamtags"
	var seen []string
	next, pages := "", 0
	for {
		q := url.Values{"sortBy": {"size"}, "order": {"desc"}, "limit": {"3"}}
		if next != "" {
			q.Set("continue", next)
		}
		a := alice.expect(200, "GET", tags+"?"+q.Encode(), nil)
		seen = append(seen, a.names()...)
		pages++
		if want := 8 - len(seen); remaining(a) != want && !(want == 0 && remaining(a) == -1) {
			t.Fatalf("page %d: remainingItemCount %d, want %d: %s", pages, remaining(a), want, a.raw)
		}
		if next = a.str("metadata", "continue"); next == "" {
			break
		}
	}
	want := []string{"app:t00", "app:t01", "app:t02", "app:t03", "app:t04", "app:t05", "app:t06", "lib:v1"}
	if !slices.Equal(seen, want) || pages != 3 {
		t.Fatalf("tags by size, descending, in %d pages: %v, want %v", pages, seen, want)
	}
	first := alice.expect(200, "GET", tags+"?sortBy=size&order=desc&limit=1", nil)
	ann := first.body["items"].([]any)[0].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
	if size, _ := strconv.Atoi(ann["berth.io/image-size"].(string)); size <= 1000 || ann["berth.io/pulls"] != "0" {
		t.Errorf("annotations of the largest tag: %v", ann)
	}
	// A continue token goes with its sort only; unknown keys are refused.
	token := first.str("metadata", "continue")
	alice.expect(400, "GET", tags+"?sortBy=name&limit=1&continue="+url.QueryEscape(token), nil)
	alice.expect(400, "GET", tags+"?sortBy=digest", nil)
	alice.expect(400, "GET", tags+"?order=sideways", nil)
	alice.expect(400, "GET", tags+"?continue=garbage", nil)

	if a := alice.expect(200, "GET", tags+"?search=T0&sortBy=pushed&order=desc&limit=2", nil); !slices.Equal(a.names(), []string{"app:t06", "app:t05"}) || remaining(a) != 5 {
		t.Errorf("search T0 by push time, newest first: %v (%d more)", a.names(), remaining(a))
	}
	// A page by its offset, and one stream's tags.
	if a := alice.expect(200, "GET", tags+"?sortBy=size&order=desc&limit=2&offset=6", nil); !slices.Equal(a.names(), []string{"app:t06", "lib:v1"}) || remaining(a) != -1 {
		t.Errorf("page at offset 6: %v (%d more)", a.names(), remaining(a))
	}
	alice.expect(400, "GET", tags+"?offset=-1", nil)
	alice.expect(400, "GET", tags+"?offset=1&continue="+url.QueryEscape(token), nil)
	if a := alice.expect(200, "GET", tags+"?imageStream=lib", nil); !slices.Equal(a.names(), []string{"lib:v1"}) {
		t.Errorf("tags of stream lib: %v", a.names())
	}
	// Across projects, for who may list them all.
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	if a := admin.expect(200, "GET", "/apis/image.openshift.io/v1/imagestreamtags?search=v1", nil); !slices.Equal(a.names(), []string{"x:v1", "lib:v1"}) {
		t.Errorf("tags named v1 everywhere: %v", a.names())
	}
	alice.expect(403, "GET", "/apis/image.openshift.io/v1/imagestreamtags?limit=1", nil)
	bob.expect(403, "GET", tags+"?limit=1", nil)

	const streams = "/apis/image.openshift.io/v1/namespaces/team/imagestreams"
	if a := alice.expect(200, "GET", streams+"?sortBy=tags&order=desc&limit=1", nil); !slices.Equal(a.names(), []string{"app"}) || remaining(a) != 1 {
		t.Errorf("streams by tag count: %v (%d more)", a.names(), remaining(a))
	}
	if a := alice.expect(200, "GET", streams+"?search=LI", nil); !slices.Equal(a.names(), []string{"lib"}) || remaining(a) != -1 {
		t.Errorf("streams searched for LI: %v", a.names())
	}

	list := alice.expect(200, "GET", projects+"/projects?sortBy=tags&order=desc", nil)
	if !slices.Equal(list.names(), []string{"team", "other"}) {
		t.Fatalf("projects by tags: %v", list.names())
	}
	images := list.body["items"].([]any)[0].(map[string]any)["status"].(map[string]any)["images"].(map[string]any)
	if images["imageStreams"] != 2.0 || images["tags"] != 8.0 || images["storageBytes"].(float64) < 4000 || images["lastPush"] == "" {
		t.Errorf("status.images of team: %v", images)
	}
	if a := alice.expect(200, "GET", projects+"/projects?search=oth&limit=5", nil); !slices.Equal(a.names(), []string{"other"}) {
		t.Errorf("projects searched for oth: %v", a.names())
	}

	// Bob's project holds a layer of team's: shared for whoever sees
	// both, not for alice, who does not see bob's project.
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("bobs"))
	must(t, s.Store.LinkBlob(context.Background(), store.DefaultStorage, "bobs/copy", digest.FromString("team/app"+"t00"), 1000))
	sharedOf := func(c client) float64 {
		for _, it := range c.expect(200, "GET", projects+"/projects?search=team", nil).body["items"].([]any) {
			if it.(map[string]any)["metadata"].(map[string]any)["name"] == "team" {
				return it.(map[string]any)["status"].(map[string]any)["images"].(map[string]any)["sharedBytes"].(float64)
			}
		}
		t.Fatal("no project team")
		return 0
	}
	if got := sharedOf(alice); got != 0 {
		t.Errorf("team's shared bytes as alice = %v, want 0: bobs is not hers to see", got)
	}
	if got := sharedOf(admin); got != 1000 {
		t.Errorf("team's shared bytes as admin = %v, want 1000", got)
	}
}
