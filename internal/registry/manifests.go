package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	k8sjson "sigs.k8s.io/json"

	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/store"
)

// Manifest media types Berth accepts.
const (
	mediaTypeOCIManifest    = v1.MediaTypeImageManifest
	mediaTypeOCIIndex       = v1.MediaTypeImageIndex
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerForeign  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

var manifestKinds = map[string]bool{ // true: an index of manifests
	mediaTypeOCIManifest:    false,
	mediaTypeDockerManifest: false,
	mediaTypeOCIIndex:       true,
	mediaTypeDockerList:     true,
}

// manifestDoc holds the fields of every accepted manifest kind that the
// registry reads; the payload itself is stored byte for byte.
type manifestDoc struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Manifests     []v1.Descriptor   `json:"manifests"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// parseManifest validates payload and returns what the store records.
// contentType is the request's Content-Type ("" when absent).
func parseManifest(payload []byte, contentType string, dgst digest.Digest, allowSparse bool) (store.Manifest, error) {
	doc, err := decodeManifest(payload)
	if err != nil {
		return store.Manifest{}, err
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return store.Manifest{}, newError(codeManifestInvalid, "schemaVersion must be 2 (Docker schema 1 is not supported)")
	}
	mediaType := doc.MediaType
	if contentType != "" {
		if mediaType != "" && mediaType != contentType {
			return store.Manifest{}, newError(codeManifestInvalid, "Content-Type %s does not match the manifest's mediaType %s", contentType, mediaType)
		}
		mediaType = contentType
	}
	if mediaType == "" {
		switch {
		case doc.Manifests != nil:
			mediaType = mediaTypeOCIIndex
		case doc.Config != nil:
			mediaType = mediaTypeOCIManifest
		default:
			return store.Manifest{}, newError(codeManifestInvalid, "manifest has no mediaType and no Content-Type")
		}
	}
	isIndex, known := manifestKinds[mediaType]
	if !known {
		return store.Manifest{}, newError(codeManifestInvalid, "unsupported manifest media type %q (supported: OCI image manifest and index, Docker schema 2 manifest and manifest list)", mediaType)
	}
	m := store.Manifest{Digest: dgst, MediaType: mediaType, ArtifactType: doc.ArtifactType, Annotations: doc.Annotations, Payload: payload}
	if doc.Subject != nil {
		if err := checkDescriptor("subject", *doc.Subject); err != nil {
			return store.Manifest{}, err
		}
		m.Subject = doc.Subject.Digest
	}
	if isIndex {
		if doc.Config != nil || doc.Layers != nil {
			return store.Manifest{}, newError(codeManifestInvalid, "an index (%s) has no config or layers", mediaType)
		}
		for i, d := range doc.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return store.Manifest{}, err
			}
			m.References = append(m.References, store.Reference{Digest: d.Digest, Manifest: true, Size: d.Size, Required: !allowSparse})
		}
		return m, nil
	}
	if doc.Config == nil {
		return store.Manifest{}, newError(codeManifestInvalid, "image manifest (%s) has no config", mediaType)
	}
	if doc.Manifests != nil {
		return store.Manifest{}, newError(codeManifestInvalid, "an image manifest (%s) has no manifests list", mediaType)
	}
	if err := checkDescriptor("config", *doc.Config); err != nil {
		return store.Manifest{}, err
	}
	m.References = append(m.References, store.Reference{Digest: doc.Config.Digest, Size: doc.Config.Size, Required: true})
	if m.ArtifactType == "" {
		m.ArtifactType = doc.Config.MediaType // the referrers API's fallback
	}
	for i, d := range doc.Layers {
		if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), d); err != nil {
			return store.Manifest{}, err
		}
		m.References = append(m.References, store.Reference{Digest: d.Digest, Size: d.Size, Required: !allowSparse && distributable(d)})
	}
	return m, nil
}

// ParseManifest reads a manifest fetched from elsewhere (an import, a
// pull-through), by the rules of a push: what the store records of it,
// with no reference required (its blobs are fetched later, if ever).
func ParseManifest(payload []byte, mediaType string, dgst digest.Digest) (store.Manifest, error) {
	return parseManifest(payload, mediaType, dgst, true)
}

// decodeManifest reads payload with exact key case and refuses a key given
// twice in one object or one that differs only in case from a field Berth
// reads. Parsers disagree on both (encoding/json takes the last duplicate
// and matches keys case-insensitively), so such a manifest could show a
// client other layers than the references Berth checked. Unknown keys stay
// allowed: manifests carry extensions.
func decodeManifest(payload []byte) (manifestDoc, error) {
	var doc manifestDoc
	if err := k8sjson.UnmarshalCaseSensitivePreserveInts(payload, &doc); err != nil {
		return manifestDoc{}, newError(codeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber() // numbers in unknown fields may not fit a float64
	keys := keyChecker{dec: dec}
	if err := keys.value(reflect.TypeFor[manifestDoc]()); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return manifestDoc{}, e
		}
		return manifestDoc{}, newError(codeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	return doc, nil
}

// keyChecker walks a JSON document alongside the Go type it decodes into
// and refuses duplicate keys anywhere, and keys that match a struct field
// only when case is ignored.
type keyChecker struct {
	dec  *json.Decoder
	path []keyStep // where the walk is, for messages
}

// keyStep is an array index, or an object key when index is negative.
type keyStep struct {
	key   string
	index int
}

// value reads one JSON value; t is the Go type it decodes into, nil when
// Berth does not read it.
func (c *keyChecker) value(t reflect.Type) error {
	tok, err := c.dec.Token()
	if err != nil {
		return err
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch tok {
	case json.Delim('{'):
		return c.object(t)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Slice {
			elem = t.Elem()
		}
		for i := 0; c.dec.More(); i++ {
			if err := c.descend("", i, elem); err != nil {
				return err
			}
		}
		_, err = c.dec.Token() // ]
		return err
	}
	return nil
}

func (c *keyChecker) object(t reflect.Type) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil && t.Kind() == reflect.Struct {
		fields = jsonFields(t)
	} else if t != nil && t.Kind() == reflect.Map {
		elem = t.Elem()
	}
	seen := make(map[string]bool)
	for c.dec.More() {
		tok, err := c.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return newError(codeManifestInvalid, "manifest key %q appears twice at %s", key, c.where())
		}
		seen[key] = true
		valueType := elem
		if fields != nil {
			valueType = fields[key]
			if valueType == nil {
				for name := range fields {
					if strings.EqualFold(key, name) {
						return newError(codeManifestInvalid, "manifest key %q at %s differs from %q only in case (keys are case-sensitive)", key, c.where(), name)
					}
				}
			}
		}
		if err := c.descend(key, -1, valueType); err != nil {
			return err
		}
	}
	_, err := c.dec.Token() // }
	return err
}

func (c *keyChecker) descend(key string, index int, t reflect.Type) error {
	c.path = append(c.path, keyStep{key, index})
	err := c.value(t)
	c.path = c.path[:len(c.path)-1]
	return err
}

func (c *keyChecker) where() string {
	if len(c.path) == 0 {
		return "the top level"
	}
	var b strings.Builder
	for i, p := range c.path {
		if p.index >= 0 {
			fmt.Fprintf(&b, "[%d]", p.index)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p.key)
	}
	return b.String()
}

// jsonFields maps the keys encoding/json decodes into struct type t to the
// fields' types. The manifest types embed no structs, so promoted fields
// need no handling.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// distributable is false for layers the image spec lets registries not
// hold (non-distributable and Docker foreign layers).
func distributable(d v1.Descriptor) bool {
	return !strings.Contains(d.MediaType, ".nondistributable.") && d.MediaType != mediaTypeDockerForeign
}

func checkDescriptor(field string, d v1.Descriptor) error {
	if _, err := names.Digest(string(d.Digest)); err != nil {
		return newError(codeManifestInvalid, "%s has an invalid digest %q: %v", field, d.Digest, err)
	}
	if d.Size < 0 {
		return newError(codeManifestInvalid, "%s has a negative size", field)
	}
	if d.MediaType == "" {
		return newError(codeManifestInvalid, "%s has no mediaType", field)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size || d.Digest.Algorithm().FromBytes(d.Data) != d.Digest {
			return newError(codeManifestInvalid, "%s has data that does not match its digest and size", field)
		}
	}
	return nil
}

// reference is a manifest reference from a URL: a tag or a digest.
type reference struct {
	tag    string
	digest digest.Digest
}

func (ref reference) String() string {
	if ref.tag != "" {
		return ref.tag
	}
	return ref.digest.String()
}

func parseReference(s string) (reference, error) {
	if strings.Contains(s, ":") {
		d, err := names.Digest(s)
		if err != nil {
			return reference{}, newError(codeDigestInvalid, "invalid digest %q: %v", s, err)
		}
		return reference{digest: d}, nil
	}
	if !names.Tag(s) {
		return reference{}, newError(codeManifestInvalid, "invalid tag %q: tags are up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'", s)
	}
	return reference{tag: s}, nil
}

// getManifest serves GET and HEAD /v2/<name>/manifests/<reference>.
func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, repo string) error {
	ref, err := parseReference(req.PathValue("reference"))
	if err != nil {
		return err
	}
	if r.proxy != nil {
		if err := r.proxy.ResolvePull(req.Context(), repo, ref.String()); err != nil {
			if errors.Is(err, ErrUpstreamUnavailable) {
				return &Error{Code: codeUnavailable, Header: http.Header{"Retry-After": {"30"}},
					Message: "manifest " + ref.String() + " is not cached and the proxied registry cannot serve it now: " + err.Error(), Err: err}
			}
			return fromClass(err, codeManifestUnknown, "manifest "+ref.String())
		}
	}
	m, err := r.meta.Manifest(req.Context(), repo, ref.String())
	if err != nil {
		return fromClass(err, codeManifestUnknown, "manifest "+ref.String())
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.Payload)))
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("ETag", `"`+m.Digest.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(m.Payload)
		if r.pulls != nil && !store.IsViewing(req.Context()) {
			r.pulls.Pulled(repo, m.Digest, store.ActorFrom(req.Context()))
		}
	}
	return nil
}

// putManifest serves PUT /v2/<name>/manifests/<reference>[?tag=...].
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, repo string) error {
	ref, err := parseReference(req.PathValue("reference"))
	if err != nil {
		return err
	}
	var tags []string
	if ref.tag != "" {
		tags = append(tags, ref.tag)
	}
	for _, t := range req.URL.Query()["tag"] {
		if !names.Tag(t) {
			return newError(codeManifestInvalid, "invalid tag %q in the tag parameter", t)
		}
		tags = append(tags, t)
	}
	if req.ContentLength > r.maxManifest {
		return newError(codeTooLarge, "manifest is %d bytes; the limit is %d", req.ContentLength, r.maxManifest)
	}
	payload, err := io.ReadAll(io.LimitReader(req.Body, r.maxManifest+1))
	if err != nil {
		return newError(codeManifestInvalid, "reading manifest: %v", err)
	}
	if int64(len(payload)) > r.maxManifest {
		return newError(codeTooLarge, "manifest exceeds the limit of %d bytes", r.maxManifest)
	}
	dgst := ref.digest
	if dgst == "" {
		dgst = digest.FromBytes(payload)
	} else if got := dgst.Algorithm().FromBytes(payload); got != dgst {
		return digestMismatch("manifest", dgst, got)
	}
	m, err := parseManifest(payload, requestMediaType(req), dgst, r.allowSparse)
	if err != nil {
		return err
	}
	// The layers and config must be in a storage the registry reads: the
	// one in effect, or an older one not migrated from yet.
	if err := r.meta.PutManifest(req.Context(), r.readableOf(req.Context()), repo, m, tags); err != nil {
		return referenceError(err)
	}
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/manifests/"+dgst.String())
	h.Set("Docker-Content-Digest", dgst.String())
	if m.Subject != "" {
		h.Set("OCI-Subject", m.Subject.String())
	}
	for _, t := range tags {
		h.Add("OCI-Tag", t)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// referenceError turns the store's refusal of a manifest's references
// into a spec error that names the digest in its detail.
func referenceError(err error) error {
	var missing *store.MissingReferenceError
	if errors.As(err, &missing) {
		c := codeManifestBlobUnknown
		if missing.Manifest {
			c = codeManifestChildUnknown
		}
		return &Error{Code: c, Message: missing.Error() + "; push it first", Detail: map[string]string{"digest": missing.Digest.String()}}
	}
	// Distribution answers every reference it cannot verify with
	// MANIFEST_BLOB_UNKNOWN (SIZE_INVALID is the upload's): a descriptor
	// of another size describes content the repository does not hold.
	var wrongSize *store.ReferenceSizeError
	if errors.As(err, &wrongSize) {
		return &Error{Code: codeManifestBlobUnknown, Message: wrongSize.Error(), Detail: map[string]string{"digest": wrongSize.Digest.String()}}
	}
	return fromClass(err, codeManifestUnknown, "manifest")
}

// requestMediaType is the request's Content-Type without parameters, or ""
// when it is absent or too generic to name a manifest kind.
func requestMediaType(req *http.Request) string {
	ct := req.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	switch mt {
	case "application/json", "application/octet-stream", "text/plain":
		return ""
	}
	return mt
}

// deleteManifest serves DELETE /v2/<name>/manifests/<reference>: a tag
// reference removes the tag only, a digest the manifest and its tags.
func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, repo string) error {
	ref, err := parseReference(req.PathValue("reference"))
	if err != nil {
		return err
	}
	ctx := req.Context()
	if ref.tag != "" {
		err = r.meta.DeleteTag(ctx, repo, ref.tag)
	} else {
		err = r.meta.DeleteManifest(ctx, repo, ref.digest)
	}
	if err != nil {
		return fromClass(err, codeManifestUnknown, "manifest "+ref.String())
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
