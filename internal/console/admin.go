package console

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	configv1 "github.com/berth-registry/berth/internal/api/config/v1"
	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	routev1 "github.com/berth-registry/berth/internal/api/route/v1"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/prune"
)

// The cluster administrators' page (the registry Config, its conditions,
// garbage collection and pruning with a dry run first) and the audit log.

const (
	configPath          = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"
	clusterOperatorPath = "/apis/config.openshift.io/v1/clusteroperators/image-registry"
)

type adminData struct {
	Config                imageregistryv1.Config
	Operator              configv1.ClusterOperator
	RawConfig, RawStorage string
	// Routes are the host names the registry is served as (Route objects).
	Routes   []routev1.Route
	CanWrite bool
	GC       *gc.Report
	Prune    *prune.Report
	// KeepTagRevisions and KeepYoungerThan are the pruning's settings, as
	// its dry run had them, for the confirm step.
	KeepTagRevisions, KeepYoungerThan string
}

func (c *Console) adminPage(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showAdmin(w, r, s, adminData{})
}

func (c *Console) showAdmin(w http.ResponseWriter, r *http.Request, s *session, d adminData) error {
	if err := c.api.getJSON(r, s.token, configPath, nil, &d.Config); err != nil {
		return err
	}
	if err := c.api.getJSON(r, s.token, clusterOperatorPath, nil, &d.Operator); err != nil && !isForbidden(err) {
		return err
	}
	var routes struct {
		Items []routev1.Route `json:"items"`
	}
	if err := c.api.getJSON(r, s.token, "/apis/route.openshift.io/v1/namespaces/openshift-image-registry/routes", nil, &routes); err != nil && !isForbidden(err) {
		return err
	}
	d.Routes = routes.Items
	spec := d.Config.Spec
	if spec.HTTPSecret != "" {
		spec.HTTPSecret = "(set; not shown)"
	}
	d.RawConfig = rawJSON(spec)
	d.RawStorage = rawJSON(d.Config.Status.Storage)
	d.CanWrite = c.can(r, s, "patch", "imageregistry.operator.openshift.io", "configs", "")
	if d.KeepTagRevisions == "" {
		d.KeepTagRevisions, d.KeepYoungerThan = strconv.Itoa(prune.DefaultKeepTagRevisions), prune.DefaultKeepYoungerThan.String()
	}
	c.render(w, r, http.StatusOK, "admin", s, "Administration", d)
	return nil
}

func (c *Console) setReadOnly(w http.ResponseWriter, r *http.Request, s *session) error {
	on := r.PostForm.Get("readOnly") == "true"
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"readOnly": on}})
	if _, _, _, err := c.api.do(r, s.token, call{method: http.MethodPatch, path: configPath, body: patch,
		contentType: "application/merge-patch+json"}); err != nil {
		return err
	}
	state := "writable again"
	if on {
		state = "read-only"
	}
	redirect(w, r, s, Prefix+"admin", "The registry is "+state+".")
	return nil
}

// runGC runs a collection: a dry run, whose report offers to confirm, or
// the collection itself.
func (c *Console) runGC(w http.ResponseWriter, r *http.Request, s *session) error {
	q := url.Values{}
	if r.PostForm.Get("confirm") != "true" {
		q.Set("dryRun", "All")
	}
	var rep gc.Report
	if _, body, _, err := c.api.do(r, s.token, call{method: http.MethodPost, path: configPath + "/garbagecollection", query: q}); err != nil {
		return err
	} else if err := json.Unmarshal(body, &rep); err != nil {
		return err
	}
	return c.showAdmin(w, r, s, adminData{GC: &rep})
}

// runPrune prunes image streams' histories and the images only they
// held: a dry run first, then the same settings confirmed.
func (c *Console) runPrune(w http.ResponseWriter, r *http.Request, s *session) error {
	keep, younger := r.PostForm.Get("keepTagRevisions"), r.PostForm.Get("keepYoungerThan")
	q := url.Values{"keepTagRevisions": {keep}, "keepYoungerThan": {younger}}
	if r.PostForm.Get("confirm") != "true" {
		q.Set("dryRun", "All")
	}
	var rep prune.Report
	if _, body, _, err := c.api.do(r, s.token, call{method: http.MethodPost, path: "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster/prune", query: q}); err != nil {
		return err
	} else if err := json.Unmarshal(body, &rep); err != nil {
		return err
	}
	return c.showAdmin(w, r, s, adminData{Prune: &rep, KeepTagRevisions: keep, KeepYoungerThan: younger})
}

type auditData struct {
	// Project is the page's project, Filter the project the cluster-wide
	// page is narrowed to.
	Project, Filter             string
	Events                      []berthv1.AuditEvent
	Actor, Action, Since, Until string
	Actions                     []string
	Next, Newest, CSV           string
	Total                       int
	Tabs                        projectTabs
}

var auditActions = []string{"push", "pull", "tag", "untag", "delete", "create", "update", "prune"}

// auditQuery is the API query of the audit page's filters: dates are
// whole days (until included).
func auditQuery(r *http.Request) url.Values {
	in := r.URL.Query()
	q := url.Values{}
	for _, k := range []string{"actor", "action"} {
		if v := in.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	if t, err := time.Parse("2006-01-02", in.Get("since")); err == nil {
		q.Set("since", t.Format(time.RFC3339))
	}
	if t, err := time.Parse("2006-01-02", in.Get("until")); err == nil {
		q.Set("until", t.AddDate(0, 0, 1).Format(time.RFC3339))
	}
	return q
}

func auditPath(ns string) string {
	if ns == "" {
		return "/apis/berth.io/v1/auditevents"
	}
	return "/apis/berth.io/v1/namespaces/" + url.PathEscape(ns) + "/auditevents"
}

// auditProject is the project an audit page shows: the page's own, or on
// the cluster-wide page the one its filter names ("" for all).
func auditProject(r *http.Request) string {
	if ns := r.PathValue("ns"); ns != "" {
		return ns
	}
	return r.URL.Query().Get("project")
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns := auditProject(r)
	q := auditQuery(r)
	q.Set("limit", strconv.Itoa(pageSize))
	if cont := r.URL.Query().Get("continue"); cont != "" {
		q.Set("continue", cont)
	}
	var list struct {
		Metadata listMeta             `json:"metadata"`
		Items    []berthv1.AuditEvent `json:"items"`
	}
	if err := c.api.getJSON(r, s.token, auditPath(ns), q, &list); err != nil {
		return err
	}
	in := r.URL.Query()
	d := auditData{Project: r.PathValue("ns"), Filter: ns, Events: list.Items, Actor: in.Get("actor"), Action: in.Get("action"), Since: in.Get("since"),
		Until: in.Get("until"), Actions: auditActions, Total: listTotal(0, len(list.Items), list.Metadata.RemainingItemCount)}
	base := r.URL.RequestURI()
	if list.Metadata.Continue != "" {
		d.Next = withQuery(base, "continue", list.Metadata.Continue)
	}
	if in.Get("continue") != "" {
		d.Newest = withQuery(base, "continue", "")
	}
	csv := r.URL.Path + ".csv"
	d.CSV = withQuery(csv+"?"+in.Encode(), "continue", "")
	if d.Project != "" {
		d.Tabs = c.tabsOf(r, s, d.Project)
	}
	title := "Audit log"
	if d.Project != "" {
		title = d.Project + ": audit log"
	}
	c.render(w, r, http.StatusOK, "audit", s, title, d)
	return nil
}

// auditCSV sends the rows the filters select as CSV, as the API writes it.
func (c *Console) auditCSV(w http.ResponseWriter, r *http.Request, s *session) error {
	ns := auditProject(r)
	// Streamed through, as the API writes it: an export of 100,000 rows
	// is never held in memory.
	body, hdr, err := c.api.stream(r, s.token, auditPath(ns), auditQuery(r), "text/csv")
	if err != nil {
		return err
	}
	defer body.Close()
	name := "berth-audit.csv"
	if ns != "" {
		name = "berth-audit-" + ns + ".csv"
	}
	w.Header().Set("Content-Type", hdr.Get("Content-Type"))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.WriteHeader(http.StatusOK)
	_, err = io.Copy(w, body)
	if err != nil {
		// The answer is under way: the log says what cut it short.
		c.log.Warn("console: audit export cut short", "user", s.user, "err", err)
	}
	return nil
}
