package apiserver

import (
	"encoding/base64"
	"encoding/csv"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// The audit log as a read-only kind, berth.io/v1 AuditEvent: a project's
// rows for who may list auditevents in it (its admins), every row for
// cluster administrators. Newest first; filtered by actor, action and
// time (since, until: RFC 3339); paged by limit and continue; as CSV with
// Accept: text/csv (every row selected, up to maxAuditExport).

var resAuditEvents = auth.Resource{Group: groupBerth, Resource: "auditevents"}

// maxAuditExport bounds a CSV export; a longer one is cut, and says so in
// its last line.
const maxAuditExport = 100_000

// defaultAuditPage is a page's size when the request gives no limit, and
// maxAuditPage the most a page holds.
const (
	defaultAuditPage = 500
	maxAuditPage     = 1000
)

func (s *Server) auditRoutes() {
	const base = "/apis/" + groupBerth + "/v1"
	s.handle("GET "+base+"/auditevents", s.listAuditEvents)
	s.handle("GET "+base+"/namespaces/{ns}/auditevents", s.listAuditEvents)
}

func (s *Server) listAuditEvents(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	if err := s.authorize(r, "list", resAuditEvents, ns); err != nil {
		return err
	}
	q, err := auditQuery(r, ns)
	if err != nil {
		return err
	}
	if ns != "" {
		if q, err = s.sinceProjectBegan(r, q); err != nil {
			return err
		}
	}
	if strings.Contains(r.Header.Get("Accept"), "text/csv") {
		return s.exportAudit(w, r, q)
	}
	page, err := s.opts.Store.AuditLog(r.Context(), q)
	if err != nil {
		return err
	}
	items := make([]berthv1.AuditEvent, 0, len(page.Entries))
	for _, e := range page.Entries {
		items = append(items, auditEvent(e))
	}
	var meta metav1.ListMeta
	if n := len(page.Entries); n > 0 && page.Total > n {
		meta.Continue = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(page.Entries[n-1].ID, 10)))
		rest := int64(page.Total - n)
		meta.RemainingItemCount = &rest
	}
	if wantsTable(r) {
		t := newTable(auditColumns, "", meta.Continue)
		t.RemainingItemCount = meta.RemainingItemCount
		for _, e := range items {
			t.Rows = append(t.Rows, metaRow(e.ObjectMeta, e.Time.UTC().Format(time.RFC3339), orNone(e.Actor), e.Action,
				e.Resource, e.Name, e.Detail))
		}
		return writeJSONOrYAML(w, r, http.StatusOK, t)
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "AuditEventList", "apiVersion": groupBerth + "/v1", "metadata": meta, "items": items,
	})
}

var auditColumns = []metav1.TableColumnDefinition{
	{Name: "Time", Type: "string", Description: "When it was done."},
	{Name: "Actor", Type: "string", Description: "Who did it."},
	{Name: "Action", Type: "string", Description: "What was done."},
	{Name: "Resource", Type: "string", Description: "The kind of object."},
	{Name: "Name", Type: "string", Description: "The object."},
	{Name: "Detail", Type: "string", Description: "The rest."},
}

// sinceProjectBegan narrows a project's audit rows to those of the
// project as it is now: a project deleted and requested again by someone
// else (any self-provisioner may take a free name) must not show its new
// admins what its former users did. Who may read every project's rows
// (a cluster administrator) reads them all.
func (s *Server) sinceProjectBegan(r *http.Request, q store.AuditQuery) (store.AuditQuery, error) {
	all, err := s.opts.Authorizer.Authorize(r.Context(), caller(r).User, "list", resAuditEvents, "")
	if err != nil || all {
		return q, err
	}
	p, err := s.opts.Store.Project(r.Context(), q.Project)
	if errors.Is(err, errdefs.ErrNotFound) {
		// Gone: nothing of it is anyone's but a cluster administrator's.
		q.Until = time.Unix(0, 1)
		return q, nil
	}
	if err != nil {
		return q, err
	}
	if q.Since.Before(p.Created) {
		q.Since = p.Created
	}
	return q, nil
}

// auditQuery reads the request's filters and page.
func auditQuery(r *http.Request, ns string) (store.AuditQuery, error) {
	v := r.URL.Query()
	q := store.AuditQuery{Project: ns, Actor: v.Get("actor"), Action: v.Get("action"), Limit: defaultAuditPage}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(t.name); s != "" {
			at, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return q, badRequest("%s %q is not an RFC 3339 time (2006-01-02T15:04:05Z)", t.name, s)
			}
			*t.to = at
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, badRequest("limit %q is not a count", s)
		}
		if n > maxAuditPage {
			return q, badRequest("limit %d: a page holds at most %d rows (Accept: text/csv exports them all)", n, maxAuditPage)
		}
		if n > 0 {
			q.Limit = n
		}
	}
	if c := v.Get("continue"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		var id int64
		if err == nil {
			id, err = strconv.ParseInt(string(b), 10, 64)
		}
		if err != nil || id <= 0 {
			return q, badRequest("continue token %q is not one this server gave", c)
		}
		q.Before = id
	}
	return q, nil
}

func auditEvent(e store.AuditEntry) berthv1.AuditEvent {
	return berthv1.AuditEvent{
		TypeMeta: metav1.TypeMeta{APIVersion: groupBerth + "/v1", Kind: "AuditEvent"},
		ObjectMeta: metav1.ObjectMeta{Name: strconv.FormatInt(e.ID, 10), Namespace: e.Project,
			CreationTimestamp: metav1.NewTime(e.At.Truncate(time.Second))},
		Actor: e.Actor, Action: e.Action, Resource: e.Resource, Name: e.Name, Digest: string(e.Digest), Detail: e.Detail,
		Time: metav1.NewMicroTime(e.At),
	}
}

// exportAudit writes every row q selects as CSV, newest first.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, q store.AuditQuery) error {
	q.Limit = 1000
	first, err := s.opts.Store.AuditLog(r.Context(), q)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="berth-audit.csv"`)
	out := csv.NewWriter(w)
	_ = out.Write([]string{"time", "actor", "action", "project", "resource", "name", "digest", "detail"})
	page, written := first, 0
	for {
		for _, e := range page.Entries {
			if written == maxAuditExport {
				_ = out.Write([]string{"", "", "", "", "", "", "", "export cut at " + strconv.Itoa(maxAuditExport) + " rows: narrow the time range"})
				out.Flush()
				return out.Error()
			}
			_ = out.Write(csvSafe(e.At.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Project, e.Resource, e.Name, string(e.Digest), e.Detail))
			written++
		}
		if len(page.Entries) < q.Limit || r.Context().Err() != nil {
			break
		}
		q.Before = page.Entries[len(page.Entries)-1].ID
		if page, err = s.opts.Store.AuditLog(r.Context(), q); err != nil {
			// The header is sent: say so in the file rather than end it
			// as if complete.
			_ = out.Write([]string{"", "", "", "", "", "", "", "export failed: " + err.Error()})
			break
		}
	}
	out.Flush()
	return out.Error()
}

// csvSafe keeps spreadsheets from running cells as formulas: a cell that
// starts with = + - @ or a tab or carriage return gets a leading quote
// (OWASP's advice for CSV injection). Names and details come from users.
func csvSafe(cells ...string) []string {
	for i, c := range cells {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			cells[i] = "'" + c
		}
	}
	return cells
}
