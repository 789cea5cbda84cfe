package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func formRequest(form url.Values, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://registry.example:5000/console/logout", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

// A form is taken only from this origin and with the session's token.
func TestCheckForm(t *testing.T) {
	csrf := csrfToken("sha256~secret")
	if csrf == csrfToken("sha256~other") || csrf != csrfToken("sha256~secret") {
		t.Fatal("the CSRF token is not a function of the session alone")
	}
	for _, c := range []struct {
		name    string
		form    url.Values
		headers map[string]string
		ok      bool
	}{
		{"the session's token", url.Values{"_csrf": {csrf}}, nil, true},
		{"in a header", nil, map[string]string{"X-CSRF-Token": csrf}, true},
		{"same origin", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "https://registry.example:5000", "Sec-Fetch-Site": "same-origin"}, true},
		{"no token", nil, nil, false},
		{"another session's token", url.Values{"_csrf": {csrfToken("sha256~other")}}, nil, false},
		{"cross-site", url.Values{"_csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"same-site but another origin", url.Values{"_csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "same-site"}, false},
		{"another origin", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "https://evil.example"}, false},
		{"another port", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "https://registry.example:6000"}, false},
		{"null origin", url.Values{"_csrf": {csrf}}, map[string]string{"Origin": "null"}, false},
	} {
		err := checkForm(formRequest(c.form, c.headers), csrf)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// After sign-in the browser goes to a page of the console, never
// elsewhere.
func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/console/projects/team":      "/console/projects/team",
		"/console/search?q=x":         "/console/search?q=x",
		"https://evil.example/":       "/console/projects",
		"//evil.example/console/":     "/console/projects",
		"/console/\\evil.example":     "/console/projects",
		"/v2/":                        "/console/projects",
		"":                            "/console/projects",
		"/console/../oauth/authorize": "/console/projects",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionCookieKinds(t *testing.T) {
	c := &Console{}
	for _, v := range []string{"", "sha256~x", "x.sha256~y", "p.", "t"} {
		r := httptest.NewRequest(http.MethodGet, "/console/projects", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		if _, err := c.session(r); err == nil {
			t.Errorf("cookie %q made a session", v)
		}
	}
}

func TestTableHelpers(t *testing.T) {
	cols := sortColumns("/console/projects?filter=a&page=3", "tags", true, [2]string{"Name", "name"}, [2]string{"Tags", "tags"})
	if cols[1].Aria != "descending" || !strings.Contains(cols[1].Href, "order=asc") || strings.Contains(cols[1].Href, "page=") ||
		!strings.Contains(cols[1].Href, "filter=a") || cols[0].Aria != "none" {
		t.Errorf("sort columns: %+v", cols)
	}
	p := newPager("/console/x?sort=size", 2, 50, 50, 120)
	if p.From != 51 || p.To != 100 || p.Pages != 3 || !strings.Contains(p.Next, "page=3") || !strings.Contains(p.Prev, "page=1") ||
		!strings.Contains(p.Last, "page=3") || !strings.Contains(p.Next, "sort=size") {
		t.Errorf("pager: %+v", p)
	}
	remaining := int64(20)
	if got := listTotal(100, 50, &remaining); got != 170 {
		t.Errorf("listTotal = %d", got)
	}
	for n, want := range map[int64]string{999: "999 B", 1000: "1.0 kB", 34_100_000: "34.1 MB", 5_000_000_000: "5.0 GB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := shellWord("alice"); got != "alice" {
		t.Errorf("shellWord(alice) = %q", got)
	}
	if got := shellWord("a'b c"); got != `'a'\''b c'` {
		t.Errorf("shellWord = %q", got)
	}
}

// Every page's template parses, with the layout.
func TestPagesParse(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != len(pageNames) || pages["stream"].Lookup("tags") == nil {
		t.Fatalf("pages: %d, stream's tags fragment %v", len(pages), pages["stream"].Lookup("tags"))
	}
}

// A message after an action is shown only when the console signed it for
// this session: a link from elsewhere cannot put words on a page.
func TestFlashIsSigned(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	c := &Console{pages: pages}
	s := &session{token: "sha256~secret", user: "alice", csrf: csrfToken("sha256~secret")}
	show := func(query string, s *session) string {
		r := httptest.NewRequest(http.MethodGet, "/console/projects?"+query, nil)
		w := httptest.NewRecorder()
		c.render(w, r, http.StatusOK, "error", s, "t", struct {
			Code    int
			Message string
		}{200, "x"})
		return w.Body.String()
	}
	msg := "Deleted the tag app:v1."
	signed := url.Values{"done": {msg}, "ds": {flashSignature(s.token, msg)}}.Encode()
	if body := show(signed, s); !strings.Contains(body, msg) {
		t.Errorf("a signed message is not shown")
	}
	forged := url.Values{"done": {"Your password expired: re-enter it at https://evil.example"}}.Encode()
	if body := show(forged, s); strings.Contains(body, "evil.example") {
		t.Errorf("an unsigned message is shown")
	}
	other := url.Values{"done": {msg}, "ds": {flashSignature("sha256~other", msg)}}.Encode()
	if body := show(other, s); strings.Contains(body, msg) {
		t.Errorf("another session's message is shown")
	}
	if body := show(signed, nil); strings.Contains(body, msg) {
		t.Errorf("a message is shown before sign-in")
	}
}
