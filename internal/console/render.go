package console

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// view is what every page's template gets.
type view struct {
	Title   string
	User    string
	CSRF    string
	Project string // the project the page is in, for the navigation
	Search  string
	Flash   string
	Data    any
}

// pageNames are the templates of pages, each rendered inside layout.html.
var pageNames = []string{"login", "error", "projects", "search", "project", "stream", "tag", "image", "members", "robots", "audit", "admin"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes page name with data, as s (nil before sign-in).
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, s *session, title string, data any) {
	v := view{Title: title, Data: data, Search: r.URL.Query().Get("q")}
	if s != nil {
		v.User, v.CSRF = s.user, s.csrf
	}
	if ns := r.PathValue("ns"); ns != "" {
		v.Project = ns
	}
	if f := r.URL.Query().Get("done"); s != nil && f != "" && len(f) < 300 &&
		hmac.Equal([]byte(r.URL.Query().Get("ds")), []byte(flashSignature(s.token, f))) {
		v.Flash = f
	}
	c.renderView(w, code, name, v)
}

func (c *Console) renderView(w http.ResponseWriter, code int, name string, v view) {
	if err := c.write(w, code, name, "layout.html", v); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the console could not render this page", http.StatusInternalServerError)
	}
}

// fragment writes the template name of page alone: the part of it a
// live update puts in place.
func (c *Console) fragment(w http.ResponseWriter, page, name string, s *session, r *http.Request, data any) error {
	return c.write(w, http.StatusOK, page, name, view{User: s.user, CSRF: s.csrf, Project: r.PathValue("ns"), Data: data})
}

// write executes template name of page into a buffer, then sends it: a
// template that fails leaves the answer unsent.
func (c *Console) write(w http.ResponseWriter, code int, page, name string, v view) error {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, name, v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, err := w.Write(buf.Bytes())
	return err
}

// fail shows err: the API's refusal with its code and message, anything
// else as a 500 that the log tells more of.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code, msg := http.StatusInternalServerError, "Something went wrong; the server's log says more."
	var ae *apiError
	if errors.As(err, &ae) {
		code, msg = ae.Code, ae.Message
	} else {
		c.log.Error("console", "path", r.URL.Path, "err", err)
	}
	if r.Header.Get("Accept") == "text/event-stream" {
		http.Error(w, msg, code)
		return
	}
	c.render(w, r, code, "error", s, http.StatusText(code), struct {
		Code    int
		Message string
	}{code, msg})
}

// redirect sends the browser on after an action, with what was done:
// the message rides in the URL, signed for the session, so that a link
// from elsewhere cannot put words of its own on a console page.
func redirect(w http.ResponseWriter, r *http.Request, s *session, to, done string) {
	if done != "" {
		to = withQuery(to, "done", done, "ds", flashSignature(s.token, done))
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// flashSignature is the MAC of a message shown after an action.
func flashSignature(sessionToken, msg string) string {
	return sessionMAC(sessionToken, "berth console flash\x00"+msg)
}

var funcs = template.FuncMap{
	"short": shortDigest,
	"bytes": humanBytes,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return ago(time.Since(t))
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"path": consolePath,
	"add":  func(a, b int) int { return a + b },
	"sub":  func(a, b int64) int64 { return a - b },
	"join": strings.Join,
}

// consolePath is the console's page at parts, each escaped.
func consolePath(parts ...string) string { return Prefix + escapedPath(parts) }

// apiPath is the path of resource (and of name, when given) in project
// ns under base, the API's group version ("/api/v1", "/apis/G/V").
func apiPath(base, ns, resource string, name ...string) string {
	return base + "/" + escapedPath(append([]string{"namespaces", ns, resource}, name...))
}

// imagePath is apiPath in image.openshift.io.
func imagePath(ns, resource string, name ...string) string {
	return apiPath("/apis/image.openshift.io/v1", ns, resource, name...)
}

func escapedPath(parts []string) string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = url.PathEscape(p)
	}
	return strings.Join(out, "/")
}

// withQuery is base with its query's keys set to the values given in
// pairs; an empty value removes the key.
func withQuery(base string, pairs ...string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			q.Del(pairs[i])
		} else {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// humanBytes is n in B, KB, MB, GB (powers of 1000, as docker and podman
// print sizes), with the exact count a title away.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// sortColumn is a sortable column's header: its link (the other order
// when it is the current key) and its aria-sort.
type sortColumn struct {
	Label, Key, Href, Aria, Arrow string
}

// sortColumns are the headers of a table sorted by key (desc or not) on
// page base.
func sortColumns(base, key string, desc bool, cols ...[2]string) []sortColumn {
	out := make([]sortColumn, 0, len(cols))
	for _, c := range cols {
		sc := sortColumn{Label: c[0], Key: c[1], Aria: "none"}
		order := "asc"
		if c[1] == key {
			sc.Aria, sc.Arrow = "ascending", "▲"
			if desc {
				sc.Aria, sc.Arrow = "descending", "▼"
			} else {
				order = "desc"
			}
		}
		sc.Href = withQuery(base, "sort", c[1], "order", order, "page", "")
		out = append(out, sc)
	}
	return out
}

// pager is a table's paging: where this page starts, the total, and the
// links to the pages around it.
type pager struct {
	From, To, Total int
	Prev, Next      string
	First, Last     string
	Page, Pages     int
}

const pageSize = 50

// pageOf reads ?page= (from 1) of base.
func pageOf(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// pager is the paging of the page of t on base that holds got items,
// with remaining after it (metadata.remainingItemCount).
func (t tableQuery) pager(base string, got int, remaining *int64) pager {
	return newPager(base, t.page, pageSize, got, listTotal((t.page-1)*pageSize, got, remaining))
}

func newPager(base string, page, size, got, total int) pager {
	p := pager{From: (page-1)*size + 1, To: (page-1)*size + got, Total: total, Page: page}
	if got == 0 {
		p.From = 0
	}
	p.Pages = max(1, (total+size-1)/size)
	if page > 1 {
		p.Prev = withQuery(base, "page", strconv.Itoa(page-1))
		p.First = withQuery(base, "page", "")
	}
	if page < p.Pages {
		p.Next = withQuery(base, "page", strconv.Itoa(page+1))
		p.Last = withQuery(base, "page", strconv.Itoa(p.Pages))
	}
	return p
}

// listTotal is the number of items of a paged list: those before the
// page, on it, and after it (metadata.remainingItemCount).
func listTotal(offset, got int, remaining *int64) int {
	total := offset + got
	if remaining != nil {
		total += int(*remaining)
	}
	return total
}

// rawJSON is v as indented JSON.
func rawJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
