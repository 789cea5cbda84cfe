package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

const groupRBAC = "rbac.authorization.k8s.io"

type subject struct {
	Kind      string `json:"kind"`
	APIGroup  string `json:"apiGroup,omitempty"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

func (s subject) same(o subject) bool {
	return s.Kind == o.Kind && s.Name == o.Name && (s.Kind != "ServiceAccount" || s.Namespace == o.Namespace)
}

type roleBinding struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Subjects   []subject  `json:"subjects"`
	RoleRef    struct {
		APIGroup string `json:"apiGroup"`
		Kind     string `json:"kind"`
		Name     string `json:"name"`
	} `json:"roleRef"`
}

// bindingTarget is where a role is granted: a project's rolebindings or
// the clusterrolebindings.
type bindingTarget struct {
	project string // "" for cluster-wide
}

func (t bindingTarget) collection() string {
	if t.project == "" {
		return "/apis/" + groupRBAC + "/v1/clusterrolebindings"
	}
	return "/apis/" + groupRBAC + "/v1/namespaces/" + url.PathEscape(t.project) + "/rolebindings"
}

func (t bindingTarget) where() string {
	if t.project == "" {
		return "cluster-wide"
	}
	return fmt.Sprintf("in project %q", t.project)
}

// changeRole grants role to subjects (add) or takes it from them, as the
// reference's CLI does with named bindings: a grant goes into the binding
// named after the role, else another binding of the role, else a new one;
// a removal takes the subjects out of every binding of the role, and a
// binding left with no subjects is deleted.
//
// Each binding is written back with the resourceVersion it was read at; when
// someone else changed it in between (409), the whole change is read and
// tried again, so concurrent grants do not lose one another.
func changeRole(ctx context.Context, c *apiClient, t bindingTarget, role string, subjects []subject, add bool) error {
	// A retry of a removal may find subjects already taken out by the
	// attempt that lost the race: only the first attempt says which
	// subjects never held the role.
	err := retryOnConflict(ctx, func(first bool) error {
		return changeRoleOnce(ctx, c, t, role, subjects, add, first)
	})
	if errors.Is(err, errConflictRetries) {
		return fmt.Errorf("the bindings of %q %s: %w", role, t.where(), err)
	}
	return err
}

func changeRoleOnce(ctx context.Context, c *apiClient, t bindingTarget, role string, subjects []subject, add, first bool) error {
	var list struct {
		Items []roleBinding `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, t.collection(), nil, &list); err != nil {
		return err
	}
	var granting []roleBinding
	taken := map[string]bool{}
	for _, rb := range list.Items {
		taken[rb.Metadata.Name] = true
		if rb.RoleRef.Kind == "ClusterRole" && rb.RoleRef.Name == role {
			granting = append(granting, rb)
		}
	}
	held := func(s subject) bool {
		return slices.ContainsFunc(granting, func(rb roleBinding) bool { return containsSubject(rb.Subjects, s) })
	}
	if add {
		var missing []subject
		for _, s := range subjects {
			if !held(s) && !containsSubject(missing, s) {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if len(granting) == 0 {
			return c.do(ctx, http.MethodPost, t.collection(), newRoleBinding(t, freeName(role, taken), role, missing), nil)
		}
		target := granting[0]
		for _, rb := range granting {
			if rb.Metadata.Name == role {
				target = rb
			}
		}
		return setSubjects(ctx, c, t, target, append(target.Subjects, missing...))
	}
	var absent []string
	for _, s := range subjects {
		if !held(s) {
			absent = append(absent, s.Name)
		}
	}
	switch {
	case !first:
	case len(granting) == 0:
		return fmt.Errorf("role %q is not granted to anyone %s", role, t.where())
	case len(absent) > 0:
		return fmt.Errorf("role %q is not granted to %s %s", role, quoteList(absent), t.where())
	}
	for _, rb := range granting {
		var kept []subject
		for _, s := range rb.Subjects {
			if !containsSubject(subjects, s) {
				kept = append(kept, s)
			}
		}
		var err error
		switch {
		case len(kept) == len(rb.Subjects):
			continue
		case len(kept) == 0:
			// Only the binding as it was read: a precondition.
			err = c.do(ctx, http.MethodDelete, t.collection()+"/"+url.PathEscape(rb.Metadata.Name),
				map[string]any{"kind": "DeleteOptions", "apiVersion": "v1",
					"preconditions": map[string]string{"resourceVersion": rb.Metadata.ResourceVersion}}, nil)
		default:
			err = setSubjects(ctx, c, t, rb, kept)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// setSubjects makes subjects those of the binding rb, as it was read: a
// merge patch of the subjects alone (the binding's other fields, labels
// and annotations, stay), with the resourceVersion it was read at as a
// precondition.
func setSubjects(ctx context.Context, c *apiClient, t bindingTarget, rb roleBinding, subjects []subject) error {
	patch := map[string]any{"metadata": map[string]string{"resourceVersion": rb.Metadata.ResourceVersion}, "subjects": subjects}
	return c.do(ctx, http.MethodPatch, t.collection()+"/"+url.PathEscape(rb.Metadata.Name), patch, nil)
}

func newRoleBinding(t bindingTarget, name, role string, subjects []subject) roleBinding {
	rb := roleBinding{APIVersion: groupRBAC + "/v1", Kind: "RoleBinding", Subjects: subjects,
		Metadata: objectMeta{Name: name, Namespace: t.project}}
	if t.project == "" {
		rb.Kind = "ClusterRoleBinding"
	}
	rb.RoleRef.APIGroup, rb.RoleRef.Kind, rb.RoleRef.Name = groupRBAC, "ClusterRole", role
	return rb
}

// freeName is role, or role-N when a binding of another role has that name.
func freeName(role string, taken map[string]bool) string {
	name := role
	for n := 0; taken[name]; n++ {
		name = fmt.Sprintf("%s-%d", role, n)
	}
	return name
}

func containsSubject(list []subject, s subject) bool {
	for _, o := range list {
		if o.same(s) {
			return true
		}
	}
	return false
}

func quoteList(names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf("%q", names[0])
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// roleCommand builds one of the add-/remove- verbs: kind is "User" or
// "Group"; cluster makes it cluster-wide (berth adm policy).
func roleCommand(use, short, kind string, add, cluster bool) *cobra.Command {
	var project string
	var serviceAccounts []string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			role, names := args[0], args[1:]
			t := bindingTarget{}
			if !cluster {
				if t.project, err = projectOf(cfg, project); err != nil {
					return err
				}
			}
			var subjects []subject
			for _, n := range names {
				subjects = append(subjects, subject{Kind: kind, APIGroup: groupRBAC, Name: n})
			}
			for _, sa := range serviceAccounts {
				ns := t.project
				if p, n, ok := strings.Cut(sa, "/"); ok && cluster {
					ns, sa = p, n
				}
				if ns == "" {
					return errors.New("a cluster-wide grant to a service account names it PROJECT/NAME")
				}
				subjects = append(subjects, subject{Kind: "ServiceAccount", Name: sa, Namespace: ns})
				names = append(names, sa)
			}
			if len(subjects) == 0 {
				return fmt.Errorf("name at least one %s (berth policy %s)", strings.ToLower(kind), cmd.Use)
			}
			if err := changeRole(cmd.Context(), c, t, role, subjects, add); err != nil {
				return err
			}
			verb := "removed"
			if add {
				verb = "added"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "clusterrole.rbac.authorization.k8s.io/%s %s: %s\n", role, verb, quoteList(names))
			return nil
		},
	}
	if !cluster {
		addProjectFlag(cmd, &project)
	}
	if kind == "User" {
		help := "service account of the project to act on (repeatable)"
		if cluster {
			help = "service account, as PROJECT/NAME (repeatable)"
		}
		cmd.Flags().StringSliceVarP(&serviceAccounts, "serviceaccount", "z", nil, help)
	}
	return cmd
}

func newPolicyCommand() *cobra.Command {
	policy := &cobra.Command{
		Use:   "policy",
		Short: "Grant and take roles in a project; ask who can do what",
	}
	policy.AddCommand(
		roleCommand("add-role-to-user ROLE [USER...]", "Grant a role in the project to users (or -z service accounts)", "User", true, false),
		roleCommand("remove-role-from-user ROLE [USER...]", "Take a role in the project from users (or -z service accounts)", "User", false, false),
		roleCommand("add-role-to-group ROLE GROUP...", "Grant a role in the project to groups", "Group", true, false),
		roleCommand("remove-role-from-group ROLE GROUP...", "Take a role in the project from groups", "Group", false, false),
		newWhoCanCommand(),
	)
	return policy
}

func newAdmCommand() *cobra.Command {
	adm := &cobra.Command{
		Use:   "adm",
		Short: "Cluster administration",
	}
	policy := &cobra.Command{
		Use:   "policy",
		Short: "Grant and take cluster-wide roles",
	}
	policy.AddCommand(
		roleCommand("add-cluster-role-to-user ROLE USER...", "Grant a role everywhere to users", "User", true, true),
		roleCommand("remove-cluster-role-from-user ROLE USER...", "Take a cluster-wide role from users", "User", false, true),
		roleCommand("add-cluster-role-to-group ROLE GROUP...", "Grant a role everywhere to groups", "Group", true, true),
		roleCommand("remove-cluster-role-from-group ROLE GROUP...", "Take a cluster-wide role from groups", "Group", false, true),
	)
	adm.AddCommand(policy, newGroupsCommand(), newHtpasswdCommand(), newMigrateStorageCommand(), newMigrateStoreCommand(), newGCCommand(), newPruneCommand())
	return adm
}

// resourceGroups are the API groups of resources named without one; any
// other resource is taken to be image.openshift.io's.
var resourceGroups = map[string]string{
	"serviceaccounts":       "",
	"secrets":               "",
	"configmaps":            "",
	"namespaces":            "",
	"projects":              "project.openshift.io",
	"projectrequests":       "project.openshift.io",
	"rolebindings":          groupRBAC,
	"roles":                 groupRBAC,
	"clusterrolebindings":   groupRBAC,
	"resourceaccessreviews": "authorization.openshift.io",
	"users":                 "user.openshift.io",
	"groups":                "user.openshift.io",
}

// parseResource reads RESOURCE[.GROUP][/SUBRESOURCE], e.g.
// imagestreams/layers or imagestreams.image.openshift.io/layers.
func parseResource(s string) (resource, group string) {
	base, sub, hasSub := strings.Cut(s, "/")
	base, group, hasGroup := strings.Cut(base, ".")
	if !hasGroup {
		g, known := resourceGroups[base]
		group = "image.openshift.io"
		if known {
			group = g
		}
	}
	if hasSub {
		base += "/" + sub
	}
	return base, group
}

func newWhoCanCommand() *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:   "who-can VERB RESOURCE",
		Short: "List who may do VERB on RESOURCE in the project (e.g. who-can get imagestreams/layers)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := projectSession(project)
			if err != nil {
				return err
			}
			resource, group := parseResource(args[1])
			review := map[string]string{"kind": "ResourceAccessReview", "apiVersion": "authorization.openshift.io/v1",
				"verb": args[0], "resource": resource, "resourceAPIGroup": group}
			var answer struct {
				Users  []string `json:"users"`
				Groups []string `json:"groups"`
			}
			path := "/apis/authorization.openshift.io/v1/namespaces/" + url.PathEscape(ns) + "/resourceaccessreviews"
			if err := c.do(cmd.Context(), http.MethodPost, path, review, &answer); err != nil {
				return err
			}
			qualified := resource
			if group != "" {
				base, sub, hasSub := strings.Cut(resource, "/")
				qualified = base + "." + group
				if hasSub {
					qualified += "/" + sub
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 1, ' ', 0)
			fmt.Fprintf(tw, "Namespace:\t%s\nVerb:\t%s\nResource:\t%s\n\n", ns, args[0], qualified)
			list := func(title string, names []string) {
				if len(names) == 0 {
					fmt.Fprintf(tw, "%s\t<none>\n", title)
				}
				for i, n := range names {
					if i == 0 {
						fmt.Fprintf(tw, "%s\t%s\n", title, n)
					} else {
						fmt.Fprintf(tw, "\t%s\n", n)
					}
				}
			}
			list("Users:", answer.Users)
			fmt.Fprintln(tw)
			list("Groups:", answer.Groups)
			return tw.Flush()
		},
	}
	addProjectFlag(cmd, &project)
	return cmd
}
