package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// age is how long ago an RFC 3339 timestamp was, as oc shows it (42s,
// 5m, 3h, 12d, 2y); "<unknown>" when it is missing or unreadable.
func age(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return "<unknown>"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	default:
		return fmt.Sprintf("%dy", int(d/(365*24*time.Hour)))
	}
}

// noneIn says a project's list is empty, as oc does.
func noneIn(w io.Writer, project string) {
	fmt.Fprintf(w, "No resources found in %s namespace.\n", project)
}

func newGetServiceAccountsCommand() *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:     "serviceaccounts",
		Aliases: []string{"serviceaccount", "sa"},
		Short:   "List the service accounts of the project",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := projectSession(project)
			if err != nil {
				return err
			}
			var list struct {
				Items []struct {
					Metadata listedMeta `json:"metadata"`
				} `json:"items"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, serviceAccountsPath(ns), nil, &list); err != nil {
				return err
			}
			if len(list.Items) == 0 {
				noneIn(cmd.ErrOrStderr(), ns)
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tAGE")
			for _, sa := range list.Items {
				fmt.Fprintf(tw, "%s\t%s\n", sa.Metadata.Name, age(sa.Metadata.CreationTimestamp, now))
			}
			return tw.Flush()
		},
	}
	addProjectFlag(cmd, &project)
	return cmd
}

func newDeleteServiceAccountCommand() *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:     "serviceaccount NAME",
		Aliases: []string{"serviceaccounts", "sa"},
		Short:   "Delete a service account of the project, with its tokens and role bindings",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := projectSession(project)
			if err != nil {
				return err
			}
			err = c.do(cmd.Context(), http.MethodDelete, serviceAccountsPath(ns)+"/"+url.PathEscape(args[0]), nil, nil)
			if isNotFound(err) {
				return fmt.Errorf("%w in project %q: berth get serviceaccounts -n %s lists them", err, ns, ns)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serviceaccount %q deleted\n", args[0])
			return nil
		},
	}
	addProjectFlag(cmd, &project)
	return cmd
}

// subjectString names a binding's subject as KIND/NAME, a service account
// as ServiceAccount/PROJECT/NAME.
func subjectString(s subject) string {
	if s.Kind == "ServiceAccount" {
		return s.Kind + "/" + s.Namespace + "/" + s.Name
	}
	return s.Kind + "/" + s.Name
}

func newGetRoleBindingsCommand() *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:     "rolebindings",
		Aliases: []string{"rolebinding"},
		Short:   "List who holds which role in the project",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := projectSession(project)
			if err != nil {
				return err
			}
			var list struct {
				Items []roleBinding `json:"items"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, bindingTarget{project: ns}.collection(), nil, &list); err != nil {
				return err
			}
			if len(list.Items) == 0 {
				noneIn(cmd.ErrOrStderr(), ns)
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSUBJECTS")
			for _, rb := range list.Items {
				var subjects []string
				for _, s := range rb.Subjects {
					subjects = append(subjects, subjectString(s))
				}
				fmt.Fprintf(tw, "%s\t%s/%s\t%s\n", rb.Metadata.Name, rb.RoleRef.Kind, rb.RoleRef.Name, strings.Join(subjects, ", "))
			}
			return tw.Flush()
		},
	}
	addProjectFlag(cmd, &project)
	return cmd
}
