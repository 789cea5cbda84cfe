package apiserver

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/fields"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/reqlog"
)

const oauthTokenPath = "/oauth/token"

// Lifetimes of tokens from the OAuth endpoint.
const (
	DefaultLoginTTL = 24 * time.Hour
	MaxLoginTTL     = 30 * 24 * time.Hour
)

type oauthAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeOAuthError(w http.ResponseWriter, code int, kind, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, oauthError{Error: kind, Description: description})
}

func retryAfter(t *auth.ThrottledError) string {
	return strconv.Itoa(int(math.Ceil(t.RetryAfter.Seconds())))
}

// oauthToken is the resource owner password credentials grant (RFC 6749
// §4.3): a form with grant_type=password, username and password, answered
// with a bearer token (§5.1) or an error object (§5.2). Basic credentials,
// if any, are the client's and are not needed. The optional expires_in
// asks for a lifetime in seconds, capped at MaxLoginTTL.
func (s *Server) oauthToken(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be a form (application/x-www-form-urlencoded)")
		return nil
	}
	form := r.PostForm
	if gt := form.Get("grant_type"); gt != "password" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be password, not "+strconv.Quote(gt))
		return nil
	}
	name, password := form.Get("username"), form.Get("password")
	if name == "" || password == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "username and password are required")
		return nil
	}
	ttl := DefaultLoginTTL
	if v := form.Get("expires_in"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs <= 0 {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", "expires_in must be a positive number of seconds")
			return nil
		}
		ttl = min(time.Duration(min(secs, math.MaxInt64/int64(time.Second)))*time.Second, MaxLoginTTL)
	}
	u, err := s.opts.Authenticator.Password(r.Context(), auth.ClientAddress(r), name, password)
	var throttled *auth.ThrottledError
	switch {
	case errors.As(err, &throttled):
		reqlog.FromContext(r.Context()).Decide(reqlog.Throttled)
		w.Header().Set("Retry-After", retryAfter(throttled))
		writeOAuthError(w, http.StatusTooManyRequests, "invalid_grant", err.Error())
		return nil
	case errors.Is(err, auth.ErrUnauthenticated):
		reqlog.FromContext(r.Context()).Decide(reqlog.Unauthorized)
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "wrong user name or password")
		return nil
	case err != nil:
		// err names the user as the log may (a password typed as the user
		// name is not written).
		s.log.Error("OAuth token", "err", err)
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "cannot check credentials now; retry")
		return nil
	}
	secret, rec, err := s.opts.Issuer.Issue(r.Context(), u.Name, ttl, "berth login")
	if err != nil {
		s.log.Error("OAuth token", "user", u.Name, "err", err)
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "cannot issue a token now; retry")
		return nil
	}
	reqlog.FromContext(r.Context()).SetUser(auth.LoggedUser(u))
	s.log.Info("issued a login token", "user", u.Name, "token", rec.ID, "expires", rec.Expires)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, oauthAnswer{AccessToken: secret, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second)})
	return nil
}

// getUser answers users/~ with the caller; another name is for those who
// may get users cluster-wide.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	id := caller(r)
	name := r.PathValue("name")
	if name == "~" {
		if isAnonymous(id.User) {
			return unauthorized()
		}
		writeJSON(w, http.StatusOK, userObject(id.User.Name, id.User.Groups))
		return nil
	}
	if err := s.authorize(r, "get", auth.Resource{Group: groupUser, Resource: "users"}, ""); err != nil {
		return err
	}
	if _, err := s.opts.Store.User(r.Context(), name); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return notFound("users.user.openshift.io", name)
		}
		return err
	}
	groups, err := s.opts.Store.GroupsOf(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userObject(name, groups))
	return nil
}

// listUsers lists the people Berth knows: its own users and those an
// identity provider vouched for at a login (service accounts are not
// Users). Cluster-wide "list users" is needed.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "list", auth.Resource{Group: groupUser, Resource: "users"}, ""); err != nil {
		return err
	}
	all, err := s.opts.Store.UsersWithPrefix(r.Context(), "")
	if err != nil {
		return err
	}
	items := []User{}
	for _, u := range all {
		if _, _, sa := auth.ServiceAccountOf(u.Name); sa {
			continue
		}
		groups, err := s.opts.Store.GroupsOf(r.Context(), u.Name)
		if err != nil {
			return err
		}
		obj := userObject(u.Name, groups)
		obj.Metadata.CreationTimestamp = timestamp(u.Created)
		items = append(items, obj)
	}
	return writeList(w, r, newList(groupUser+"/v1", "UserList", items), userColumns, userRow)
}

func userObject(name string, groups []string) User {
	if groups == nil {
		groups = []string{}
	}
	return User{TypeMeta: TypeMeta{APIVersion: groupUser + "/v1", Kind: "User"}, Metadata: ObjectMeta{Name: name}, Groups: groups}
}

// callerTokens are the caller's own live tokens. Only the caller's: there
// is nothing to authorize beyond having logged in. The token the request
// carries is annotated berth.io/current=true.
func (s *Server) callerTokens(r *http.Request) ([]UserOAuthAccessToken, error) {
	id := caller(r)
	u := id.User
	if isAnonymous(u) {
		return nil, unauthorized()
	}
	owner, err := s.tokenOwner(r)
	if err != nil {
		return nil, err
	}
	tokens, err := s.opts.Store.TokensOf(r.Context(), owner)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var items []UserOAuthAccessToken
	for _, t := range tokens {
		if !t.Revoked.IsZero() || !now.Before(t.Expires) {
			continue
		}
		annotations := map[string]string{"berth.io/description": t.Description, "berth.io/expires": timestamp(t.Expires)}
		if id.TokenID != "" && t.ID == id.TokenID {
			annotations["berth.io/current"] = "true"
		}
		items = append(items, UserOAuthAccessToken{
			TypeMeta:  TypeMeta{APIVersion: groupOAuth + "/v1", Kind: "UserOAuthAccessToken"},
			Metadata:  ObjectMeta{Name: t.ID, CreationTimestamp: timestamp(t.Created), Annotations: annotations},
			UserName:  t.User,
			ExpiresIn: int64(t.Expires.Sub(t.Created) / time.Second),
		})
	}
	return items, nil
}

// tokenOwner is whose tokens a list asks for: the caller's, or with
// fieldSelector userName=system:serviceaccount:NS:NAME a service
// account's, for who may request its tokens (create serviceaccounts/token
// in NS): the console's robot accounts show when each expires. A token's
// secret is never listed, only that it exists.
func (s *Server) tokenOwner(r *http.Request) (string, error) {
	me := caller(r).User.Name
	sel := r.URL.Query().Get("fieldSelector")
	if sel == "" {
		return me, nil
	}
	f, err := fields.ParseSelector(sel)
	if err != nil {
		return "", badRequest("fieldSelector %q: %v", sel, err)
	}
	owner, ok := f.RequiresExactMatch("userName")
	if !ok || len(f.Requirements()) != 1 {
		return "", badRequest("field label not supported: the tokens of a user are selected by userName=NAME alone")
	}
	if owner == me {
		return me, nil
	}
	ns, _, isSA := auth.ServiceAccountOf(owner)
	if !isSA {
		return "", s.forbidden(caller(r).User, "list", auth.Resource{Group: groupOAuth, Resource: "useroauthaccesstokens"}, "")
	}
	if err := s.authorize(r, "create", resSATokens, ns); err != nil {
		return "", err
	}
	return owner, nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	items, err := s.callerTokens(r)
	if err != nil {
		return err
	}
	return writeList(w, r, newList(groupOAuth+"/v1", "UserOAuthAccessTokenList", items), tokenColumns, tokenRow)
}

// getToken is one of the caller's live tokens; anyone else's is not found.
func (s *Server) getToken(w http.ResponseWriter, r *http.Request) error {
	items, err := s.callerTokens(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	for _, t := range items {
		if t.Metadata.Name == name {
			return writeJSONOrYAML(w, r, http.StatusOK, t)
		}
	}
	return notFound(tokensResource, name)
}

const tokensResource = "useroauthaccesstokens.oauth.openshift.io"

// deleteToken revokes one of the caller's tokens; "~" is the token the
// request itself carries (berth logout). Someone else's token is 404,
// but for a service account's named by fieldSelector (tokenOwner).
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	id := caller(r)
	if isAnonymous(id.User) {
		return unauthorized()
	}
	name := r.PathValue("name")
	if name == "~" {
		if id.TokenID == "" {
			return badRequest("this request carries no token to revoke (it was authenticated by a password)")
		}
		name = id.TokenID
	}
	// With fieldSelector userName=system:serviceaccount:NS:NAME, a
	// service account's token, for who may request its tokens.
	owner, err := s.tokenOwner(r)
	if err != nil {
		return err
	}
	tokens, err := s.opts.Store.TokensOf(r.Context(), owner)
	if err != nil {
		return err
	}
	owned := false
	for _, t := range tokens {
		owned = owned || (t.ID == name && t.Revoked.IsZero())
	}
	if !owned {
		return notFound(tokensResource, name)
	}
	if err := s.opts.Store.RevokeToken(r.Context(), name); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return notFound(tokensResource, name)
		}
		return err
	}
	s.log.Info("revoked a token", "user", owner, "token", name, "by", id.User.Name)
	writeSuccess(w, name, groupOAuth, "useroauthaccesstokens")
	return nil
}

// writeSuccess answers a delete as Kubernetes does.
func writeSuccess(w http.ResponseWriter, name, group, kind string) {
	writeJSON(w, http.StatusOK, status{
		TypeMeta: TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   "Success", Code: http.StatusOK,
		Details: &details{Name: name, Group: group, Kind: kind},
	})
}
