package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Signing in takes a user name and password (the OAuth password grant
// kubectl and berth login use, throttled alike) or a token the user
// already has; the session is that token in an HttpOnly, Secure,
// SameSite=Strict cookie scoped to /console/. Signing out revokes it.

type loginData struct {
	Then, Error, User string
	Nonce             string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.showLogin(w, r, http.StatusOK, loginData{Then: localPath(r.URL.Query().Get("then"))})
}

// showLogin renders the login form with a fresh nonce: the form's own
// CSRF protection (a double-submitted cookie), so another site cannot
// sign a browser in as someone else.
func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, code int, d loginData) {
	d.Nonce = randomToken()
	setCookie(w, r, loginCookie, d.Nonce, 3600)
	c.render(w, r, code, "login", nil, "Sign in", d)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.showLogin(w, r, http.StatusBadRequest, loginData{Error: "The form is unreadable."})
		return
	}
	d := loginData{Then: localPath(r.PostForm.Get("then")), User: r.PostForm.Get("username")}
	nonce, err := r.Cookie(loginCookie)
	if err != nil || nonce.Value == "" || nonce.Value != r.PostForm.Get("_nonce") || checkOrigin(r) != nil {
		d.Error = "This form expired or came from another site: sign in again."
		c.showLogin(w, r, http.StatusForbidden, d)
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("token"))
	ttl, kind := int(c.ttl.Seconds()), "t"
	if token == "" {
		user, password := r.PostForm.Get("username"), r.PostForm.Get("password")
		if user == "" || password == "" {
			d.Error = "Give a user name and password, or a token."
			c.showLogin(w, r, http.StatusBadRequest, d)
			return
		}
		form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}, "expires_in": {strconv.Itoa(ttl)}}
		_, body, hdr, err := c.api.do(r, "", call{method: http.MethodPost, path: "/oauth/token",
			body: []byte(form.Encode()), contentType: "application/x-www-form-urlencoded"})
		if err != nil {
			var ae *apiError
			code := http.StatusUnauthorized
			if errors.As(err, &ae) && ae.Code == http.StatusTooManyRequests {
				code = ae.Code
				w.Header().Set("Retry-After", hdr.Get("Retry-After"))
			}
			d.Error = "Sign-in failed: " + statusMessageOf(err)
			c.showLogin(w, r, code, d)
			return
		}
		var answer struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.Unmarshal(body, &answer); err != nil || answer.AccessToken == "" {
			d.Error = "Sign-in failed: the server gave no token."
			c.showLogin(w, r, http.StatusBadGateway, d)
			return
		}
		token, ttl, kind = answer.AccessToken, answer.ExpiresIn, "p"
	} else {
		// A token: valid when the API knows who it is.
		var me struct{}
		if err := c.api.getJSON(r, token, "/apis/user.openshift.io/v1/users/~", nil, &me); err != nil {
			d.Error = "Sign-in failed: " + statusMessageOf(err)
			c.showLogin(w, r, http.StatusUnauthorized, d)
			return
		}
	}
	setCookie(w, r, loginCookie, "", -1)
	setCookie(w, r, sessionCookie, kind+"."+token, ttl)
	http.Redirect(w, r, d.Then, http.StatusSeeOther)
}

// checkOrigin refuses a request another site sent.
func checkOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errors.New("cross-site")
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
			return errors.New("cross-origin")
		}
	}
	return nil
}

// logout revokes the session's token and forgets the cookie.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	setCookie(w, r, sessionCookie, "", -1)
	if s.own {
		_, _, _, err := c.api.do(r, s.token, call{method: http.MethodDelete, path: "/apis/oauth.openshift.io/v1/useroauthaccesstokens/~"})
		if err != nil {
			return fmt.Errorf("signed out of the console, but the session's token was not revoked: %w", err)
		}
	}
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	return nil
}

func statusMessageOf(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}
