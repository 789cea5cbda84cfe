package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func serviceAccountsPath(project string) string {
	return "/api/v1/namespaces/" + url.PathEscape(project) + "/serviceaccounts"
}

func newCreateCommand() *cobra.Command {
	create := &cobra.Command{
		Use:   "create",
		Short: "Create service accounts and their tokens",
	}
	var project string
	sa := &cobra.Command{
		Use:     "serviceaccount NAME",
		Aliases: []string{"sa"},
		Short:   "Create a service account in the project (a robot or CI identity)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := projectSession(project)
			if err != nil {
				return err
			}
			obj := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]string{"name": args[0]}}
			if err := c.do(cmd.Context(), http.MethodPost, serviceAccountsPath(ns), obj, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serviceaccount/%s created\n", args[0])
			return nil
		},
	}
	addProjectFlag(sa, &project)

	var tokenProject string
	var duration time.Duration
	token := &cobra.Command{
		Use:   "token NAME",
		Short: "Print a new token for a service account of the project",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := projectSession(tokenProject)
			if err != nil {
				return err
			}
			spec := map[string]any{}
			if duration < 0 {
				return fmt.Errorf("--duration must be positive")
			}
			if duration > 0 {
				spec["expirationSeconds"] = int64(duration.Round(time.Second) / time.Second)
			}
			req := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
			var answer struct {
				Status struct {
					Token string `json:"token"`
				} `json:"status"`
			}
			path := serviceAccountsPath(ns) + "/" + url.PathEscape(args[0]) + "/token"
			if err := c.do(cmd.Context(), http.MethodPost, path, req, &answer); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), answer.Status.Token)
			return nil
		},
	}
	addProjectFlag(token, &tokenProject)
	token.Flags().DurationVar(&duration, "duration", 0, "how long the token lasts (default: the server's, one hour; at least 10m)")
	create.AddCommand(sa, token)
	return create
}
