package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// listedMeta is the metadata of an object as a list shows it.
type listedMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
}

// tokenObject is a UserOAuthAccessToken: never a secret, only its name.
type tokenObject struct {
	Metadata listedMeta `json:"metadata"`
	UserName string     `json:"userName"`
}

func (t tokenObject) current() bool { return t.Metadata.Annotations["berth.io/current"] == "true" }

// myTokens lists the caller's live tokens, oldest first.
func myTokens(ctx context.Context, c *apiClient) ([]tokenObject, error) {
	var list struct {
		Items []tokenObject `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, pathTokens, nil, &list); err != nil {
		return nil, err
	}
	slices.SortStableFunc(list.Items, func(a, b tokenObject) int {
		return strings.Compare(a.Metadata.CreationTimestamp, b.Metadata.CreationTimestamp)
	})
	return list.Items, nil
}

func newGetTokensCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "tokens",
		Aliases: []string{"token", "useroauthaccesstokens"},
		Short:   "List your live tokens (* marks the one this configuration uses)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := session()
			if err != nil {
				return err
			}
			tokens, err := myTokens(cmd.Context(), c)
			if err != nil {
				return err
			}
			if len(tokens) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No resources found.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tDESCRIPTION\tCREATED\tEXPIRES")
			for _, t := range tokens {
				mark := ""
				if t.current() {
					mark = "*"
				}
				a := t.Metadata.Annotations
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", mark, t.Metadata.Name, orNone(a["berth.io/description"]),
					orNone(t.Metadata.CreationTimestamp), orNone(a["berth.io/expires"]))
			}
			return tw.Flush()
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func newDeleteTokenCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "token NAME",
		Aliases: []string{"tokens", "useroauthaccesstoken"},
		Short:   "Revoke one of your tokens (berth get tokens lists them)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, c, err := session()
			if err != nil {
				return err
			}
			ctx, name := cmd.Context(), args[0]
			tokens, err := myTokens(ctx, c)
			if err != nil {
				return err
			}
			current := slices.ContainsFunc(tokens, func(t tokenObject) bool { return t.Metadata.Name == name && t.current() })
			err = c.do(ctx, http.MethodDelete, pathTokens+"/"+url.PathEscape(name), nil, nil)
			if isNotFound(err) {
				return fmt.Errorf("%w: berth get tokens lists yours", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "useroauthaccesstoken.oauth.openshift.io %q deleted\n", name)
			if current {
				fmt.Fprintf(cmd.ErrOrStderr(), "That was the token of %s: log in again with berth login %s\n", cfg.path, cfg.Server)
			}
			return nil
		},
	}
}
