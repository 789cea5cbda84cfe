package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// ConfigMap is a ConfigMap object with body, labelled app=name.
func ConfigMap(ns, name, body string) store.Object {
	return store.Object{
		ObjectKey: store.ObjectKey{Resource: "configmaps", Namespace: ns, Name: name},
		UID:       "uid-" + name, Labels: map[string]string{"app": name}, Body: []byte(body),
	}
}

func testObjectLifecycle(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	created, err := s.CreateObject(ctx, ConfigMap("team", "a", `{"data":{"k":"1"}}`))
	if err != nil || created.ResourceVersion == 0 || created.Created.IsZero() {
		t.Fatalf("create = %+v, %v", created, err)
	}
	if _, err := s.CreateObject(ctx, ConfigMap("team", "a", `{}`)); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second create = %v, want AlreadyExists", err)
	}
	got, err := s.GetObject(ctx, created.ObjectKey)
	if err != nil || string(got.Body) != `{"data":{"k":"1"}}` || got.ResourceVersion != created.ResourceVersion ||
		got.Labels["app"] != "a" || got.UID != "uid-a" {
		t.Fatalf("get = %+v, %v", got, err)
	}

	// Optimistic concurrency: a write at a stale version is a conflict
	// and changes nothing.
	upd := ConfigMap("team", "a", `{"data":{"k":"2"}}`)
	updated, err := s.UpdateObject(ctx, upd, created.ResourceVersion)
	if err != nil || updated.ResourceVersion <= created.ResourceVersion || updated.UID != "uid-a" {
		t.Fatalf("update = %+v, %v", updated, err)
	}
	if _, err := s.UpdateObject(ctx, ConfigMap("team", "a", `{"data":{"k":"3"}}`), created.ResourceVersion); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("stale update = %v, want Conflict", err)
	}
	// A write of the same content is a no-op: same resourceVersion.
	same, err := s.UpdateObject(ctx, upd, 0)
	if err != nil || same.ResourceVersion != updated.ResourceVersion {
		t.Fatalf("no-op update = %+v, %v; want resourceVersion %d", same, err, updated.ResourceVersion)
	}
	if _, err := s.UpdateObject(ctx, ConfigMap("team", "zz", `{}`), 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("update of a missing object = %v", err)
	}

	if _, err := s.DeleteObject(ctx, created.ObjectKey, 0, "another-uid"); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("delete with another uid = %v, want Conflict", err)
	}
	if _, err := s.UpdateObject(ctx, store.Object{ObjectKey: created.ObjectKey, UID: "another-uid", Body: []byte(`{}`)}, 0); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("update of another uid = %v, want Conflict", err)
	}
	if _, err := s.DeleteObject(ctx, created.ObjectKey, created.ResourceVersion, ""); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("stale delete = %v, want Conflict", err)
	}
	deleted, err := s.DeleteObject(ctx, created.ObjectKey, updated.ResourceVersion, "uid-a")
	if err != nil || deleted.ResourceVersion <= updated.ResourceVersion || string(deleted.Body) != `{"data":{"k":"2"}}` {
		t.Fatalf("delete = %+v, %v", deleted, err)
	}
	if _, err := s.GetObject(ctx, created.ObjectKey); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("get after delete = %v", err)
	}

	// The events replay the whole life, each with the object as it was.
	events, err := s.ObjectEvents(ctx, "/configmaps", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range events {
		types = append(types, fmt.Sprintf("%s@%d %s", e.Type, e.Object.ResourceVersion, e.Object.Body))
	}
	want := []string{
		fmt.Sprintf(`ADDED@%d {"data":{"k":"1"}}`, created.ResourceVersion),
		fmt.Sprintf(`MODIFIED@%d {"data":{"k":"2"}}`, updated.ResourceVersion),
		fmt.Sprintf(`DELETED@%d {"data":{"k":"2"}}`, deleted.ResourceVersion),
	}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("events = %v\nwant %v", types, want)
	}
	if later, err := s.ObjectEvents(ctx, "/configmaps", updated.ResourceVersion, 100); err != nil || len(later) != 1 || later[0].Type != "DELETED" {
		t.Fatalf("events after the update = %+v, %v", later, err)
	}
}

func testListObjectsPagesAndScopes(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "a", "b", "c")
	ctx := context.Background()
	for _, k := range [][2]string{{"b", "x"}, {"a", "y"}, {"a", "x"}, {"c", "z"}} {
		if _, err := s.CreateObject(ctx, ConfigMap(k[0], k[1], `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateObject(ctx, store.Object{ObjectKey: store.ObjectKey{Resource: "secrets", Namespace: "a", Name: "x"}, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	names := func(objs []store.Object) string {
		var out []string
		for _, o := range objs {
			out = append(out, o.Namespace+"/"+o.Name)
		}
		return fmt.Sprint(out)
	}
	all, more, rv, err := s.ListObjects(ctx, store.ObjectQuery{Resource: "configmaps"})
	if err != nil || more || names(all) != "[a/x a/y b/x c/z]" {
		t.Fatalf("list all = %s more=%v, %v", names(all), more, err)
	}
	if latest, _ := s.LatestResourceVersion(ctx); rv != latest {
		t.Fatalf("list resourceVersion %d, latest %d", rv, latest)
	}
	inA, _, _, _ := s.ListObjects(ctx, store.ObjectQuery{Resource: "configmaps", Namespace: "a"})
	if names(inA) != "[a/x a/y]" {
		t.Fatalf("list in a = %s", names(inA))
	}
	var pages []string
	var cur store.ObjectCursor
	for range 10 {
		page, more, _, err := s.ListObjects(ctx, store.ObjectQuery{Resource: "configmaps", After: cur, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, names(page))
		if !more {
			break
		}
		cur = store.ObjectCursor{Namespace: page[len(page)-1].Namespace, Name: page[len(page)-1].Name}
	}
	if fmt.Sprint(pages) != "[[a/x a/y b/x] [c/z]]" {
		t.Fatalf("pages = %v", pages)
	}
}

// Two writers at the same resourceVersion: exactly one wins.
func testConcurrentUpdatesConflict(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	o, err := s.CreateObject(ctx, ConfigMap("team", "a", `{"n":0}`))
	if err != nil {
		t.Fatal(err)
	}
	const writers = 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			_, err := s.UpdateObject(ctx, ConfigMap("team", "a", fmt.Sprintf(`{"n":%d}`, i+1)), o.ResourceVersion)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var won, conflicted int
	for err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, errdefs.ErrConflict):
			conflicted++
		default:
			t.Fatal(err)
		}
	}
	if won != 1 || conflicted != writers-1 {
		t.Fatalf("%d writes won and %d conflicted, want 1 and %d", won, conflicted, writers-1)
	}
}

func testWatchHistoryIsBounded(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	var last store.Object
	for i := range 10 {
		o, err := s.CreateObject(ctx, ConfigMap("team", fmt.Sprint(i), `{}`))
		if err != nil {
			t.Fatal(err)
		}
		last = o
	}
	if _, err := s.PruneEvents(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ObjectEvents(ctx, "/configmaps", 1, 100); !errors.Is(err, errdefs.ErrGone) {
		t.Fatalf("watch from before the kept history = %v, want Gone", err)
	}
	events, err := s.ObjectEvents(ctx, "/configmaps", last.ResourceVersion-3, 100)
	if err != nil || len(events) != 3 {
		t.Fatalf("watch within the kept history = %d events, %v", len(events), err)
	}
}

func testChangedWakesWatchers(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("woken before any change")
	default:
	}
	if _, err := s.CreateObject(ctx, ConfigMap("team", "a", `{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("a commit did not wake the watcher")
	}
}

// Deleting a project deletes its objects and forgets their history, so a
// project re-created under the name cannot read or replay them.
func testDeleteProjectForgetsItsObjects(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "p2")
	ctx := context.Background()
	must(t, s.CreateProject(ctx, store.Project{Name: "p1", Creator: "alice"}))
	secret := store.Object{ObjectKey: store.ObjectKey{Resource: "secrets", Namespace: "p1", Name: "db"},
		Body: []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"p1","labels":{"a":"b"}},"data":{"password":"aHVudGVyMg=="}}`)}
	if _, err := s.CreateObject(ctx, secret); err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateObject(ctx, ConfigMap("p2", "keep", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.DeleteProject(ctx, "p1"))
	if _, err := s.GetObject(ctx, secret.ObjectKey); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("the secret outlived its project: %v", err)
	}
	if _, err := s.GetObject(ctx, other.ObjectKey); err != nil {
		t.Fatalf("another project's object went too: %v", err)
	}
	events, err := s.ObjectEvents(ctx, "/secrets", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Type != "DELETED" || events[0].Object.Name != "db" ||
		strings.Contains(string(events[0].Object.Body), "aHVudGVyMg") || events[0].Object.Labels["a"] != "b" {
		t.Fatalf("history after the project's deletion = %+v", events)
	}
}

// An object is created only in a project that exists when it is written:
// a project deleted after a handler looked must not keep a Secret or a
// role binding for the next project of that name.
func testObjectsNeedTheirProject(t *testing.T, open Opener) {
	s := WithProjects(t, open(t), "team")
	ctx := context.Background()
	must(t, s.DeleteProject(ctx, "team"))
	_, err := s.CreateObject(ctx, ConfigMap("team", "late", `{}`))
	if _, ok := errors.AsType[*store.MissingNamespaceError](err); !ok || !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("create in a deleted project: %v", err)
	}
	if err := s.AddBinding(ctx, "team", "admin", "User", "bob"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("grant in a deleted project: %v", err)
	}
	must(t, s.CreateProject(ctx, store.Project{Name: "team", Creator: "alice"}))
	if b, _ := s.Bindings(ctx, "team"); len(b) != 1 || b[0].Users[0] != "alice" {
		t.Fatalf("the new team's bindings: %+v", b)
	}
}
