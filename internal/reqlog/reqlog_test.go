package reqlog

import (
	"context"
	"log/slog"
	"testing"
)

func attrs(e *Entry) map[string]slog.Value {
	m := map[string]slog.Value{}
	for _, a := range e.DebugAttrs() {
		m[a.Key] = a.Value
	}
	return m
}

func TestEntryRecordsDetailsAtDebugOnly(t *testing.T) {
	var none *Entry // a request the access log did not wrap
	none.SetUser("x")
	none.Decide(Allowed)
	StartStore(context.Background()).Stop()
	if none.User() != "-" || none.Debug() {
		t.Fatal("a nil Entry records something")
	}

	info := New(false)
	ctx := NewContext(context.Background(), info)
	FromContext(ctx).SetUser("alice")
	info.SetRoute("/v2/")
	info.NoteCheck(Check{"get", "imagestreams/layers", "p"})
	info.Decide(Denied)
	StartStore(ctx).Stop()
	if info.User() != "alice" || info.route != "" || info.checks != 0 || info.access != "" || info.storeCalls != 0 {
		t.Errorf("below debug, an Entry recorded details: %+v", info)
	}

	debug := New(true)
	ctx = NewContext(context.Background(), debug)
	debug.SetRoute("/v2/{project}/{image}/blobs/{digest}")
	debug.NoteCheck(Check{"update", "image.openshift.io/imagestreams/layers", "p"})
	debug.NoteCheck(Check{"get", "image.openshift.io/imagestreams/layers", "p"})
	debug.Decide(Denied)
	debug.NoteCheck(Check{"get", "projects", ""})
	debug.Decide(Allowed) // a check the handler made later does not undo the refusal
	StartStore(ctx).Stop()
	StartStore(ctx).Stop()
	got := attrs(debug)
	for k, want := range map[string]string{"user": "-", "verb": "get", "project": "p", "access": Denied, "allowed": "false", "checks": "3", "store_calls": "2"} {
		if got[k].String() != want {
			t.Errorf("%s = %v, want %s", k, got[k], want)
		}
	}
	debug.Decide(Hidden) // a later refusal does replace it (a 403 turned into a 404)
	if got := attrs(debug); got["access"].String() != Hidden || got["resource"].String() != "projects" {
		t.Errorf("after Hidden: %v", got)
	}
}
