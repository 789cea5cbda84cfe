package apiserver

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Groups of users are a stored kind (user.openshift.io Group): the generic
// handlers serve them with watch, patch and resourceVersions, and the
// store keeps the membership index the authenticator reads in the same
// transaction. Managing them is cluster-scoped: only roles granting groups
// in user.openshift.io cluster-wide (cluster-admin) may.

// Group is user.openshift.io/v1 Group.
type Group struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Users             []string `json:"users" description:"The members of the group."`
}

// DeepCopyObject implements runtime.Object.
func (g *Group) DeepCopyObject() runtime.Object { return deepCopyJSON(g) }

var groupKind = &storedKind{
	info: servedResource(groupUser, "groups"),
	new:  func() object { return &Group{} },
	prepare: func(o object) {
		if g := o.(*Group); g.Users == nil {
			g.Users = []string{}
		}
	},
	nameProblems: bindingNameProblems,
	validate: func(o object) []string {
		g := o.(*Group)
		var problems []string
		if strings.HasPrefix(g.Name, "system:") {
			// The authenticator derives these (system:authenticated,
			// system:serviceaccounts:<project>, …); a stored member would get
			// what they grant without being what they mean.
			problems = append(problems, fmt.Sprintf("metadata.name: Invalid value: %q: group names starting with system: are reserved", g.Name))
		}
		for i, u := range g.Users {
			if u == "" || strings.ContainsAny(u, "\x00\n") {
				problems = append(problems, fmt.Sprintf("users[%d]: Invalid value: %q: a user name", i, u))
			}
		}
		return problems
	},
	columns: []metav1.TableColumnDefinition{columnName, column("Users", "The members of the group.", 0)},
	cells:   func(o object) []any { return []any{o.GetName(), strings.Join(o.(*Group).Users, ", ")} },
}
