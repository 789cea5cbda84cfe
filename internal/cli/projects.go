package cli

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

type objectMeta struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
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
