package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
)

// The projects list, the search across projects, streams and tags, and a
// project's streams.

// listMeta is a list's paging metadata.
type listMeta struct {
	Continue           string `json:"continue"`
	RemainingItemCount *int64 `json:"remainingItemCount"`
}

type projectItem struct {
	Metadata struct {
		Name              string            `json:"name"`
		CreationTimestamp time.Time         `json:"creationTimestamp"`
		Annotations       map[string]string `json:"annotations"`
	} `json:"metadata"`
	Status struct {
		Images *struct {
			ImageStreams int       `json:"imageStreams"`
			Tags         int       `json:"tags"`
			StorageBytes int64     `json:"storageBytes"`
			SharedBytes  int64     `json:"sharedBytes"`
			LastPush     time.Time `json:"lastPush"`
		} `json:"images"`
	} `json:"status"`
}

type projectList struct {
	Metadata listMeta      `json:"metadata"`
	Items    []projectItem `json:"items"`
}

// tableQuery is how a console table is asked for: sort key and order,
// search and page, from the page's own query.
type tableQuery struct {
	sort   string
	desc   bool
	search string
	page   int
}

func readTableQuery(r *http.Request, keys []string) tableQuery {
	q := r.URL.Query()
	t := tableQuery{sort: keys[0], desc: q.Get("order") == "desc", search: q.Get("filter"), page: pageOf(r)}
	for _, k := range keys {
		if q.Get("sort") == k {
			t.sort = k
		}
	}
	return t
}

// filterForm is what a table's filter form sends with the filter: the
// sort in effect, so that filtering keeps the order.
type filterForm struct {
	Value, Sort, Order string
}

func (t tableQuery) filterForm() filterForm {
	f := filterForm{Value: t.search, Sort: t.sort}
	if t.desc {
		f.Order = "desc"
	}
	return f
}

// apiQuery is the API's paging parameters for t.
func (t tableQuery) apiQuery() url.Values {
	q := url.Values{"sortBy": {t.sort}, "limit": {strconv.Itoa(pageSize)}, "offset": {strconv.Itoa((t.page - 1) * pageSize)}}
	if t.desc {
		q.Set("order", "desc")
	}
	if t.search != "" {
		q.Set("search", t.search)
	}
	return q
}

type projectsData struct {
	Columns []sortColumn
	Items   []projectItem
	Pager   pager
	Filter  filterForm
}

var projectSortKeys = []string{"name", "imageStreams", "tags", "storage", "lastPush"}

func (c *Console) projectsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	t := readTableQuery(r, projectSortKeys)
	var list projectList
	if err := c.api.getJSON(r, s.token, "/apis/project.openshift.io/v1/projects", t.apiQuery(), &list); err != nil {
		return err
	}
	base := r.URL.RequestURI()
	d := projectsData{Items: list.Items, Filter: t.filterForm(),
		Pager: t.pager(base, len(list.Items), list.Metadata.RemainingItemCount),
		Columns: sortColumns(base, t.sort, t.desc, [2]string{"Project", "name"}, [2]string{"Image streams", "imageStreams"},
			[2]string{"Tags", "tags"}, [2]string{"Storage", "storage"}, [2]string{"Last push", "lastPush"})}
	c.render(w, r, http.StatusOK, "projects", s, "Projects", d)
	return nil
}

// searchLimit bounds each kind of result of a search, and searchProjects
// the projects a user who may not list streams everywhere is searched in.
const (
	searchLimit    = 20
	searchProjects = 50
)

type searchData struct {
	Query    string
	Projects []projectItem
	Streams  []streamRow
	Tags     []tagRow
	// Partial says that only the first searchProjects projects were
	// searched for streams and tags.
	Partial bool
}

func (c *Console) searchPage(w http.ResponseWriter, r *http.Request, s *session) error {
	query := r.URL.Query().Get("q")
	d := searchData{Query: query}
	if query == "" {
		c.render(w, r, http.StatusOK, "search", s, "Search", d)
		return nil
	}
	limit := url.Values{"search": {query}, "limit": {strconv.Itoa(searchLimit)}}
	var projects projectList
	if err := c.api.getJSON(r, s.token, "/apis/project.openshift.io/v1/projects", limit, &projects); err != nil {
		return err
	}
	d.Projects = projects.Items
	// Streams and tags: everywhere at once for who may list them so,
	// project by project otherwise (the API lists only what each may).
	everywhere := c.can(r, s, "list", "image.openshift.io", "imagestreamtags", "")
	scopes := []string{""}
	if !everywhere {
		var all projectList
		if err := c.api.getJSON(r, s.token, "/apis/project.openshift.io/v1/projects", url.Values{"limit": {strconv.Itoa(searchProjects)}}, &all); err != nil {
			return err
		}
		scopes = scopes[:0]
		for _, p := range all.Items {
			scopes = append(scopes, p.Metadata.Name)
		}
		d.Partial = all.Metadata.Continue != ""
	}
	for _, ns := range scopes {
		prefix := "/apis/image.openshift.io/v1"
		if ns != "" {
			prefix += "/namespaces/" + url.PathEscape(ns)
		}
		var streams struct {
			Items []imagev1.ImageStream `json:"items"`
		}
		if err := c.api.getJSON(r, s.token, prefix+"/imagestreams", limit, &streams); err != nil {
			if isForbidden(err) {
				continue
			}
			return err
		}
		for _, is := range streams.Items {
			d.Streams = append(d.Streams, streamRowOf(is))
		}
		var tags struct {
			Items []imagev1.ImageStreamTag `json:"items"`
		}
		if err := c.api.getJSON(r, s.token, prefix+"/imagestreamtags", limit, &tags); err != nil {
			if isForbidden(err) {
				continue
			}
			return err
		}
		for _, ist := range tags.Items {
			d.Tags = append(d.Tags, tagRowOf(ist))
		}
		if len(d.Streams) >= searchLimit && len(d.Tags) >= searchLimit {
			break
		}
	}
	d.Streams, d.Tags = d.Streams[:min(len(d.Streams), searchLimit)], d.Tags[:min(len(d.Tags), searchLimit)]
	c.render(w, r, http.StatusOK, "search", s, "Search: "+query, d)
	return nil
}

// streamRow is an image stream as the project page lists it.
type streamRow struct {
	Project, Name, PullSpec string
	Tags                    int
	Updated                 time.Time
}

func streamRowOf(is imagev1.ImageStream) streamRow {
	row := streamRow{Project: is.Namespace, Name: is.Name, PullSpec: is.Status.DockerImageRepository}
	for _, t := range is.Status.Tags {
		if len(t.Items) == 0 {
			continue
		}
		row.Tags++
		if at := t.Items[0].Created.Time; at.After(row.Updated) {
			row.Updated = at
		}
	}
	return row
}

type projectData struct {
	Columns []sortColumn
	Streams []streamRow
	Pager   pager
	Filter  filterForm
	Tabs    projectTabs
}

// projectTabs are the tabs of a project the user may open.
type projectTabs struct {
	Members, Robots, Audit bool
}

func (c *Console) tabsOf(r *http.Request, s *session, ns string) projectTabs {
	return projectTabs{
		Members: c.can(r, s, "list", "rbac.authorization.k8s.io", "rolebindings", ns),
		Robots:  c.can(r, s, "list", "", "serviceaccounts", ns),
		Audit:   c.can(r, s, "list", "berth.io", "auditevents", ns),
	}
}

var streamSortKeys = []string{"name", "tags", "updated"}

func (c *Console) projectPage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns := r.PathValue("ns")
	t := readTableQuery(r, streamSortKeys)
	var list struct {
		Metadata listMeta              `json:"metadata"`
		Items    []imagev1.ImageStream `json:"items"`
	}
	if err := c.api.getJSON(r, s.token, imagePath(ns, "imagestreams"), t.apiQuery(), &list); err != nil {
		return err
	}
	base := r.URL.RequestURI()
	d := projectData{Filter: t.filterForm(), Tabs: c.tabsOf(r, s, ns),
		Pager: t.pager(base, len(list.Items), list.Metadata.RemainingItemCount),
		Columns: sortColumns(base, t.sort, t.desc, [2]string{"Image stream", "name"}, [2]string{"Tags", "tags"},
			[2]string{"Updated", "updated"})}
	for _, is := range list.Items {
		d.Streams = append(d.Streams, streamRowOf(is))
	}
	c.render(w, r, http.StatusOK, "project", s, ns, d)
	return nil
}

// can asks the API whether the user may do verb on resource in ns: what
// the pages offer. The server checks again when the action is taken.
func (c *Console) can(r *http.Request, s *session, verb, group, resource, ns string) bool {
	sub := ""
	if i := strings.IndexByte(resource, '/'); i >= 0 {
		resource, sub = resource[:i], resource[i+1:]
	}
	review := map[string]any{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
		"spec": map[string]any{"resourceAttributes": map[string]any{"namespace": ns, "verb": verb, "group": group, "resource": resource, "subresource": sub}}}
	var answer struct {
		Status struct {
			Allowed bool `json:"allowed"`
		} `json:"status"`
	}
	if err := c.api.sendJSON(r, s.token, http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review, &answer); err != nil {
		c.log.Warn("console: access review", "verb", verb, "resource", resource, "err", err)
		return false
	}
	return answer.Status.Allowed
}

// isForbidden says that err is the API's 403 or 404: a part of a page the
// user may not see, left out.
func isForbidden(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae.Code == http.StatusForbidden || ae.Code == http.StatusNotFound)
}
