package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

func testStreamTagsAreTheTagHistory(t *testing.T, open Opener) {
	s := open(t)
	ctx := context.Background()
	var pushed []string
	for i := range 3 {
		m := Image(t, s, "team/app", fmt.Sprint(i))
		must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", m, []string{"v1"}))
		pushed = append(pushed, string(m.Digest))
	}
	other := Image(t, s, "team/app", "other")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", other, []string{"gone"}))
	must(t, s.DeleteTag(ctx, "team/app", "gone"))
	again := Image(t, s, "team/app", "again")
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", again, []string{"old"}))
	must(t, s.DeleteTag(ctx, "team/app", "old"))
	must(t, s.PutManifest(ctx, store.Only(store.DefaultStorage), "team/app", again, []string{"old"}))

	tags, err := s.StreamTags(ctx, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, st := range tags {
		for _, it := range st.Items {
			got[st.Tag] = append(got[st.Tag], string(it.Digest))
		}
	}
	want := map[string][]string{"v1": {pushed[2], pushed[1], pushed[0]}, "old": {string(again.Digest)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream tags = %v\nwant %v", got, want)
	}
	if tags[1].Items[0].Generation <= tags[1].Items[1].Generation {
		t.Fatalf("history is not newest first: %+v", tags[1].Items)
	}

	var repo store.Repository
	repo, err = s.RepositoryByName(ctx, "team/app")
	if err != nil || repo.Project != "team" || repo.Version == 0 {
		t.Fatalf("repository = %+v, %v", repo, err)
	}
	events, err := s.RepositoryEvents(ctx, "team", 0, 1000)
	if err != nil || len(events) == 0 || events[len(events)-1].Seq != repo.Version {
		t.Fatalf("repository events = %d (%v); the last should be at the repository's version %d", len(events), err, repo.Version)
	}
	if evs, _ := s.RepositoryEvents(ctx, "tea", 0, 1000); len(evs) != 0 {
		t.Fatalf("events of project tea include team's: %v", evs)
	}
	if _, err := s.RepositoryByName(ctx, "team/none"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing repository: %v", err)
	}
	if m, err := s.StoredManifestByDigest(ctx, again.Digest); err != nil || string(m.Payload) != string(again.Payload) || m.Repository != "team/app" {
		t.Fatalf("manifest payload: %v", err)
	}
}
