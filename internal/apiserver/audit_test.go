package apiserver_test

import (
	"context"
	"encoding/csv"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/store"
)

// The audit log is a read-only kind: a project's rows for its admins,
// all rows for cluster administrators, filtered, paged and exported as
// CSV that a spreadsheet will not run.
func TestAuditEventsAreTheProjectAdminsAndCluster(t *testing.T) {
	s := newServer(t)
	alice := login(t, s, "alice", "alice-pw")
	bob := login(t, s, "bob", "bob-pw")
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("team"))
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("other"))
	alice.expect(201, "POST", rbac+"/namespaces/team/rolebindings", binding("registry-viewer", user("bob")))
	ctx := store.WithActor(context.Background(), "=HYPERLINK(\"x\")")
	pushSized(t, s.Store, "team/app", "v1", 10)
	if err := s.Store.DeleteTag(ctx, "team/app", "v1"); err != nil {
		t.Fatal(err)
	}

	const base = "/apis/berth.io/v1/namespaces/team/auditevents"
	all := alice.expect(200, "GET", base, nil)
	var rows []string
	for _, it := range all.body["items"].([]any) {
		m := it.(map[string]any)
		rows = append(rows, m["actor"].(string)+" "+m["action"].(string)+" "+m["resource"].(string)+" "+m["name"].(string))
		if m["metadata"].(map[string]any)["namespace"] != "team" {
			t.Errorf("row of another project: %v", m)
		}
	}
	want := []string{`=HYPERLINK("x") untag tags team/app:v1`, " tag tags team/app:v1", " push manifests team/app",
		"alice create rolebindings registry-viewer", "alice create projects team", "alice create rolebindings admin"}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Fatalf("team's audit rows:\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	bob.expect(403, "GET", base, nil) // a viewer does not read who did what
	alice.expect(403, "GET", "/apis/berth.io/v1/auditevents", nil)
	if a := admin.expect(200, "GET", "/apis/berth.io/v1/auditevents?actor=alice&action=create", nil); len(a.names()) != 6 { // 2 projects, 3 bindings, 1 login
		t.Errorf("alice's creations, cluster-wide: %s", a.raw)
	}
	// Pages: newest first, what remains counted, the token carries on.
	p1 := alice.expect(200, "GET", base+"?limit=4", nil)
	if len(p1.names()) != 4 || remaining(p1) != 2 {
		t.Fatalf("first page: %d rows, %d more", len(p1.names()), remaining(p1))
	}
	p2 := alice.expect(200, "GET", base+"?limit=4&continue="+url.QueryEscape(p1.str("metadata", "continue")), nil)
	if len(p2.names()) != 2 || remaining(p2) != -1 || p2.names()[1] != all.names()[5] {
		t.Errorf("second page: %v", p2.names())
	}
	alice.expect(400, "GET", base+"?since=yesterday", nil)
	alice.expect(400, "GET", base+"?continue=x", nil)
	if a := alice.expect(200, "GET", base+"?since=2999-01-01T00:00:00Z", nil); len(a.names()) != 0 {
		t.Errorf("rows from the future: %v", a.names())
	}

	alice.expect(400, "GET", base+"?limit=1000000", nil)

	// A project deleted and requested again by someone else: its new
	// admin sees none of what happened before; a cluster administrator
	// sees it all.
	alice.expect(201, "POST", projects+"/projectrequests", projectRequest("reused"))
	alice.expect(201, "POST", rbac+"/namespaces/reused/rolebindings", binding("registry-viewer", user("bob")))
	admin.expect(200, "DELETE", projects+"/projects/reused", nil)
	bob.expect(201, "POST", projects+"/projectrequests", projectRequest("reused"))
	for _, it := range bob.expect(200, "GET", "/apis/berth.io/v1/namespaces/reused/auditevents", nil).body["items"].([]any) {
		if actor := it.(map[string]any)["actor"]; actor != "bob" {
			t.Errorf("bob reads a former tenant's row of reused: %v", it)
		}
	}
	if n := len(admin.expect(200, "GET", "/apis/berth.io/v1/namespaces/reused/auditevents?actor=alice", nil).names()); n != 3 {
		t.Errorf("alice's rows of reused, as the admin: %d, want 3 (project, its admin binding, bob's binding)", n)
	}

	req, _ := http.NewRequest("GET", s.URL+base, nil)
	req.Header.Set("Authorization", "Bearer "+alice.token)
	req.Header.Set("Accept", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	records, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV export: %d %v %v", resp.StatusCode, resp.Header, err)
	}
	if len(records) != 7 || strings.Join(records[0], ",") != "time,actor,action,project,resource,name,digest,detail" {
		t.Fatalf("CSV: %v", records)
	}
	if records[1][1] != `'=HYPERLINK("x")` {
		t.Errorf("a formula-like actor is not neutralized: %q", records[1][1])
	}
}
