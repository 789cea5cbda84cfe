package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

type objectMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

type projectObject struct {
	Metadata objectMeta `json:"metadata"`
	Status   struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

type projectList struct {
	Items []projectObject `json:"items"`
}

func newNewProjectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "new-project NAME",
		Short: "Create a project (you become its admin) and make it the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			req := map[string]any{
				"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest",
				"metadata": map[string]string{"name": args[0]},
			}
			var p projectObject
			if err := c.do(cmd.Context(), http.MethodPost, pathRequests, req, &p); err != nil {
				return err
			}
			cfg.Project = p.Metadata.Name
			if err := cfg.save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Now using project %q on server %q.\n", cfg.Project, cfg.Server)
			return nil
		},
	}
}

func newProjectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "project [NAME]",
		Short: "Show the current project, or switch to another",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				if cfg.Project == "" {
					return fmt.Errorf("no current project: choose one with berth project NAME or create one with berth new-project NAME")
				}
				fmt.Fprintf(out, "Using project %q on server %q.\n", cfg.Project, cfg.Server)
				return nil
			}
			var p projectObject
			if err := c.do(cmd.Context(), http.MethodGet, pathProjects+"/"+url.PathEscape(args[0]), nil, &p); err != nil {
				return err
			}
			cfg.Project = p.Metadata.Name
			if err := cfg.save(); err != nil {
				return err
			}
			fmt.Fprintf(out, "Now using project %q on server %q.\n", cfg.Project, cfg.Server)
			return nil
		},
	}
}

func newGetCommand() *cobra.Command {
	get := &cobra.Command{
		Use:   "get",
		Short: "List objects",
	}
	get.AddCommand(&cobra.Command{
		Use:     "projects",
		Aliases: []string{"project"},
		Short:   "List the projects you can see",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := session()
			if err != nil {
				return err
			}
			var list projectList
			if err := c.do(cmd.Context(), http.MethodGet, pathProjects, nil, &list); err != nil {
				return err
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No resources found.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATUS")
			for _, p := range list.Items {
				fmt.Fprintf(tw, "%s\t%s\n", p.Metadata.Name, p.Status.Phase)
			}
			return tw.Flush()
		},
	}, newGetGroupsCommand(), newGetTokensCommand(), newGetServiceAccountsCommand(), newGetRoleBindingsCommand())
	return get
}

func newDeleteCommand() *cobra.Command {
	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete objects",
	}
	del.AddCommand(&cobra.Command{
		Use:     "project NAME",
		Aliases: []string{"projects"},
		Short:   "Delete a project with its repositories",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodDelete, pathProjects+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "project.project.openshift.io %q deleted\n", args[0])
			if cfg.Project == args[0] {
				cfg.Project = ""
				return cfg.save()
			}
			return nil
		},
	}, newDeleteGroupCommand(), newDeleteTokenCommand(), newDeleteServiceAccountCommand())
	return del
}
