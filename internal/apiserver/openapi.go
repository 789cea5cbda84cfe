package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	berthv1 "github.com/berth-registry/berth/internal/api/berth/v1"
	configv1 "github.com/berth-registry/berth/internal/api/config/v1"
	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	routev1 "github.com/berth-registry/berth/internal/api/route/v1"
)

// OpenAPI v3 documents, one per group version, with a schema for every
// kind served, so that `kubectl explain imagestreams.spec` works. The
// schemas are derived from the Go types by their JSON names. The paths
// carry GET operations only (kubectl explain finds a resource's kind
// there): with no PATCH operation kubectl neither asks for server-side
// field validation nor computes strategic merge patches from these
// schemas, so create, apply and edit behave as with the empty v2 document
// (the server validates).

// schemaKind is one kind's schema source.
type schemaKind struct {
	group, version, kind string
	goType               any
	description          string
}

var schemaKinds = []schemaKind{
	{"", "v1", "ConfigMap", corev1.ConfigMap{}, "ConfigMap holds configuration data for pods (and, here, the registry: CA bundles in openshift-config) to consume."},
	{"", "v1", "Secret", corev1.Secret{}, "Secret holds secret data of a certain type (Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson). Values are base64 in data; stringData is write-only."},
	{"", "v1", "Namespace", corev1.Namespace{}, "Namespace is a project: the scope of image streams, secrets, config maps and role bindings."},
	{"", "v1", "ServiceAccount", corev1.ServiceAccount{}, "ServiceAccount is a robot identity of a project; request its tokens with the token subresource."},
	{groupRBAC, "v1", "RoleBinding", rbacv1.RoleBinding{}, "RoleBinding grants a cluster role to users, groups and service accounts in one project."},
	{groupRBAC, "v1", "ClusterRoleBinding", rbacv1.ClusterRoleBinding{}, "ClusterRoleBinding grants a cluster role to users, groups and service accounts everywhere."},
	{groupRBAC, "v1", "ClusterRole", rbacv1.ClusterRole{}, "ClusterRole is a named set of rules of verbs on resources: one of Berth's built-in roles (read-only) or one a cluster administrator created."},
	{groupImage, "v1", "ImageStream", imagev1.ImageStream{}, "ImageStream is a repository of the registry: its tags and each tag's history, newest first. A push to <project>/<name>:<tag> adds an entry."},
	{groupImage, "v1", "ImageStreamTag", imagev1.ImageStreamTag{}, "ImageStreamTag is one tag of an image stream (NAME:TAG) and the image it points at."},
	{groupImage, "v1", "Image", imagev1.Image{}, "Image is a manifest stored in the registry, named by its digest, with its layers and the metadata of its config."},
	{groupImageRegistry, "v1", "Config", imageregistryv1.Config{}, "Config is the registry's configuration, reconciled by the operator. Only the one named cluster is honoured."},
	{groupConfig, "v1", "ClusterOperator", configv1.ClusterOperator{}, "ClusterOperator reports an operator's health: image-registry is the union of the registry Config's conditions."},
	{groupConfig, "v1", "Image", ImageConfig{}, "Image holds cluster-wide image settings: registries imports may reach, additional trusted CAs, external host names. Only the one named cluster is honoured."},
	{groupRoute, "v1", "Route", routev1.Route{}, "Route is a host name the registry is exposed as, generated from the registry Config's spec.defaultRoute and spec.routes (read-only); the registry serves the host itself."},
	{groupProject, "v1", "Project", Project{}, "Project is a namespace with the registry's access rules; request one with projectrequests."},
	{groupUser, "v1", "User", User{}, "User is a person who logged in; ~ is the caller."},
	{groupUser, "v1", "Group", Group{}, "Group is a named set of users; roles granted to it reach its members."},
	{groupOAuth, "v1", "UserOAuthAccessToken", UserOAuthAccessToken{}, "UserOAuthAccessToken is one of the caller's tokens (never its secret)."},
	{groupBerth, "v1", "Webhook", berthv1.Webhook{}, "Webhook sends its project's registry events (push, pull, delete, tag) to an HTTP endpoint as CloudEvents; status reports the deliveries."},
	{groupBerth, "v1", "ClusterWebhook", berthv1.Webhook{}, "ClusterWebhook sends every project's registry events (push, pull, delete, tag) to an HTTP endpoint as CloudEvents; status reports the deliveries."},
	{groupBerth, "v1", "AuditEvent", berthv1.AuditEvent{}, "AuditEvent is a row of the audit log (read-only): who pushed, pulled, tagged, deleted or changed access, and when. A project's admins list its rows; cluster administrators every row."},
	{groupBerth, "v1", "ProxyCache", berthv1.ProxyCache{}, "ProxyCache, named after a project, makes it serve <project>/<name>:<tag> from an upstream registry on first pull, keeping what it fetched."},
}

func (s *Server) openAPIRoutes() {
	s.handle("GET /openapi/v3", s.openAPIv3Index)
	s.handle("GET /openapi/v3/{path...}", s.openAPIv3Document)
}

// openAPIv3Docs are the documents by path ("api/v1", "apis/G/V"), built
// once: the types do not change while the server runs.
var openAPIv3Docs = sync.OnceValue(func() map[string][]byte {
	schemas := map[string]map[string]any{}
	paths := map[string]map[string]any{}
	for _, k := range schemaKinds {
		gv := "apis/" + k.group + "/" + k.version
		if k.group == "" {
			gv = "api/" + k.version
		}
		if schemas[gv] == nil {
			schemas[gv], paths[gv] = map[string]any{}, map[string]any{}
		}
		gvk := map[string]string{"group": k.group, "version": k.version, "kind": k.kind}
		schema := schemaOf(reflect.TypeOf(k.goType), 0)
		schema["description"] = k.description
		schema["x-kubernetes-group-version-kind"] = []map[string]string{gvk}
		name := schemaName(k)
		schemas[gv][name] = schema

		info := resourceOfKind(k.group, k.kind)
		collection := "/" + gv + "/" + info.Resource
		if info.Namespaced {
			collection = "/" + gv + "/namespaces/{namespace}/" + info.Resource
		}
		paths[gv][collection+"/{name}"] = map[string]any{"get": map[string]any{
			"description":                     "read the specified " + k.kind,
			"operationId":                     "read" + k.kind,
			"x-kubernetes-group-version-kind": gvk,
			"responses": map[string]any{"200": map[string]any{"description": "OK",
				"content": map[string]any{"application/json": map[string]any{
					"schema": map[string]any{"$ref": "#/components/schemas/" + name}}}}},
		}}
	}
	docs := map[string][]byte{}
	for gv := range schemas {
		docs[gv] = mustJSON(map[string]any{
			"openapi":    "3.0.0",
			"info":       map[string]string{"title": "Berth", "version": "v1." + KubernetesMinor},
			"paths":      paths[gv],
			"components": map[string]any{"schemas": schemas[gv]},
		})
	}
	return docs
})

// schemaName is the reference's style of schema name: the reversed group
// and the kind, e.g. io.openshift.image.v1.ImageStream.
func schemaName(k schemaKind) string {
	group := "io.k8s.api.core"
	if k.group != "" {
		parts := strings.Split(k.group, ".")
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		group = strings.Join(parts, ".")
	}
	return group + "." + k.version + "." + k.kind
}

func docHash(b []byte) string {
	sum := sha256.Sum256(b)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// openAPIv3Index is the discovery of the documents, each at a URL with its
// hash, which kubectl caches by.
func (s *Server) openAPIv3Index(w http.ResponseWriter, _ *http.Request) error {
	paths := map[string]any{}
	for path, doc := range openAPIv3Docs() {
		paths[path] = map[string]string{"serverRelativeURL": "/openapi/v3/" + path + "?hash=" + docHash(doc)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"paths": paths})
	return nil
}

func (s *Server) openAPIv3Document(w http.ResponseWriter, r *http.Request) error {
	doc, ok := openAPIv3Docs()[r.PathValue("path")]
	if !ok {
		return &StatusError{http.StatusNotFound, "NotFound", "no OpenAPI document for " + r.PathValue("path")}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Etag", `"`+docHash(doc)+`"`)
	if r.URL.Query().Get("hash") != "" {
		w.Header().Set("Cache-Control", "public, immutable")
	}
	_, _ = w.Write(doc)
	return nil
}

// commonFields describes the fields every kind has, as Kubernetes does.
var commonFields = map[string]string{
	"apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
	"kind":       "Kind is a string value representing the REST resource this object represents.",
	"metadata":   "Standard object's metadata: name, namespace, uid, resourceVersion, labels, annotations, creationTimestamp.",
	"spec":       "What the object should be: set by users.",
	"status":     "What the object is: set by the server.",
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	rawMessage    = reflect.TypeFor[json.RawMessage]()
	intOrString   = reflect.TypeFor[intstr.IntOrString]()
)

// schemaOf is the OpenAPI schema of a Go type as encoding/json writes it.
// Types with their own JSON encoding (times, durations, quantities) are
// strings; raw JSON is any object.
func schemaOf(t reflect.Type, depth int) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case depth > 16:
		return map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	case t == intOrString:
		return map[string]any{"x-kubernetes-int-or-string": true}
	case t == rawMessage:
		return map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	case t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler):
		if t.Kind() == reflect.Struct && strings.HasSuffix(t.Name(), "Time") {
			return map[string]any{"type": "string", "format": "date-time"}
		}
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), depth+1)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), depth+1)}
	case reflect.Struct:
		props := map[string]any{}
		addFields(props, t, depth)
		return map[string]any{"type": "object", "properties": props}
	default:
		return map[string]any{}
	}
}

// addFields adds the JSON fields of struct t to props, those of inlined
// (embedded, unnamed) structs included.
func addFields(props map[string]any, t reflect.Type, depth int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(props, ft, depth)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		schema := schemaOf(f.Type, depth+1)
		if d := f.Tag.Get("description"); d != "" {
			schema["description"] = d
		} else if d := commonFields[name]; d != "" && depth == 0 {
			schema["description"] = d
		}
		props[name] = schema
	}
}
