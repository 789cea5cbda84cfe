package apiserver

import "slices"

// resourceInfo describes a resource for discovery: what kubectl needs to
// map `kubectl get is` to a path and to know which verbs it has.
type resourceInfo struct {
	Group, Version string
	Resource       string // the plural, as in paths
	Singular       string
	Kind           string
	Namespaced     bool
	Verbs          []string
	ShortNames     []string
	// Subresources are served as Resource/sub (e.g. "token").
	Subresources map[string][]string // name → verbs
}

func (r resourceInfo) groupVersion() string {
	if r.Group == "" {
		return r.Version
	}
	return r.Group + "/" + r.Version
}

var (
	verbsCRUD   = []string{"create", "delete", "get", "list", "patch", "update", "watch"}
	verbsStatus = []string{"get", "patch", "update"}
)

// served lists every resource of the management API. Kinds kept in the
// objects table are served by the generic handler (stored.go); the rest
// by their own handlers.
var served = []resourceInfo{
	{Version: "v1", Resource: "configmaps", Singular: "configmap", Kind: "ConfigMap", Namespaced: true,
		Verbs: verbsCRUD, ShortNames: []string{"cm"}},
	{Version: "v1", Resource: "secrets", Singular: "secret", Kind: "Secret", Namespaced: true, Verbs: verbsCRUD},
	{Version: "v1", Resource: "resourcequotas", Singular: "resourcequota", Kind: "ResourceQuota", Namespaced: true,
		Verbs: verbsCRUD, ShortNames: []string{"quota"}},
	{Version: "v1", Resource: "limitranges", Singular: "limitrange", Kind: "LimitRange", Namespaced: true,
		Verbs: verbsCRUD, ShortNames: []string{"limits"}},
	{Version: "v1", Resource: "namespaces", Singular: "namespace", Kind: "Namespace",
		Verbs: []string{"create", "delete", "get", "list"}, ShortNames: []string{"ns"}},
	{Version: "v1", Resource: "serviceaccounts", Singular: "serviceaccount", Kind: "ServiceAccount", Namespaced: true,
		Verbs: verbsCRUD, ShortNames: []string{"sa"},
		Subresources: map[string][]string{"token": {"create"}}},
	// The registry's instances, read-only (pods.go).
	{Version: "v1", Resource: "pods", Singular: "pod", Kind: "Pod", Namespaced: true,
		Verbs: []string{"get", "list"}, ShortNames: []string{"po"},
		Subresources: map[string][]string{"log": {"get"}}},
	{Group: groupApps, Version: "v1", Resource: "deployments", Singular: "deployment", Kind: "Deployment",
		Namespaced: true, Verbs: []string{"get", "list"}, ShortNames: []string{"deploy"}},
	{Group: groupRBAC, Version: "v1", Resource: "rolebindings", Singular: "rolebinding", Kind: "RoleBinding",
		Namespaced: true, Verbs: verbsCRUD},
	{Group: groupRBAC, Version: "v1", Resource: "clusterroles", Singular: "clusterrole", Kind: "ClusterRole",
		Verbs: verbsCRUD},
	{Group: groupRBAC, Version: "v1", Resource: "clusterrolebindings", Singular: "clusterrolebinding",
		Kind: "ClusterRoleBinding", Verbs: verbsCRUD},
	{Group: groupUser, Version: "v1", Resource: "users", Singular: "user", Kind: "User", Verbs: []string{"get", "list"}},
	{Group: groupUser, Version: "v1", Resource: "groups", Singular: "group", Kind: "Group", Verbs: verbsCRUD},
	{Group: groupProject, Version: "v1", Resource: "projects", Singular: "project", Kind: "Project",
		Verbs: []string{"delete", "get", "list"}},
	{Group: groupProject, Version: "v1", Resource: "projectrequests", Singular: "projectrequest", Kind: "ProjectRequest",
		Verbs: []string{"create"}},
	{Group: groupAuthz, Version: "v1", Resource: "resourceaccessreviews", Singular: "resourceaccessreview",
		Kind: "ResourceAccessReview", Namespaced: true, Verbs: []string{"create"}},
	{Group: groupImage, Version: "v1", Resource: "images", Singular: "image", Kind: "Image",
		Verbs: []string{"get", "list"}},
	{Group: groupImage, Version: "v1", Resource: "imagestreams", Singular: "imagestream", Kind: "ImageStream",
		Namespaced: true, Verbs: verbsCRUD, ShortNames: []string{"is"}},
	{Group: groupImage, Version: "v1", Resource: "imagestreamimports", Singular: "imagestreamimport", Kind: "ImageStreamImport",
		Namespaced: true, Verbs: []string{"create"}},
	{Group: groupImage, Version: "v1", Resource: "imagestreamtags", Singular: "imagestreamtag", Kind: "ImageStreamTag",
		Namespaced: true, Verbs: []string{"create", "delete", "get", "list", "update", "watch"}, ShortNames: []string{"istag"}},
	// After image.openshift.io: the order of groups is kubectl's priority,
	// so a bare "images" is the registry's images, as on the reference.
	{Group: groupConfig, Version: "v1", Resource: "images", Singular: "image", Kind: "Image", Verbs: verbsCRUD,
		Subresources: map[string][]string{"status": verbsStatus}},
	{Group: groupConfig, Version: "v1", Resource: "clusteroperators", Singular: "clusteroperator", Kind: "ClusterOperator",
		Verbs: verbsCRUD, ShortNames: []string{"co"}, Subresources: map[string][]string{"status": verbsStatus}},
	{Group: groupImageRegistry, Version: "v1", Resource: "configs", Singular: "config", Kind: "Config", Verbs: verbsCRUD,
		Subresources: map[string][]string{"status": verbsStatus, "storagemigration": {"create"}, "garbagecollection": {"create"}}},
	{Group: groupImageRegistry, Version: "v1", Resource: "imagepruners", Singular: "imagepruner", Kind: "ImagePruner", Verbs: verbsCRUD,
		Subresources: map[string][]string{"status": verbsStatus, "prune": {"create"}}},
	{Group: groupRoute, Version: "v1", Resource: "routes", Singular: "route", Kind: "Route", Namespaced: true,
		Verbs: []string{"get", "list", "watch"}},
	{Group: groupOAuth, Version: "v1", Resource: "useroauthaccesstokens", Singular: "useroauthaccesstoken",
		Kind: "UserOAuthAccessToken", Verbs: []string{"delete", "get", "list"},
		// Berth's short names: `berth get tokens`, `berth delete token NAME`.
		ShortNames: []string{"tokens", "token"}},
	// Berth's own kinds (kinds_webhook.go), last: no other group serves
	// their names. No short names: kubectl's built-in ones would be
	// easy to clash with, and the names are short.
	// Whether the caller may do something (selfreview.go): kubectl auth can-i.
	{Group: groupAuthorizationK8s, Version: "v1", Resource: "selfsubjectaccessreviews", Singular: "selfsubjectaccessreview",
		Kind: "SelfSubjectAccessReview", Verbs: []string{"create"}},
	// The audit log, read-only (kinds_audit.go).
	{Group: groupBerth, Version: "v1", Resource: "auditevents", Singular: "auditevent", Kind: "AuditEvent", Namespaced: true,
		Verbs: []string{"list"}},
	{Group: groupBerth, Version: "v1", Resource: "webhooks", Singular: "webhook", Kind: "Webhook", Namespaced: true,
		Verbs: verbsCRUD, Subresources: map[string][]string{"status": verbsStatus}},
	{Group: groupBerth, Version: "v1", Resource: "clusterwebhooks", Singular: "clusterwebhook", Kind: "ClusterWebhook",
		Verbs: verbsCRUD, Subresources: map[string][]string{"status": verbsStatus}},
	{Group: groupBerth, Version: "v1", Resource: "proxycaches", Singular: "proxycache", Kind: "ProxyCache", Verbs: verbsCRUD},
}

// groupVersions lists the API groups served (besides the core group) with
// their versions, in the order of served: kubectl resolves a resource name
// that several groups serve to the first.
func groupVersions() []resourceInfo {
	var out []resourceInfo
	for _, r := range served {
		if r.Group != "" && !slices.ContainsFunc(out, func(o resourceInfo) bool { return o.Group == r.Group }) {
			out = append(out, resourceInfo{Group: r.Group, Version: r.Version})
		}
	}
	return out
}

// resourcesOf lists the resources of one group version.
func resourcesOf(group, version string) []resourceInfo {
	var out []resourceInfo
	for _, r := range served {
		if r.Group == group && r.Version == version {
			out = append(out, r)
		}
	}
	return out
}

// servedResource is the entry of served for group and resource; a name
// not in the table is a programming error.
func servedResource(group, resource string) resourceInfo {
	for _, r := range served {
		if r.Group == group && r.Resource == resource {
			return r
		}
	}
	panic("apiserver: " + group + "/" + resource + " is not in the served table")
}

// resourceOfKind is the entry of served for a kind of a group; a kind not
// in the table is a programming error.
func resourceOfKind(group, kind string) resourceInfo {
	for _, r := range served {
		if r.Group == group && r.Kind == kind {
			return r
		}
	}
	panic("apiserver: kind " + group + "/" + kind + " is not in the served table")
}
