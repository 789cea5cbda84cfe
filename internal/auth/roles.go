package auth

import "strings"

// The built-in roles, as data: the reference platform's registry roles and
// the generic view/edit/admin/cluster-admin. A rule grants verbs on
// resources of API groups; "*" matches anything. The registry's /v2
// operations are checks on image.openshift.io:
//
//	pull                        get    imagestreams/layers
//	push                        update imagestreams/layers
//	push creating a repository  create imagestreams
//	delete a manifest or blob   delete images
//	catalog                     list   imagestreams
//	metrics                     get    registry/metrics (cluster-wide)
const (
	groupImage   = "image.openshift.io"
	groupCore    = ""
	groupRBAC    = "rbac.authorization.k8s.io"
	groupProject = "project.openshift.io"
	groupAuthz   = "authorization.openshift.io"
	groupBerth   = "berth.io"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}
	allVerbs   = []string{"*"}

	imageReadResources  = []string{"imagestreams", "imagestreamtags", "imagestreamimages", "images", "imagestreams/status"}
	imageWriteResources = []string{"imagestreams", "imagestreamtags", "imagestreamimages", "imagestreammappings",
		"imagestreamimports", "images"}
	// projectResources are the ordinary namespaced kinds edit and view
	// cover; secrets are left to edit and admin.
	projectResources = []string{"configmaps", "serviceaccounts", "namespaces", "projects"}
	// A project's webhooks are its admins' alone (admin, registry-admin):
	// a webhook's URL may carry the receiver's token, so edit, view and
	// the registry's viewer and editor do not even read them. Their status
	// is the server's to write. ClusterWebhooks are cluster-admin's only.
	webhookResource       = []string{"webhooks"}
	webhookStatusResource = []string{"webhooks/status"}
	// A project's audit log (who pushed, pulled, deleted, changed
	// roles) is for its admins; every project's for cluster admins.
	auditResource = []string{"auditevents"}
	// A project's quotas bound what its members push: they read them, and
	// only a cluster administrator writes them (as on Kubernetes, where
	// admin reads resourcequotas and limitranges).
	quotaResources = []string{"resourcequotas", "limitranges"}
	// adminCoreResources are the core kinds a project's admin writes: all
	// but its quotas.
	adminCoreResources = append(append([]string{}, projectResources...), "secrets", "serviceaccounts/token", "pods", "pods/log")
)

func rule(groups []string, resources []string, verbs ...[]string) Rule {
	var vs []string
	for _, v := range verbs {
		vs = append(vs, v...)
	}
	return Rule{APIGroups: groups, Resources: resources, Verbs: vs}
}

func one(s string) []string { return []string{s} }

// BuiltinRoles is the table of roles; it is read-only.
var BuiltinRoles = map[string]Role{
	"cluster-admin": {Rules: []Rule{rule(one("*"), one("*"), allVerbs)}},
	"admin": {Rules: []Rule{
		rule([]string{groupImage, groupProject}, one("*"), allVerbs),
		rule(one(groupCore), adminCoreResources, allVerbs),
		rule(one(groupCore), quotaResources, readVerbs),
		rule(one(groupRBAC), []string{"rolebindings", "roles"}, allVerbs),
		rule(one(groupAuthz), one("resourceaccessreviews"), one("create")),
		rule(one(groupBerth), webhookResource, allVerbs),
		rule(one(groupBerth), webhookStatusResource, one("get")),
		rule(one(groupBerth), auditResource, one("list")),
	}},
	"edit": {Rules: []Rule{
		rule(one(groupImage), append(imageWriteResources, "imagestreams/layers"), readVerbs, writeVerbs),
		rule(one(groupCore), append(projectResources, "secrets"), readVerbs, writeVerbs),
		rule(one(groupCore), one("serviceaccounts/token"), one("create")),
		rule(one(groupCore), quotaResources, readVerbs),
	}},
	"view": {Rules: []Rule{
		rule(one(groupImage), imageReadResources, readVerbs),
		rule(one(groupImage), one("imagestreams/layers"), one("get")),
		rule([]string{groupCore, groupProject}, projectResources, readVerbs),
		rule(one(groupCore), quotaResources, readVerbs),
	}},
	"registry-admin": {Rules: []Rule{
		rule(one(groupImage), append(imageWriteResources, "imagestreams/layers", "imagestreams/status"), readVerbs, writeVerbs),
		rule(one(groupRBAC), one("rolebindings"), allVerbs),
		rule([]string{groupCore, groupProject}, []string{"namespaces", "projects"}, one("get")),
		rule(one(groupCore), quotaResources, readVerbs),
		rule(one(groupAuthz), one("resourceaccessreviews"), one("create")),
		rule(one(groupBerth), webhookResource, readVerbs, writeVerbs),
		rule(one(groupBerth), webhookStatusResource, one("get")),
		rule(one(groupBerth), auditResource, one("list")),
	}},
	"registry-editor": {Rules: []Rule{
		rule(one(groupImage), imageWriteResources, readVerbs, writeVerbs),
		rule(one(groupImage), one("imagestreams/layers"), []string{"get", "update"}),
		rule([]string{groupCore, groupProject}, []string{"namespaces", "projects"}, one("get")),
	}},
	"registry-viewer": {Rules: []Rule{
		rule(one(groupImage), imageReadResources, readVerbs),
		rule(one(groupImage), one("imagestreams/layers"), one("get")),
		rule([]string{groupCore, groupProject}, []string{"namespaces", "projects"}, one("get")),
	}},
	"system:image-puller": {Rules: []Rule{
		rule(one(groupImage), one("imagestreams/layers"), one("get")),
	}},
	"system:image-pusher": {Rules: []Rule{
		rule(one(groupImage), one("imagestreams/layers"), []string{"get", "update"}),
	}},
	"system:image-builder": {Rules: []Rule{
		rule(one(groupImage), one("imagestreams/layers"), []string{"get", "update"}),
		rule(one(groupImage), one("imagestreams"), one("create")),
	}},
	"system:image-pruner": {Rules: []Rule{
		rule(one(groupImage), []string{"images", "imagestreams", "imagestreamtags"}, readVerbs),
		rule(one(groupImage), one("images"), one("delete")),
		rule(one(groupImage), one("imagestreams/status"), one("update")),
	}},
	"system:registry": {Rules: []Rule{
		rule(one(groupImage), []string{"images", "imagestreams", "imagestreamtags", "imagestreamimages"}, readVerbs),
		rule(one(groupImage), one("imagestreammappings"), one("create")),
		rule(one(groupImage), one("imagestreams/layers"), one("get")),
	}},
	"self-provisioner": {Rules: []Rule{
		rule(one(groupProject), one("projectrequests"), one("create")),
	}},
}

// ReservedProject reports whether a project name belongs to the system, as
// on the reference: "default", "openshift", and names beginning "openshift-"
// or "kube-". Nobody may request one; only a cluster administrator creates
// them (Berth creates openshift-config and openshift-image-registry itself).
func ReservedProject(name string) bool {
	return name == "default" || name == "openshift" ||
		strings.HasPrefix(name, "openshift-") || strings.HasPrefix(name, "kube-")
}
