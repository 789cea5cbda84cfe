package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/berth-registry/berth/internal/auth"
)

// ClusterRoles that users create (rbac.authorization.k8s.io ClusterRole)
// are API objects like any stored kind, beside the built-in roles, which
// are data in internal/auth. A write of one is an access change: the
// authorizer caches roles while the access generation stands still, so a
// role narrowed or deleted applies at the next request.

func isClusterRole(k ObjectKey) bool { return k.Group == rbacGroup && k.Resource == "clusterroles" }

// ClusterRoles returns the stored ClusterRoles by name, as the authorizer
// reads them (rules of API groups, resources and verbs).
func (s *Store) ClusterRoles(ctx context.Context) (map[string]auth.Role, error) {
	objs, _, _, err := s.ListObjects(ctx, ObjectQuery{Group: rbacGroup, Resource: "clusterroles"})
	if err != nil {
		return nil, err
	}
	roles := make(map[string]auth.Role, len(objs))
	for _, o := range objs {
		var cr struct {
			Rules []struct {
				APIGroups []string `json:"apiGroups"`
				Resources []string `json:"resources"`
				Verbs     []string `json:"verbs"`
			} `json:"rules"`
		}
		if err := json.Unmarshal(o.Body, &cr); err != nil {
			return nil, fmt.Errorf("read %s: %w", o.ObjectKey, err)
		}
		var role auth.Role
		for _, r := range cr.Rules {
			role.Rules = append(role.Rules, auth.Rule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs})
		}
		roles[o.Name] = role
	}
	return roles, nil
}
