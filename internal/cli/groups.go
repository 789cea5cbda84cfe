package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/spf13/cobra"
)

const pathGroups = "/apis/user.openshift.io/v1/groups"

type groupObject struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Users      []string   `json:"users"`
}

func groupPath(name string) string {
	return pathGroups + "/" + url.PathEscape(name)
}

// getGroup reads a group; a missing one says how to create it.
func getGroup(ctx context.Context, c *apiClient, name string) (groupObject, error) {
	var g groupObject
	err := c.do(ctx, http.MethodGet, groupPath(name), nil, &g)
	if isNotFound(err) {
		return g, fmt.Errorf("%w (create it with berth adm groups new %s USER ...)", err, name)
	}
	return g, err
}

func newGroupsCommand() *cobra.Command {
	groups := &cobra.Command{
		Use:   "groups",
		Short: "Manage groups of users",
		Long: `Manage groups of users. A group exists while it has members: removing its last
user deletes it. Grant roles to a group with berth policy add-role-to-group.`,
	}
	groups.AddCommand(&cobra.Command{
		Use:   "new GROUP USER...",
		Short: "Create a group of users",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := session()
			if err != nil {
				return err
			}
			name, users := args[0], uniq(args[1:])
			if len(users) == 0 {
				return fmt.Errorf("name at least one user: Berth keeps a group only while it has members (berth adm groups new %s USER...)", name)
			}
			g := groupObject{APIVersion: "user.openshift.io/v1", Kind: "Group", Metadata: objectMeta{Name: name}, Users: users}
			if err := c.do(cmd.Context(), http.MethodPost, pathGroups, g, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group.user.openshift.io/%s created\n", name)
			return nil
		},
	}, &cobra.Command{
		Use:   "add-users GROUP USER...",
		Short: "Add users to a group",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := session()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			name, users := args[0], uniq(args[1:])
			g, err := getGroup(ctx, c, name)
			if err != nil {
				return err
			}
			changed := false
			for _, u := range users {
				if !slices.Contains(g.Users, u) {
					g.Users = append(g.Users, u)
					changed = true
				}
			}
			if changed {
				if err := c.do(ctx, http.MethodPut, groupPath(name), g, nil); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group.user.openshift.io/%s added: %s\n", name, quoteList(users))
			return nil
		},
	}, &cobra.Command{
		Use:   "remove-users GROUP USER...",
		Short: "Remove users from a group (removing the last deletes the group)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := session()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			name, users := args[0], uniq(args[1:])
			g, err := getGroup(ctx, c, name)
			if err != nil {
				return err
			}
			var absent []string
			for _, u := range users {
				if !slices.Contains(g.Users, u) {
					absent = append(absent, u)
				}
			}
			if len(absent) > 0 {
				return fmt.Errorf("%s not in group %q (berth get groups lists its members)", notMembers(absent), name)
			}
			var kept []string
			for _, u := range g.Users {
				if !slices.Contains(users, u) {
					kept = append(kept, u)
				}
			}
			out := cmd.OutOrStdout()
			if len(kept) == 0 {
				if err := c.do(ctx, http.MethodDelete, groupPath(name), nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(out, "group.user.openshift.io/%s removed: %s\n", name, quoteList(users))
				fmt.Fprintf(out, "group.user.openshift.io %q deleted (no members left)\n", name)
				return nil
			}
			g.Users = kept
			if err := c.do(ctx, http.MethodPut, groupPath(name), g, nil); err != nil {
				return err
			}
			fmt.Fprintf(out, "group.user.openshift.io/%s removed: %s\n", name, quoteList(users))
			return nil
		},
	})
	return groups
}

func notMembers(users []string) string {
	if len(users) == 1 {
		return fmt.Sprintf("user %q is", users[0])
	}
	return "users " + quoteList(users) + " are"
}

// uniq drops repeated names, keeping the first of each.
func uniq(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
