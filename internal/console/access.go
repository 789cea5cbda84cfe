package console

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A project's members (its role bindings) and robot accounts (service
// accounts and their tokens).

// memberRoles are the roles the members page grants: the registry's
// roles and the generic ones.
var memberRoles = []string{"registry-viewer", "registry-editor", "registry-admin", "system:image-puller",
	"system:image-pusher", "system:image-builder", "view", "edit", "admin"}

type memberRow struct {
	Binding, Role, Kind, Name string
}

type membersData struct {
	Project   string
	Members   []memberRow
	Roles     []string
	CanChange bool
	Tabs      projectTabs
}

func (c *Console) bindingsPath(ns string, name ...string) string {
	return apiPath("/apis/rbac.authorization.k8s.io/v1", ns, "rolebindings", name...)
}

func (c *Console) membersPage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns := r.PathValue("ns")
	var list rbacv1.RoleBindingList
	if err := c.api.getJSON(r, s.token, c.bindingsPath(ns), nil, &list); err != nil {
		return err
	}
	d := membersData{Project: ns, Roles: memberRoles, Tabs: c.tabsOf(r, s, ns),
		CanChange: c.can(r, s, "update", "rbac.authorization.k8s.io", "rolebindings", ns)}
	for _, b := range list.Items {
		for _, sub := range b.Subjects {
			d.Members = append(d.Members, memberRow{Binding: b.Name, Role: b.RoleRef.Name, Kind: sub.Kind, Name: sub.Name})
		}
	}
	slices.SortFunc(d.Members, func(a, b memberRow) int {
		return cmp.Or(cmp.Compare(a.Role, b.Role), cmp.Compare(a.Kind+a.Name, b.Kind+b.Name))
	})
	c.render(w, r, http.StatusOK, "members", s, ns+": members", d)
	return nil
}

// subjectOf is the subject a members form names.
func subjectOf(ns, kind, name string) (rbacv1.Subject, error) {
	if name == "" {
		return rbacv1.Subject{}, errors.New("name the user, group or service account")
	}
	switch kind {
	case "User", "Group":
		return rbacv1.Subject{Kind: kind, APIGroup: "rbac.authorization.k8s.io", Name: name}, nil
	case "ServiceAccount":
		return rbacv1.Subject{Kind: kind, Name: name, Namespace: ns}, nil
	}
	return rbacv1.Subject{}, errors.New("a member is a User, a Group or a ServiceAccount")
}

func sameSubject(a, b rbacv1.Subject) bool {
	return a.Kind == b.Kind && a.Name == b.Name && (a.Kind != "ServiceAccount" || a.Namespace == b.Namespace || a.Namespace == "" || b.Namespace == "")
}

// addMember grants a role as berth policy add-role-to-user does: to the
// binding named after the role, created when there is none.
func (c *Console) addMember(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, role := r.PathValue("ns"), r.PostForm.Get("role")
	sub, err := subjectOf(ns, r.PostForm.Get("kind"), r.PostForm.Get("name"))
	if err != nil {
		return &apiError{Code: http.StatusUnprocessableEntity, Message: err.Error()}
	}
	if !slices.Contains(memberRoles, role) {
		return &apiError{Code: http.StatusUnprocessableEntity, Message: "choose one of the roles offered"}
	}
	path := c.bindingsPath(ns, role)
	var b rbacv1.RoleBinding
	err = c.api.getJSON(r, s.token, path, nil, &b)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
		b = rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{sub}}
		err = c.api.sendJSON(r, s.token, http.MethodPost, c.bindingsPath(ns), b, nil)
	case err != nil:
		return err
	case slices.ContainsFunc(b.Subjects, func(x rbacv1.Subject) bool { return sameSubject(x, sub) }):
	default:
		b.Subjects = append(b.Subjects, sub)
		err = c.api.sendJSON(r, s.token, http.MethodPut, path, b, nil)
	}
	if err != nil {
		return err
	}
	redirect(w, r, s, consolePath("projects", ns, "members"), "Granted "+role+" to "+sub.Kind+" "+sub.Name+".")
	return nil
}

// removeMember takes a subject out of a binding, and deletes the binding
// when it was the last.
func (c *Console) removeMember(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, name := r.PathValue("ns"), r.PostForm.Get("binding")
	sub, err := subjectOf(ns, r.PostForm.Get("kind"), r.PostForm.Get("name"))
	if err != nil || name == "" {
		return &apiError{Code: http.StatusUnprocessableEntity, Message: "name the binding and the member to remove"}
	}
	path := c.bindingsPath(ns, name)
	var b rbacv1.RoleBinding
	if err := c.api.getJSON(r, s.token, path, nil, &b); err != nil {
		return err
	}
	kept := slices.DeleteFunc(slices.Clone(b.Subjects), func(x rbacv1.Subject) bool { return sameSubject(x, sub) })
	switch {
	case len(kept) == len(b.Subjects):
		return &apiError{Code: http.StatusNotFound, Message: sub.Kind + " " + sub.Name + " is not in " + name}
	case len(kept) == 0:
		_, _, _, err = c.api.do(r, s.token, call{method: http.MethodDelete, path: path})
	default:
		b.Subjects = kept
		err = c.api.sendJSON(r, s.token, http.MethodPut, path, b, nil)
	}
	if err != nil {
		return err
	}
	redirect(w, r, s, consolePath("projects", ns, "members"), "Removed "+sub.Kind+" "+sub.Name+" from "+b.RoleRef.Name+".")
	return nil
}

type tokenRow struct {
	ID               string
	Created, Expires time.Time
	Description      string
	// State colours the expiry: ok, soon (within a week), imminent (a day).
	State string
}

type robotRow struct {
	Name   string
	Tokens []tokenRow
	// TokensHidden says the user may not see the account's tokens.
	TokensHidden bool
}

type robotsData struct {
	Project             string
	Robots              []robotRow
	CanCreate, CanToken bool
	Durations           []duration
	NewToken            *newToken
	Tabs                projectTabs
}

type duration struct {
	Label   string
	Seconds int64
}

// tokenDurations are the lifetimes offered for a robot's token.
var tokenDurations = []duration{{"1 hour", 3600}, {"1 day", 86400}, {"7 days", 7 * 86400}, {"30 days", 30 * 86400},
	{"90 days", 90 * 86400}, {"1 year", 365 * 86400}}

// newToken is a token just made: shown once, on the answer to the form.
type newToken struct {
	Account, Token, Login string
	Expires               time.Time
}

func (c *Console) robotsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showRobots(w, r, s, nil)
}

func (c *Console) showRobots(w http.ResponseWriter, r *http.Request, s *session, made *newToken) error {
	ns := r.PathValue("ns")
	var list struct {
		Items []struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		} `json:"items"`
	}
	if err := c.api.getJSON(r, s.token, apiPath("/api/v1", ns, "serviceaccounts"), nil, &list); err != nil {
		return err
	}
	d := robotsData{Project: ns, Durations: tokenDurations, NewToken: made, Tabs: c.tabsOf(r, s, ns),
		CanCreate: c.can(r, s, "create", "", "serviceaccounts", ns),
		CanToken:  c.can(r, s, "create", "", "serviceaccounts/token", ns)}
	now := time.Now()
	for _, sa := range list.Items {
		row := robotRow{Name: sa.Metadata.Name, TokensHidden: !d.CanToken}
		if d.CanToken {
			var tokens struct {
				Items []struct {
					Metadata struct {
						Name              string            `json:"name"`
						CreationTimestamp time.Time         `json:"creationTimestamp"`
						Annotations       map[string]string `json:"annotations"`
					} `json:"metadata"`
				} `json:"items"`
			}
			sel := robotSelector(ns, sa.Metadata.Name)
			if err := c.api.getJSON(r, s.token, "/apis/oauth.openshift.io/v1/useroauthaccesstokens", sel, &tokens); err != nil {
				return err
			}
			for _, t := range tokens.Items {
				tr := tokenRow{ID: t.Metadata.Name, Created: t.Metadata.CreationTimestamp, Description: t.Metadata.Annotations["berth.io/description"], State: "ok"}
				tr.Expires, _ = time.Parse(time.RFC3339, t.Metadata.Annotations["berth.io/expires"])
				switch left := tr.Expires.Sub(now); {
				case left < 24*time.Hour:
					tr.State = "imminent"
				case left < 7*24*time.Hour:
					tr.State = "soon"
				}
				row.Tokens = append(row.Tokens, tr)
			}
		}
		d.Robots = append(d.Robots, row)
	}
	c.render(w, r, http.StatusOK, "robots", s, ns+": robot accounts", d)
	return nil
}

func (c *Console) createRobot(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, name := r.PathValue("ns"), r.PostForm.Get("name")
	sa := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": name, "namespace": ns}}
	if err := c.api.sendJSON(r, s.token, http.MethodPost, apiPath("/api/v1", ns, "serviceaccounts"), sa, nil); err != nil {
		return err
	}
	redirect(w, r, s, consolePath("projects", ns, "robots"), "Created the robot account "+name+".")
	return nil
}

// createRobotToken requests a token for the account and shows it on the
// answer itself, once: it is in no URL, no cookie and no later page.
func (c *Console) createRobotToken(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, sa := r.PathValue("ns"), r.PathValue("sa")
	secs, err := strconv.ParseInt(r.PostForm.Get("seconds"), 10, 64)
	if err != nil || !slices.ContainsFunc(tokenDurations, func(d duration) bool { return d.Seconds == secs }) {
		return &apiError{Code: http.StatusUnprocessableEntity, Message: "choose one of the durations offered"}
	}
	req := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
		"spec": map[string]any{"expirationSeconds": secs}}
	var answer struct {
		Status struct {
			Token               string    `json:"token"`
			ExpirationTimestamp time.Time `json:"expirationTimestamp"`
		} `json:"status"`
	}
	if err := c.api.sendJSON(r, s.token, http.MethodPost, apiPath("/api/v1", ns, "serviceaccounts", sa, "token"), req, &answer); err != nil {
		return err
	}
	made := &newToken{Account: sa, Token: answer.Status.Token, Expires: answer.Status.ExpirationTimestamp,
		Login: "podman login -u " + sa + " -p " + answer.Status.Token + " " + r.Host}
	return c.showRobots(w, r, s, made)
}

// robotSelector selects the tokens of service account sa of ns.
func robotSelector(ns, sa string) url.Values {
	return url.Values{"fieldSelector": {"userName=system:serviceaccount:" + ns + ":" + sa}}
}

// revokeRobotToken revokes one of a robot account's tokens.
func (c *Console) revokeRobotToken(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, sa, id := r.PathValue("ns"), r.PathValue("sa"), r.PathValue("id")
	if _, _, _, err := c.api.do(r, s.token, call{method: http.MethodDelete,
		path: "/apis/oauth.openshift.io/v1/useroauthaccesstokens/" + url.PathEscape(id), query: robotSelector(ns, sa)}); err != nil {
		return err
	}
	redirect(w, r, s, consolePath("projects", ns, "robots"), "Revoked a token of "+sa+".")
	return nil
}
