// Package console is Berth's web console: server-rendered pages under
// /console/ over the registry's own API (backend.go), with a session
// cookie, CSRF protection on every form, and a strict
// Content-Security-Policy. docs/CONSOLE.md tells the design.
package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Prefix is where the console is served.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed assets
var assetFiles embed.FS

// Options configure a console.
type Options struct {
	// Backend serves /apis, /api, /oauth and /v2: the server's own
	// handler, which the console calls in process.
	Backend http.Handler
	Logger  *slog.Logger
	// SessionTTL is how long a console login lasts (8 hours when 0).
	SessionTTL time.Duration
}

// Console serves the web console.
type Console struct {
	api   backend
	log   *slog.Logger
	ttl   time.Duration
	mux   *http.ServeMux
	pages map[string]*template.Template
}

// New returns the console.
func New(o Options) (*Console, error) {
	c := &Console{api: backend{handler: o.Backend}, log: o.Logger, ttl: o.SessionTTL, mux: http.NewServeMux()}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.ttl == 0 {
		c.ttl = 8 * time.Hour
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Scripts, styles and everything else come from the console's own
	// files: no inline script or style, no eval, no other origin.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"assets/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// handler is a console page or action: it returns an error to show.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

func (c *Console) routes() {
	assets, _ := fs.Sub(assetFiles, "assets")
	c.mux.Handle("GET "+Prefix+"assets/", http.StripPrefix(Prefix+"assets/", http.FileServerFS(assets)))
	c.mux.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"projects", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET "+Prefix+"login", c.loginPage)
	c.mux.HandleFunc("POST "+Prefix+"login", c.login)
	c.handle("POST "+Prefix+"logout", c.logout)
	c.handle("GET "+Prefix+"projects", c.projectsPage)
	c.handle("GET "+Prefix+"search", c.searchPage)
	c.handle("GET "+Prefix+"projects/{ns}", c.projectPage)
	c.handle("GET "+Prefix+"projects/{ns}/streams/{stream}", c.streamPage)
	c.handle("GET "+Prefix+"projects/{ns}/streams/{stream}/events", c.streamEvents)
	c.handle("GET "+Prefix+"projects/{ns}/streams/{stream}/tags/{tag}", c.tagPage)
	c.handle("POST "+Prefix+"projects/{ns}/streams/{stream}/tags/{tag}/revert", c.revertTag)
	c.handle("POST "+Prefix+"projects/{ns}/streams/{stream}/tags/{tag}/delete", c.deleteTag)
	c.handle("GET "+Prefix+"projects/{ns}/streams/{stream}/images/{digest}", c.imagePage)
	c.handle("GET "+Prefix+"projects/{ns}/members", c.membersPage)
	c.handle("POST "+Prefix+"projects/{ns}/members/add", c.addMember)
	c.handle("POST "+Prefix+"projects/{ns}/members/remove", c.removeMember)
	c.handle("GET "+Prefix+"projects/{ns}/robots", c.robotsPage)
	c.handle("POST "+Prefix+"projects/{ns}/robots", c.createRobot)
	c.handle("POST "+Prefix+"projects/{ns}/robots/{sa}/token", c.createRobotToken)
	c.handle("POST "+Prefix+"projects/{ns}/robots/{sa}/tokens/{id}/revoke", c.revokeRobotToken)
	c.handle("GET "+Prefix+"projects/{ns}/audit", c.auditPage)
	c.handle("GET "+Prefix+"audit", c.auditPage)
	c.handle("GET "+Prefix+"audit.csv", c.auditCSV)
	c.handle("GET "+Prefix+"projects/{ns}/audit.csv", c.auditCSV)
	c.handle("GET "+Prefix+"admin", c.adminPage)
	c.handle("POST "+Prefix+"admin/read-only", c.setReadOnly)
	c.handle("POST "+Prefix+"admin/gc", c.runGC)
	c.handle("POST "+Prefix+"admin/prune", c.runPrune)
}

// handle serves pattern for signed-in users: without a session a page
// sends the browser to the login form; a POST must carry the session's
// CSRF token and come from this origin.
func (c *Console) handle(pattern string, h handler) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, Prefix+"login?then="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, &apiError{Code: http.StatusUnauthorized, Message: "sign in again: " + err.Error()})
			return
		}
		if r.Method == http.MethodPost {
			if err := checkForm(r, s.csrf); err != nil {
				c.log.Warn("console: refused a form", "path", r.URL.Path, "user", s.user, "err", err)
				c.fail(w, r, s, &apiError{Code: http.StatusForbidden, Message: err.Error()})
				return
			}
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// maxFormBytes bounds a console form.
const maxFormBytes = 64 << 10

// checkForm refuses a POST that another site could have made: one sent
// cross-site (Sec-Fetch-Site, Origin) or without the session's CSRF token.
func checkForm(r *http.Request, want string) error {
	if err := checkOrigin(r); err != nil {
		return fmt.Errorf("a form sent from another site is refused (%w)", err)
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("the form is unreadable: %w", err)
	}
	got := r.PostForm.Get("_csrf")
	if got == "" {
		got = r.Header.Get("X-CSRF-Token")
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errors.New("the form carries no valid CSRF token: reload the page and try again")
	}
	return nil
}

// session is the signed-in user of a request.
type session struct {
	token string
	user  string
	csrf  string
	// own says the console asked for the token (a password sign-in): it
	// revokes it at sign-out. A token the user gave stays theirs.
	own bool
}

const (
	sessionCookie = "berth_console"
	loginCookie   = "berth_console_login"
)

// session reads the request's session cookie and asks the API who it is.
func (c *Console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, errors.New("not signed in")
	}
	kind, token, ok := strings.Cut(ck.Value, ".")
	if !ok || (kind != "p" && kind != "t") || token == "" {
		return nil, errors.New("not signed in")
	}
	var me struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := c.api.getJSON(r, token, "/apis/user.openshift.io/v1/users/~", nil, &me); err != nil {
		return nil, err
	}
	return &session{token: token, user: me.Metadata.Name, csrf: csrfToken(token), own: kind == "p"}, nil
}

// csrfToken is the CSRF token of a session: a MAC of the session's
// secret, which only a page of this origin (that the cookie came with)
// can have been given. It needs no state, and every instance of a
// scaled-out registry computes the same.
func csrfToken(sessionToken string) string { return sessionMAC(sessionToken, "berth console CSRF") }

// sessionMAC is the MAC of msg keyed by a session's secret: what only the
// console, answering that session, can have made.
func sessionMAC(sessionToken, msg string) string {
	m := hmac.New(sha256.New, []byte(sessionToken))
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// secureCookies says whether cookies get the Secure attribute: always
// over TLS (Berth's default), and behind a proxy that terminates it.
func secureCookies(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: secureCookies(r), SameSite: http.SameSiteStrictMode})
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// localPath is then if it is a path of the console (where to go after
// login), the projects page otherwise: never another site.
func localPath(then string) string {
	u, err := url.Parse(then)
	if err != nil || u.Scheme != "" || u.Host != "" || strings.Contains(then, "\\") ||
		!strings.HasPrefix(then, Prefix) || !strings.HasPrefix(path.Clean(u.Path)+"/", Prefix) {
		return Prefix + "projects"
	}
	return then
}
