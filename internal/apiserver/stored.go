package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// object is a typed API object (a *corev1.ConfigMap, …).
type object interface {
	runtime.Object
	metav1.Object
}

// storedKind is a kind kept in the store's objects table and served by
// the generic handlers below: list (and watch), create, get, update,
// patch, delete, with optimistic concurrency, selectors and Tables.
type storedKind struct {
	info resourceInfo
	new  func() object
	// builtin kinds accept strategic merge patches (their Go types carry
	// the merge keys); others answer 415, as a real server does.
	builtin bool
	// prepare normalizes an object before it is validated and stored.
	prepare func(object)
	// validate returns the reasons an object is invalid (field: problem).
	validate func(object) []string
	// validateUpdate returns why new may not replace old (immutable
	// fields).
	validateUpdate func(old, new object) []string
	// nameProblems checks a name; the default is a DNS-1123 subdomain.
	nameProblems func(name string) []string
	// statusOnly is set on the copy of a kind that serves its /status.
	statusOnly bool
	// hasStatus kinds have a status subresource: writes to the object
	// keep its status, writes to /status change nothing else, and a
	// create starts without one (the server's controller fills it).
	hasStatus bool
	// spec, when set, returns the object's spec: metadata.generation
	// starts at 1 and grows by one with each write that changes it, so a
	// controller's status.observedGeneration tells which spec it acted on.
	spec func(object) any
	// admit decides, with the request's identity in ctx, whether the
	// caller may write obj (beyond the verb on the resource: no escalation
	// through role bindings).
	admit func(ctx context.Context, s *Server, obj object) error
	// present, when set, completes an object read from the store before
	// it is shown (fields computed on read, such as a quota's usage).
	present func(ctx context.Context, s *Server, obj object) error
	// readOnly, when set, is why the kind may only be read: every write
	// answers 405 with it.
	readOnly string
	columns  []metav1.TableColumnDefinition
	cells    func(object) []any
}

func (k *storedKind) resource() auth.Resource {
	if k.statusOnly {
		return auth.Resource{Group: k.info.Group, Resource: k.info.Resource + "/status"}
	}
	return auth.Resource{Group: k.info.Group, Resource: k.info.Resource}
}

func (k *storedKind) key(ns, name string) store.ObjectKey {
	return store.ObjectKey{Group: k.info.Group, Resource: k.info.Resource, Namespace: ns, Name: name}
}

func (k *storedKind) apiVersion() string { return k.info.groupVersion() }

// protobufCodecs decode the protobuf bodies kubectl ≥ 1.32 sends for
// built-in kinds.
var protobufCodecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	for _, add := range protobufSchemes {
		if err := add(scheme); err != nil {
			panic(err) // the static scheme is wrong: a programming error, caught by any test
		}
	}
	return serializer.NewCodecFactory(scheme)
}()

// maxObjectBytes bounds a request body (Kubernetes allows about 3 MiB);
// the data of a ConfigMap or Secret is limited to 1 MiB on top of that.
const maxObjectBytes = 3 << 20

func (s *Server) storedRoutes() {
	for _, k := range storedKinds {
		base := "/api/" + k.info.Version
		if k.info.Group != "" {
			base = "/apis/" + k.info.Group + "/" + k.info.Version
		}
		collection := base + "/" + k.info.Resource
		if k.info.Namespaced {
			s.handle("GET "+collection, s.listStored(k))
			collection = base + "/namespaces/{ns}/" + k.info.Resource
		}
		s.handle("GET "+collection, s.listStored(k))
		s.handle("GET "+collection+"/{name}", s.getStored(k))
		if k.readOnly != "" {
			for _, pattern := range []string{"POST " + collection, "PUT " + collection + "/{name}",
				"PATCH " + collection + "/{name}", "DELETE " + collection + "/{name}"} {
				s.handleDryRun(pattern, s.refuseReadOnly(k))
			}
			continue
		}
		s.handleDryRun("POST "+collection, s.createStored(k))
		s.handleDryRun("PUT "+collection+"/{name}", s.updateStored(k))
		s.handleDryRun("PATCH "+collection+"/{name}", s.patchStored(k))
		s.handleDryRun("DELETE "+collection+"/{name}", s.deleteStored(k))
		if k.hasStatus {
			status := k.statusKind()
			s.handle("GET "+collection+"/{name}/status", s.getStored(status))
			s.handleDryRun("PUT "+collection+"/{name}/status", s.updateStored(status))
			s.handleDryRun("PATCH "+collection+"/{name}/status", s.patchStored(status))
		}
	}
}

// statusKind is k as its status subresource: the same objects, authorized
// as <resource>/status, and writes that change the status alone.
func (k *storedKind) statusKind() *storedKind {
	sub := *k
	sub.statusOnly = true
	return &sub
}

// specChanged compares two specs as JSON, the form they are stored in.
func specChanged(old, new any) (bool, error) {
	a, err := json.Marshal(old)
	if err != nil {
		return false, err
	}
	b, err := json.Marshal(new)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(a, b), nil
}

// keepStatus is what a write of obj over cur stores, for kinds with a
// status subresource: through the object, obj with cur's status; through
// /status, cur with obj's status. (Labels and annotations go with the
// object, not the status, as in Kubernetes.)
func (k *storedKind) keepStatus(cur, obj object) (object, error) {
	from, into := cur, obj // the object: cur's status into obj
	if k.statusOnly {
		from, into = obj, cur
	}
	var src, dst map[string]any
	if err := remarshal(from, &src); err != nil {
		return nil, err
	}
	if err := remarshal(into, &dst); err != nil {
		return nil, err
	}
	if st, ok := src["status"]; ok {
		dst["status"] = st
	} else {
		delete(dst, "status")
	}
	if k.statusOnly {
		// The caller's resourceVersion is the precondition.
		dst["metadata"].(map[string]any)["resourceVersion"] = obj.GetResourceVersion()
	}
	out := k.new()
	if err := remarshal(dst, out); err != nil {
		return nil, err
	}
	return out, nil
}

// withoutStatus is obj with its status cleared, for a create.
func (k *storedKind) withoutStatus(obj object) (object, error) {
	var doc map[string]any
	if err := remarshal(obj, &doc); err != nil {
		return nil, err
	}
	delete(doc, "status")
	out := k.new()
	if err := remarshal(doc, out); err != nil {
		return nil, err
	}
	return out, nil
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// readBody reads a request body up to the limit; 413 beyond.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxObjectBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &StatusError{http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			fmt.Sprintf("the request body is larger than %d bytes", maxObjectBytes)}
	}
	if errors.Is(err, errdefs.ErrTimeout) {
		return nil, &StatusError{http.StatusRequestTimeout, "Timeout", err.Error()}
	}
	if err != nil {
		return nil, badRequest("read the request body: %v", err)
	}
	return b, nil
}

// decodeObject turns a request body (JSON, YAML or protobuf) into a
// typed object of kind k. Unknown fields are refused unless the request
// says fieldValidation=Ignore, and the body's kind must be k's.
func (k *storedKind) decodeObject(r *http.Request, body []byte) (object, error) {
	obj := k.new()
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	switch strings.TrimSpace(ct) {
	case "application/vnd.kubernetes.protobuf":
		info, ok := runtime.SerializerInfoForMediaType(protobufCodecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
		if !ok {
			return nil, unsupportedMedia(ct)
		}
		if _, _, err := info.Serializer.Decode(body, nil, obj); err != nil {
			return nil, badRequest("the protobuf body is not a %s: %v", k.info.Kind, err)
		}
		return k.checkKind(obj)
	}
	if err := decodeJSONOrYAML(r, body, obj); err != nil {
		return nil, err
	}
	return k.checkKind(obj)
}

// decodeJSONOrYAML decodes a JSON or YAML request body into v, refusing
// unknown fields unless the request says fieldValidation=Ignore.
func decodeJSONOrYAML(r *http.Request, body []byte, v any) error {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	switch strings.TrimSpace(ct) {
	case "application/yaml":
		j, err := yaml.YAMLToJSON(body)
		if err != nil {
			return badRequest("the YAML body is not valid: %v", err)
		}
		body = j
	case "", "application/json":
	default:
		return unsupportedMedia(ct)
	}
	return decodeStrictJSON(body, v, r.URL.Query().Get("fieldValidation") != "Ignore")
}

// readObject reads the request's object, which must be in namespace ns
// (an object that names none is put there).
func (k *storedKind) readObject(w http.ResponseWriter, r *http.Request, ns string) (object, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	obj, err := k.decodeObject(r, body)
	if err != nil {
		return nil, err
	}
	if got := obj.GetNamespace(); got != "" && got != ns {
		return nil, badRequest("the namespace of the provided object (%q) does not match the namespace sent on the request (%q)", got, ns)
	}
	obj.SetNamespace(ns)
	return obj, nil
}

func decodeStrictJSON(body []byte, into any, strict bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("the request needs a body: the object")
	}
	// Field names match exactly, as in Kubernetes ("Data" is not "data"),
	// and a field given twice is an error under strict validation.
	if !strict {
		if err := k8sjson.UnmarshalCaseSensitivePreserveInts(body, into); err != nil {
			return badRequest("the request body is not a valid object: %v", err)
		}
		return nil
	}
	problems, err := k8sjson.UnmarshalStrict(body, into, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err != nil {
		return badRequest("the request body is not a valid object: %v", err)
	}
	if len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Error()
		}
		return &StatusError{http.StatusBadRequest, "BadRequest", "strict decoding error: " + strings.Join(msgs, ", ")}
	}
	return nil
}

func (k *storedKind) checkKind(obj object) (object, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind != "" && gvk.Kind != k.info.Kind {
		return nil, badRequest("the body is a %s, not a %s", gvk.Kind, k.info.Kind)
	}
	if av := gvk.GroupVersion().String(); gvk.Kind != "" && av != k.apiVersion() {
		return nil, badRequest("apiVersion %q is not served for %s; use %q", av, k.info.Kind, k.apiVersion())
	}
	return obj, nil
}

func unsupportedMedia(ct string) *StatusError {
	return &StatusError{http.StatusUnsupportedMediaType, "UnsupportedMediaType",
		fmt.Sprintf("the body of type %q is not supported", ct)}
}

// validateObject checks what every stored kind needs and then the kind's
// own rules; the failures come back as one 422 Invalid.
func (k *storedKind) validateObject(obj object) error {
	var problems []string
	name := obj.GetName()
	if name == "" {
		problems = append(problems, "metadata.name: Required value: name or generateName is required")
	} else {
		check := validation.IsDNS1123Subdomain
		if k.nameProblems != nil {
			check = k.nameProblems
		}
		for _, msg := range check(name) {
			problems = append(problems, fmt.Sprintf("metadata.name: Invalid value: %q: %s", name, msg))
		}
	}
	for key, value := range obj.GetLabels() {
		for _, msg := range validation.IsQualifiedName(key) {
			problems = append(problems, fmt.Sprintf("metadata.labels: Invalid value: %q: %s", key, msg))
		}
		for _, msg := range validation.IsValidLabelValue(value) {
			problems = append(problems, fmt.Sprintf("metadata.labels: Invalid value: %q: %s", value, msg))
		}
	}
	if k.validate != nil {
		problems = append(problems, k.validate(obj)...)
	}
	if len(problems) > 0 {
		return invalid("%s %q is invalid: %s", k.info.Kind, name, strings.Join(problems, ", "))
	}
	return nil
}

// toStored is what the store keeps: the object's JSON without the
// resourceVersion (the store owns it), so equal objects are equal bytes.
func (k *storedKind) toStored(obj object) (store.Object, error) {
	obj.SetResourceVersion("")
	obj.SetManagedFields(nil)
	obj.GetObjectKind().SetGroupVersionKind(k.gvk())
	body, err := json.Marshal(obj)
	if err != nil {
		return store.Object{}, err
	}
	return store.Object{
		ObjectKey: k.key(obj.GetNamespace(), obj.GetName()),
		UID:       string(obj.GetUID()), Created: obj.GetCreationTimestamp().Time,
		Labels: obj.GetLabels(), Body: body,
	}, nil
}

func (k *storedKind) fromStored(o store.Object) (object, error) {
	obj := k.new()
	if err := json.Unmarshal(o.Body, obj); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", o.ObjectKey, err)
	}
	obj.SetResourceVersion(strconv.FormatInt(o.ResourceVersion, 10))
	obj.GetObjectKind().SetGroupVersionKind(k.gvk())
	return obj, nil
}

// shown is the object rec holds as a read shows it (see present).
func (k *storedKind) shown(ctx context.Context, s *Server, rec store.Object) (object, error) {
	obj, err := k.fromStored(rec)
	if err != nil || k.present == nil {
		return obj, err
	}
	return obj, k.present(ctx, s, obj)
}

func (k *storedKind) gvk() (gvk schemaGVK) {
	return schemaGVK{Group: k.info.Group, Version: k.info.Version, Kind: k.info.Kind}
}

func (k *storedKind) notFound(name string) *StatusError {
	return notFound(k.info.Resource, name)
}

// storedError maps store errors to the Status Kubernetes gives for them.
func (k *storedKind) storedError(err error, name string) error {
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		return k.notFound(name)
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return &StatusError{http.StatusConflict, "AlreadyExists", fmt.Sprintf("%s %q already exists", k.info.Resource, name)}
	case errors.Is(err, errdefs.ErrConflict):
		return &StatusError{http.StatusConflict, "Conflict", fmt.Sprintf(
			"Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again",
			k.info.Resource, name)}
	}
	return err
}

func (s *Server) createStored(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ns := r.PathValue("ns")
		if err := s.authorize(r, "create", k.resource(), ns); err != nil {
			return err
		}
		if ns != "" {
			if err := s.requireProject(r, ns); err != nil {
				return err
			}
		}
		obj, err := k.readObject(w, r, ns)
		if err != nil {
			return err
		}
		if obj.GetName() == "" && obj.GetGenerateName() != "" {
			obj.SetName(obj.GetGenerateName() + randomSuffix())
		}
		if k.hasStatus {
			if obj, err = k.withoutStatus(obj); err != nil {
				return err
			}
		}
		obj.SetUID(types.UID(newUID()))
		obj.SetCreationTimestamp(metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
		if k.spec != nil {
			obj.SetGeneration(1)
		}
		if k.prepare != nil {
			k.prepare(obj)
		}
		if err := k.validateObject(obj); err != nil {
			return err
		}
		if k.admit != nil {
			if err := k.admit(r.Context(), s, obj); err != nil {
				return err
			}
		}
		rec, err := k.toStored(obj)
		if err != nil {
			return err
		}
		if isDryRun(r) {
			return writeObject(w, r, http.StatusCreated, obj)
		}
		rec, err = s.opts.Store.CreateObject(r.Context(), rec)
		if _, gone := errors.AsType[*store.MissingNamespaceError](err); gone {
			return notFound("namespaces", ns)
		}
		if err != nil {
			return k.storedError(err, obj.GetName())
		}
		out, err := k.shown(r.Context(), s, rec)
		if err != nil {
			return err
		}
		return writeObject(w, r, http.StatusCreated, out)
	}
}

func (s *Server) getStored(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ns, name := r.PathValue("ns"), r.PathValue("name")
		if err := s.authorize(r, "get", k.resource(), ns); err != nil {
			return err
		}
		rec, err := s.opts.Store.GetObject(r.Context(), k.key(ns, name))
		if err != nil {
			return k.storedError(err, name)
		}
		obj, err := k.shown(r.Context(), s, rec)
		if err != nil {
			return err
		}
		if wantsTable(r) {
			return writeJSONOrYAML(w, r, http.StatusOK, k.table([]object{obj}, rec.ResourceVersion, "", r))
		}
		return writeObject(w, r, http.StatusOK, obj)
	}
}

func (s *Server) updateStored(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ns, name := r.PathValue("ns"), r.PathValue("name")
		if err := s.authorize(r, "update", k.resource(), ns); err != nil {
			return err
		}
		obj, err := k.readObject(w, r, ns)
		if err != nil {
			return err
		}
		if obj.GetName() != name {
			return badRequest("the name of the object (%q) does not match the name on the URL (%q)", obj.GetName(), name)
		}
		var expect int64
		if rv := obj.GetResourceVersion(); rv != "" {
			if expect, err = strconv.ParseInt(rv, 10, 64); err != nil || expect <= 0 {
				return invalid("metadata.resourceVersion: Invalid value: %q: must be a resourceVersion this server gave", rv)
			}
		}
		out, err := s.replaceStored(r.Context(), k, obj, expect, isDryRun(r))
		if err != nil {
			return err
		}
		return writeObject(w, r, http.StatusOK, out)
	}
}

// replaceStored writes obj over the stored object (at resourceVersion
// expect, when > 0), keeping what the server owns: uid, creation time.
// With dryRun it checks everything and writes nothing.
func (s *Server) replaceStored(ctx context.Context, k *storedKind, obj object, expect int64, dryRun bool) (object, error) {
	curRec, err := s.opts.Store.GetObject(ctx, k.key(obj.GetNamespace(), obj.GetName()))
	if err != nil {
		return nil, k.storedError(err, obj.GetName())
	}
	cur, err := k.fromStored(curRec)
	if err != nil {
		return nil, err
	}
	if uid := obj.GetUID(); uid != "" && uid != cur.GetUID() {
		return nil, &StatusError{http.StatusConflict, "Conflict", fmt.Sprintf(
			"Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, cur.GetUID())}
	}
	if k.hasStatus {
		if obj, err = k.keepStatus(cur, obj); err != nil {
			return nil, err
		}
	}
	obj.SetUID(cur.GetUID())
	obj.SetCreationTimestamp(cur.GetCreationTimestamp())
	obj.SetGeneration(cur.GetGeneration())
	if k.prepare != nil {
		k.prepare(obj)
	}
	if k.spec != nil && !k.statusOnly {
		changed, err := specChanged(k.spec(cur), k.spec(obj))
		if err != nil {
			return nil, err
		}
		if changed {
			obj.SetGeneration(cur.GetGeneration() + 1)
		}
	}
	if err := k.validateObject(obj); err != nil {
		return nil, err
	}
	if k.validateUpdate != nil {
		if problems := k.validateUpdate(cur, obj); len(problems) > 0 {
			return nil, invalid("%s %q is invalid: %s", k.info.Kind, obj.GetName(), strings.Join(problems, ", "))
		}
	}
	if k.admit != nil {
		if err := k.admit(ctx, s, obj); err != nil {
			return nil, err
		}
	}
	if dryRun {
		if expect > 0 && expect != curRec.ResourceVersion {
			return nil, k.storedError(errdefs.ErrConflict, obj.GetName())
		}
		obj.SetResourceVersion(strconv.FormatInt(curRec.ResourceVersion, 10))
		return obj, nil
	}
	rec, err := k.toStored(obj)
	if err != nil {
		return nil, err
	}
	rec, err = s.opts.Store.UpdateObject(ctx, rec, expect)
	if err != nil {
		return nil, k.storedError(err, obj.GetName())
	}
	return k.shown(ctx, s, rec)
}

func (s *Server) patchStored(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ns, name := r.PathValue("ns"), r.PathValue("name")
		if err := s.authorize(r, "patch", k.resource(), ns); err != nil {
			return err
		}
		patch, err := readBody(w, r)
		if err != nil {
			return err
		}
		ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
		ct = strings.TrimSpace(ct)
		// A patch applies to the object as it is; when someone else writes
		// in between, it is applied again to the new version.
		for attempt := 0; ; attempt++ {
			curRec, err := s.opts.Store.GetObject(r.Context(), k.key(ns, name))
			if err != nil {
				return k.storedError(err, name)
			}
			cur, err := k.fromStored(curRec)
			if err != nil {
				return err
			}
			// Without its resourceVersion, so that one in the result can only
			// come from the patch: a precondition.
			cur.SetResourceVersion("")
			curJSON, err := json.Marshal(cur)
			if err != nil {
				return err
			}
			patched, err := k.applyPatch(ct, curJSON, patch)
			if err != nil {
				return err
			}
			obj := k.new()
			if err := decodeStrictJSON(patched, obj, r.URL.Query().Get("fieldValidation") != "Ignore"); err != nil {
				return err
			}
			if _, err := k.checkKind(obj); err != nil {
				return err
			}
			if obj.GetName() != name || obj.GetNamespace() != ns {
				return badRequest("a patch cannot change metadata.name or metadata.namespace")
			}
			// A resourceVersion in the patch is a precondition.
			expect := curRec.ResourceVersion
			if rv := obj.GetResourceVersion(); rv != "" && rv != strconv.FormatInt(curRec.ResourceVersion, 10) {
				return k.storedError(errdefs.ErrConflict, name)
			}
			out, err := s.replaceStored(r.Context(), k, obj, expect, isDryRun(r))
			var se *StatusError
			if errors.As(err, &se) && se.Reason == "Conflict" && obj.GetResourceVersion() == "" && attempt < maxPatchRetries && r.Context().Err() == nil {
				continue
			}
			if err != nil {
				return err
			}
			return writeObject(w, r, http.StatusOK, out)
		}
	}
}

// maxPatchRetries bounds how often a patch is applied again after losing
// a race to another writer (each loss means another write succeeded).
const maxPatchRetries = 100

func (k *storedKind) applyPatch(contentType string, cur, patch []byte) ([]byte, error) {
	var schema object
	if k.builtin {
		schema = k.new()
	}
	return applyPatch(contentType, cur, patch, schema)
}

// applyPatch applies a JSON merge patch or a JSON patch to cur; a
// strategic merge patch needs the typed object of a built-in kind
// (schema), and answers 415 without one.
func applyPatch(contentType string, cur, patch []byte, schema object) ([]byte, error) {
	var out []byte
	var err error
	if strings.HasSuffix(contentType, "json") {
		var doc any
		if err := json.Unmarshal(patch, &doc); err != nil {
			return nil, badRequest("the patch is not valid JSON: %v", err)
		}
	}
	switch contentType {
	case "application/merge-patch+json":
		out, err = jsonpatch.MergePatch(cur, patch)
	case "application/json-patch+json":
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(patch); err == nil {
			out, err = p.Apply(cur)
		}
	case "application/strategic-merge-patch+json":
		if schema == nil {
			return nil, &StatusError{http.StatusUnsupportedMediaType, "UnsupportedMediaType",
				"the body of the request was in an unknown format - accepted media types include: " +
					"application/json-patch+json, application/merge-patch+json (strategic merge patch is only for built-in kinds)"}
		}
		out, err = strategicpatch.StrategicMergePatch(cur, patch, schema)
	case "application/apply-patch+yaml":
		return nil, &StatusError{http.StatusUnsupportedMediaType, "UnsupportedMediaType",
			"server-side apply is not supported; use kubectl apply without --server-side"}
	default:
		return nil, &StatusError{http.StatusUnsupportedMediaType, "UnsupportedMediaType",
			fmt.Sprintf("the patch type %q is not supported; use application/merge-patch+json or application/json-patch+json", contentType)}
	}
	if err != nil {
		return nil, badRequest("the patch cannot be applied: %v", err)
	}
	return out, nil
}

func (s *Server) deleteStored(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ns, name := r.PathValue("ns"), r.PathValue("name")
		if err := s.authorize(r, "delete", k.resource(), ns); err != nil {
			return err
		}
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		var opts metav1.DeleteOptions
		if len(bytes.TrimSpace(body)) > 0 {
			if err := decodeStrictJSON(body, &opts, false); err != nil {
				return err
			}
		}
		var expect int64
		if p := opts.Preconditions; p != nil && p.ResourceVersion != nil {
			if expect, err = strconv.ParseInt(*p.ResourceVersion, 10, 64); err != nil {
				return invalid("preconditions.resourceVersion: Invalid value: %q", *p.ResourceVersion)
			}
		}
		key := k.key(ns, name)
		uid := ""
		if p := opts.Preconditions; p != nil && p.UID != nil {
			uid = string(*p.UID)
		}
		if isDryRun(r) || slices.Contains(opts.DryRun, metav1.DryRunAll) {
			cur, err := s.opts.Store.GetObject(r.Context(), key)
			if err != nil {
				return k.storedError(err, name)
			}
			if (expect > 0 && cur.ResourceVersion != expect) || (uid != "" && cur.UID != uid) {
				return k.storedError(errdefs.ErrConflict, name)
			}
		} else if rec, err := s.opts.Store.DeleteObject(r.Context(), key, expect, uid); err != nil {
			return k.storedError(err, name)
		} else {
			key.Name, name = rec.Name, rec.Name
		}
		writeJSON(w, http.StatusOK, metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusSuccess,
			Details:  &metav1.StatusDetails{Name: name, Group: k.info.Group, Kind: k.info.Resource},
		})
		return nil
	}
}

// listQuery is a list or watch request's selection.
type listQuery struct {
	ns     string
	labels labels.Selector
	fields fields.Selector
}

func parseListQuery(r *http.Request) (listQuery, error) {
	q := listQuery{ns: r.PathValue("ns"), labels: labels.Everything(), fields: fields.Everything()}
	var err error
	if v := r.URL.Query().Get("labelSelector"); v != "" {
		if q.labels, err = labels.Parse(v); err != nil {
			return q, badRequest("labelSelector %q: %v", v, err)
		}
	}
	if v := r.URL.Query().Get("fieldSelector"); v != "" {
		if q.fields, err = fields.ParseSelector(v); err != nil {
			return q, badRequest("fieldSelector %q: %v", v, err)
		}
		for _, req := range q.fields.Requirements() {
			if req.Field != "metadata.name" && req.Field != "metadata.namespace" {
				return q, badRequest("field label not supported: %s (metadata.name and metadata.namespace are)", req.Field)
			}
		}
	}
	return q, nil
}

func (q listQuery) matches(o store.Object) bool {
	return q.labels.Matches(labels.Set(o.Labels)) &&
		q.fields.Matches(fields.Set{"metadata.name": o.Name, "metadata.namespace": o.Namespace})
}

// selects reports whether a watch of q shows obj: in q's namespace (any
// when none) and matching its selectors.
func (q listQuery) selects(obj metav1.Object) bool {
	return (q.ns == "" || obj.GetNamespace() == q.ns) && q.labels.Matches(labels.Set(obj.GetLabels())) &&
		q.fields.Matches(fields.Set{"metadata.name": obj.GetName(), "metadata.namespace": obj.GetNamespace()})
}

func (s *Server) listStored(k *storedKind) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := parseListQuery(r)
		if err != nil {
			return err
		}
		watch := r.URL.Query().Get("watch")
		verb := "list"
		if watch == "true" || watch == "1" {
			verb = "watch"
		}
		if err := s.authorize(r, verb, k.resource(), q.ns); err != nil {
			return err
		}
		if verb == "watch" {
			return serveWatch(s, w, r, q, s.storedWatchFeed(r, k, q))
		}
		limit := 0
		if v := r.URL.Query().Get("limit"); v != "" {
			if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
				return badRequest("limit %q is not a count", v)
			}
		}
		cursor, err := decodeContinue(r.URL.Query().Get("continue"))
		if err != nil {
			return err
		}
		var objs []object
		var rv int64
		next := ""
		// Selectors filter after the store's paging: read on until the page
		// is full (then the continue token points after its last object)
		// or the kind is exhausted.
	pages:
		for {
			recs, more, listRV, err := s.opts.Store.ListObjects(r.Context(), store.ObjectQuery{
				Group: k.info.Group, Resource: k.info.Resource, Namespace: q.ns, After: cursor, Limit: limit,
			})
			if err != nil {
				return err
			}
			if rv == 0 {
				rv = listRV
			}
			for i, rec := range recs {
				cursor = store.ObjectCursor{Namespace: rec.Namespace, Name: rec.Name}
				if !q.matches(rec) {
					continue
				}
				obj, err := k.shown(r.Context(), s, rec)
				if err != nil {
					return err
				}
				objs = append(objs, obj)
				if limit > 0 && len(objs) == limit {
					if more || i < len(recs)-1 {
						next = encodeContinue(cursor)
					}
					break pages
				}
			}
			if !more {
				break
			}
		}
		if wantsTable(r) {
			return writeJSONOrYAML(w, r, http.StatusOK, k.table(objs, rv, next, r))
		}
		items := make([]json.RawMessage, 0, len(objs))
		for _, o := range objs {
			b, err := json.Marshal(o)
			if err != nil {
				return err
			}
			items = append(items, b)
		}
		return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
			"kind": k.info.Kind + "List", "apiVersion": k.apiVersion(),
			"metadata": metav1.ListMeta{ResourceVersion: strconv.FormatInt(rv, 10), Continue: next},
			"items":    items,
		})
	}
}

func encodeContinue(c store.ObjectCursor) string {
	b, _ := json.Marshal([2]string{c.Namespace, c.Name})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(v string) (store.ObjectCursor, error) {
	if v == "" {
		return store.ObjectCursor{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	var c [2]string
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return store.ObjectCursor{}, badRequest("continue token %q is not one this server gave", v)
	}
	return store.ObjectCursor{Namespace: c[0], Name: c[1]}, nil
}

// storedWatchFeed is how serveWatch reads objects of k in q's namespace.
func (s *Server) storedWatchFeed(r *http.Request, k *storedKind, q listQuery) watchFeed[object] {
	const batch = 100
	apiResource := k.key("", "").APIResource()
	return watchFeed[object]{
		resource: k.resource(), project: q.ns,
		current: func(ctx context.Context) ([]object, int64, error) {
			recs, _, rv, err := s.opts.Store.ListObjects(ctx, store.ObjectQuery{Group: k.info.Group, Resource: k.info.Resource, Namespace: q.ns})
			if err != nil {
				return nil, 0, err
			}
			objs := make([]object, 0, len(recs))
			for _, rec := range recs {
				obj, err := k.shown(ctx, s, rec)
				if err != nil {
					return nil, 0, err
				}
				objs = append(objs, obj)
			}
			return objs, rv, nil
		},
		changes: func(ctx context.Context, after int64) ([]watchChange[object], int64, bool, error) {
			// The history is per kind: the store skips other projects'
			// objects before decoding them.
			events, upTo, full, err := s.opts.Store.ObjectEventsIn(ctx, apiResource, q.ns, after, batch)
			if err != nil {
				return nil, after, false, err
			}
			var changes []watchChange[object]
			for _, e := range events {
				obj, err := k.shown(ctx, s, e.Object)
				if err != nil {
					return nil, after, false, err
				}
				changes = append(changes, watchChange[object]{Type: e.Type, Object: obj})
			}
			return changes, upTo, full, nil
		},
		table: func(obj object) metav1.Table {
			rv, _ := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
			return k.table([]object{obj}, rv, "", r)
		},
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// wantsTable reports whether the client asked for a Table (kubectl get).
func wantsTable(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "as=Table")
}

// table renders objects as the Table kubectl prints: the kind's columns,
// the object's metadata in each row (includeObject=Metadata, the default),
// the whole object with includeObject=Object, none with None.
func (k *storedKind) table(objs []object, rv int64, next string, r *http.Request) metav1.Table {
	t := newTable(k.columns, strconv.FormatInt(rv, 10), next)
	include := r.URL.Query().Get("includeObject")
	for _, o := range objs {
		row := metav1.TableRow{Cells: k.cells(o)}
		switch include {
		case "None":
		case "Object":
			row.Object = runtime.RawExtension{Raw: mustJSON(o)}
		default:
			row = metaRow(*o.(interface{ GetObjectMeta() metav1.Object }).GetObjectMeta().(*metav1.ObjectMeta), row.Cells...)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// newTable starts a Table of columns, as of resourceVersion rv.
func newTable(columns []metav1.TableColumnDefinition, rv, next string) metav1.Table {
	return metav1.Table{
		TypeMeta:          metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"},
		ListMeta:          metav1.ListMeta{ResourceVersion: rv, Continue: next},
		ColumnDefinitions: columns,
		Rows:              []metav1.TableRow{},
	}
}

// metaRow is a Table row carrying the object's metadata (what kubectl
// asks for by default, includeObject=Metadata).
func metaRow(meta metav1.ObjectMeta, cells ...any) metav1.TableRow {
	return metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Raw: mustJSON(metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
		ObjectMeta: meta,
	})}}
}

// age is the AGE column: how long ago the object was created.
func age(o object) string {
	return duration.HumanDuration(time.Since(o.GetCreationTimestamp().Time))
}

var (
	columnName = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: "Name must be unique within a namespace."}
	columnAge = metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: "The time since the object was created."}
)

func writeObject(w http.ResponseWriter, r *http.Request, code int, obj object) error {
	return writeJSONOrYAML(w, r, code, obj)
}

// writeJSONOrYAML answers in YAML when the client asks for it only.
func writeJSONOrYAML(w http.ResponseWriter, r *http.Request, code int, v any) error {
	accept := r.Header.Get("Accept")
	if strings.Contains(accept, "application/yaml") && !strings.Contains(accept, "json") {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.WriteHeader(code)
		_, _ = w.Write(b)
		return nil
	}
	writeJSON(w, code, v)
	return nil
}

func isDryRun(r *http.Request) bool {
	return r.URL.Query().Get("dryRun") == "All"
}

const suffixLetters = "bcdfghjklmnpqrstvwxz2456789"

// randomSuffix completes a generateName, as Kubernetes does.
func randomSuffix() string {
	b := make([]byte, 5)
	for i := range b {
		b[i] = suffixLetters[rand.IntN(len(suffixLetters))]
	}
	return string(b)
}

// decodeBuiltin reads a body into v, a hand-written type with the JSON
// names of a built-in kind: JSON as it is, protobuf (what kubectl ≥ 1.32
// sends for built-in kinds) through the built-in type newTyped returns.
func decodeBuiltin(w http.ResponseWriter, r *http.Request, v any, newTyped func() object) error {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != runtime.ContentTypeProtobuf {
		return decode(w, r, v)
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	obj := newTyped()
	info, _ := runtime.SerializerInfoForMediaType(protobufCodecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if _, _, err := info.Serializer.Decode(body, nil, obj); err != nil {
		return badRequest("the protobuf body is not a %T: %v", obj, err)
	}
	return json.Unmarshal(mustJSON(obj), v)
}
