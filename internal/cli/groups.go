package cli

import (
	"context"
	"errors"
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

// changeMembers reads group name, lets change compute its new members,
// and writes them with a merge patch that carries the resourceVersion it
// read, so the group's other fields stay and a concurrent change is not
// lost: on 409 it reads again and retries. No members left deletes the
// group (only as it was read). It returns whether the group was deleted.
func changeMembers(ctx context.Context, c *apiClient, name string, change func(users []string) ([]string, error)) (deleted bool, err error) {
	err = retryOnConflict(ctx, func(bool) error {
		deleted = false
		g, err := getGroup(ctx, c, name)
		if err != nil {
			return err
		}
		users, err := change(g.Users)
		if err != nil || slices.Equal(users, g.Users) {
			return err
		}
		if len(users) == 0 {
			deleted = true
			return c.do(ctx, http.MethodDelete, groupPath(name), map[string]any{"kind": "DeleteOptions", "apiVersion": "v1",
				"preconditions": map[string]string{"resourceVersion": g.Metadata.ResourceVersion}}, nil)
		}
		return c.do(ctx, http.MethodPatch, groupPath(name), map[string]any{
			"metadata": map[string]string{"resourceVersion": g.Metadata.ResourceVersion}, "users": users}, nil)
	})
	if errors.Is(err, errConflictRetries) {
		return false, fmt.Errorf("group %q: %w", name, err)
	}
	return deleted && err == nil, err
}

func newGroupsCommand() *cobra.Command {
	groups := &cobra.Command{
		Use:   "groups",
		Short: "Manage groups of users",
		Long: `Manage groups of users. Removing the last user with remove-users deletes the
group (a group emptied otherwise, by deleting its users, stays until deleted). Grant roles to a group with berth policy add-role-to-group.`,
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
				return fmt.Errorf("name at least one user (berth adm groups new %s USER...)", name)
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
			if _, err := changeMembers(ctx, c, name, func(have []string) ([]string, error) {
				out := slices.Clone(have)
				for _, u := range users {
					if !slices.Contains(out, u) {
						out = append(out, u)
					}
				}
				return out, nil
			}); err != nil {
				return err
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
			first := true
			deleted, err := changeMembers(ctx, c, name, func(have []string) ([]string, error) {
				// Only the first read says who was never a member: a retry
				// finds those the lost attempt removed already.
				if first {
					first = false
					var absent []string
					for _, u := range users {
						if !slices.Contains(have, u) {
							absent = append(absent, u)
						}
					}
					if len(absent) > 0 {
						return nil, fmt.Errorf("%s not in group %q (berth get groups lists its members)", notMembers(absent), name)
					}
				}
				return slices.DeleteFunc(slices.Clone(have), func(u string) bool { return slices.Contains(users, u) }), nil
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "group.user.openshift.io/%s removed: %s\n", name, quoteList(users))
			if deleted {
				fmt.Fprintf(out, "group.user.openshift.io %q deleted (no members left)\n", name)
			}
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
