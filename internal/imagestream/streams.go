package imagestream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/store"
)

// Streams users write. An ImageStream's spec (labels, annotations,
// lookupPolicy, spec.tags) is kept as an object of the store, under the
// stream's name; its status is still read from the registry's rows. A
// stream a push created has no spec object until someone writes one.

// Specs is where spec objects are kept, and the repository rows a stream
// write creates, touches or deletes.
type Specs interface {
	GetObject(ctx context.Context, k store.ObjectKey) (store.Object, error)
	CreateObject(ctx context.Context, o store.Object) (store.Object, error)
	UpdateObject(ctx context.Context, o store.Object, expect int64) (store.Object, error)
	DeleteObject(ctx context.Context, k store.ObjectKey, expect int64, uid string) (store.Object, error)
	TouchRepository(ctx context.Context, repo string) error
	DeleteRepository(ctx context.Context, repo string) (store.ProjectDeletion, error)
	Manifest(ctx context.Context, repo, reference string) (store.Manifest, error)
}

// WriteOptions say how a stream write is made.
type WriteOptions struct {
	DryRun bool
	// CheckImportList applies allowedRegistriesForImport to the imports
	// the spec's DockerImage tags start (callers who may not create
	// images).
	CheckImportList bool
}

// SpecKey is where the spec of stream name of project is kept.
func SpecKey(project, name string) store.ObjectKey {
	return store.ObjectKey{Group: imagev1.GroupName, Resource: "imagestreams", Namespace: project, Name: name}
}

// ErrSpec wraps what is wrong with a stream's spec (an
// errdefs.ErrInvalidArgument); the message names the field.
var ErrSpec = errors.New("invalid image stream")

// overlaySpec puts what the spec object of is holds over the view built
// from the rows: identity, labels, annotations, generation and spec.
func (s *Service) overlaySpec(ctx context.Context, is *imagev1.ImageStream, repoVersion int64) error {
	o, err := s.specs.GetObject(ctx, SpecKey(is.Namespace, is.Name))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var stored imagev1.ImageStream
	if err := json.Unmarshal(o.Body, &stored); err != nil {
		return fmt.Errorf("decode the spec of %s/%s: %w", is.Namespace, is.Name, err)
	}
	is.UID, is.CreationTimestamp = stored.UID, stored.CreationTimestamp
	is.Labels, is.Annotations, is.Generation = stored.Labels, stored.Annotations, stored.Generation
	is.Spec.LookupPolicy = stored.Spec.LookupPolicy
	written := stored.Spec.Tags
	for _, alias := range is.Spec.Tags {
		if specOf(&stored, alias.Name) == nil {
			written = append(written, alias)
		}
	}
	is.Spec.Tags = written
	is.ResourceVersion = strconv.FormatInt(max(repoVersion, o.ResourceVersion), 10)
	return nil
}

// checkSpec validates the spec tags of is (in project) and checks that
// every source they name exists, without the network.
func (s *Service) checkSpec(ctx context.Context, project string, is *imagev1.ImageStream, o WriteOptions) ([]Source, error) {
	if err := names.Repository(project + "/" + is.Name); err != nil {
		return nil, fmt.Errorf("metadata.name: Invalid value: %q: %v: %w", is.Name, err, errdefs.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	sources := make([]Source, len(is.Spec.Tags))
	for i, t := range is.Spec.Tags {
		field := fmt.Sprintf("spec.tags[%d]", i)
		if !names.Tag(t.Name) {
			return nil, fmt.Errorf("%s.name: Invalid value: %q: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-': %w", field, t.Name, errdefs.ErrInvalidArgument)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%s.name: Duplicate value: %q: %w", field, t.Name, errdefs.ErrInvalidArgument)
		}
		seen[t.Name] = true
		if t.From == nil {
			continue // a tag with no source: pushed to, or set later
		}
		src, err := SourceOf(project, *t.From)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", field, WithoutClass(err), errdefs.ErrInvalidArgument)
		}
		if src.Kind == imagev1.KindDockerImage {
			if t.Reference {
				return nil, fmt.Errorf("%s.reference: Unsupported value: true: Berth imports a DockerImage (and pulls its layers through); a reference without an import is not kept: %w", field, errdefs.ErrInvalidArgument)
			}
			if s.importer == nil {
				return nil, fmt.Errorf("%s.from: Unsupported value: %q: %v: %w", field, t.From.Kind, ErrImportNeeded, errdefs.ErrInvalidArgument)
			}
			src.Import = ImportOptions{Insecure: t.ImportPolicy.Insecure, PreserveOriginal: t.ImportPolicy.ImportMode == "PreserveOriginal",
				CheckImportList: o.CheckImportList}
			sources[i] = src
			continue // fetched when applied; a failure is the tag's condition
		}
		if src.Repository() == project+"/"+is.Name && src.Kind == imagev1.KindImageStreamTag {
			if _, ref, _ := cutReference(src.Name); ref == t.Name {
				return nil, fmt.Errorf("%s.from: Invalid value: %q: a tag cannot follow itself: %w", field, src.Name, errdefs.ErrInvalidArgument)
			}
		}
		_, ref, _ := cutReference(src.Name)
		if _, err := s.specs.Manifest(ctx, src.Repository(), ref); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return nil, fmt.Errorf("%s.from: Not found: %s %s/%s: %w", field, src.Kind, src.Namespace, src.Name, errdefs.ErrNotFound)
			}
			return nil, err
		}
		sources[i] = src
	}
	return sources, nil
}

// WithoutClass is err's message without the errdefs.ErrInvalidArgument
// it wraps last (": invalid argument"), for a message that names the
// class in its own words (the API's 422 Invalid).
func WithoutClass(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalidArgument.Error())
}

// Sources are the sources a stream's spec tags name, for the caller's
// authorization (reading another project's images needs pull rights
// there); nil entries are tags without a from.
func Sources(project string, is *imagev1.ImageStream) []Source {
	var out []Source
	for _, t := range is.Spec.Tags {
		if t.From == nil {
			continue
		}
		if src, err := SourceOf(project, *t.From); err == nil {
			out = append(out, src)
		}
	}
	return out
}

// specObject is the store object that keeps is's spec.
func specObject(is *imagev1.ImageStream) (store.Object, error) {
	stored := imagev1.ImageStream{
		TypeMeta: metav1.TypeMeta{APIVersion: imagev1.GroupName + "/v1", Kind: "ImageStream"},
		ObjectMeta: metav1.ObjectMeta{Name: is.Name, Namespace: is.Namespace, UID: is.UID, CreationTimestamp: is.CreationTimestamp,
			Labels: is.Labels, Annotations: is.Annotations, Generation: is.Generation},
		Spec: is.Spec,
	}
	body, err := json.Marshal(stored)
	if err != nil {
		return store.Object{}, fmt.Errorf("encode the spec of %s/%s: %w", is.Namespace, is.Name, err)
	}
	return store.Object{ObjectKey: SpecKey(is.Namespace, is.Name), UID: string(is.UID), Created: is.CreationTimestamp.Time,
		Labels: is.Labels, Body: body}, nil
}

// CreateStream creates stream is in project: its spec object, its
// repository (empty until a push or a tag fills it), and the tags its
// spec.tags name, each set from its source. A stream that exists (pushed
// to, or created) is errdefs.ErrAlreadyExists.
func (s *Service) CreateStream(ctx context.Context, host, project string, is *imagev1.ImageStream, uid string, o WriteOptions) (*imagev1.ImageStream, error) {
	is.Namespace = project
	sources, err := s.checkSpec(ctx, project, is, o)
	if err != nil {
		return nil, err
	}
	if _, err := s.content.RepositoryByName(ctx, project+"/"+is.Name); err == nil {
		return nil, fmt.Errorf("image stream %s/%s: %w", project, is.Name, errdefs.ErrAlreadyExists)
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	is.UID = typesUID(uid)
	is.CreationTimestamp = metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	is.Generation = 1
	if o.DryRun {
		is.Status = imagev1.ImageStreamStatus{}
		return is, nil
	}
	obj, err := specObject(is)
	if err != nil {
		return nil, err
	}
	if _, err := s.specs.CreateObject(ctx, obj); err != nil {
		return nil, err
	}
	if err := s.specs.TouchRepository(ctx, project+"/"+is.Name); err != nil {
		return nil, err
	}
	if err := s.applyTags(ctx, project, is.Name, nil, is.Spec.Tags, sources); err != nil {
		return nil, err
	}
	return s.Named(ctx, host, project, is.Name)
}

// UpdateStream replaces the spec of stream name of project with is's
// (at resourceVersion expect, when it is not ""): the tags whose source
// changed (or whose generation was cleared, asking for them again) are
// set again, the spec tags that went are deleted with their history.
func (s *Service) UpdateStream(ctx context.Context, host, project, name string, is *imagev1.ImageStream, expect string, o WriteOptions) (*imagev1.ImageStream, error) {
	cur, err := s.Named(ctx, host, project, name)
	if err != nil {
		return nil, err
	}
	if expect != "" && expect != cur.ResourceVersion {
		return nil, fmt.Errorf("image stream %s/%s is at %s, not %s: %w", project, name, cur.ResourceVersion, expect, errdefs.ErrConflict)
	}
	is.Name, is.Namespace = name, project
	sources, err := s.checkSpec(ctx, project, is, o)
	if err != nil {
		return nil, err
	}
	is.UID, is.CreationTimestamp, is.Generation = cur.UID, cur.CreationTimestamp, max(cur.Generation, 1)
	if !reflect.DeepEqual(normalSpec(cur.Spec), normalSpec(is.Spec)) {
		is.Generation++
	}
	if o.DryRun {
		is.Status = cur.Status
		return is, nil
	}
	// A spec tag written with generation 0 asks for it to be set again
	// (re-imported); the request is not kept, or every later write
	// would repeat it.
	tags := slices.Clone(is.Spec.Tags)
	for i := range is.Spec.Tags {
		if g := is.Spec.Tags[i].Generation; g != nil && *g == 0 {
			is.Spec.Tags[i].Generation = nil
		}
	}
	obj, err := specObject(is)
	if err != nil {
		return nil, err
	}
	stored, err := s.specs.GetObject(ctx, SpecKey(project, name))
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		_, err = s.specs.CreateObject(ctx, obj)
	case err == nil:
		_, err = s.specs.UpdateObject(ctx, obj, stored.ResourceVersion)
	}
	if err != nil {
		return nil, err
	}
	if err := s.specs.TouchRepository(ctx, project+"/"+name); err != nil {
		return nil, err
	}
	if err := s.applyTags(ctx, project, name, cur, tags, sources); err != nil {
		return nil, err
	}
	return s.Named(ctx, host, project, name)
}

// applyTags sets each spec tag whose source is new or changed (or whose
// generation is 0: set it again, a re-import for a DockerImage), and
// deletes the tags cur's spec had that tags no longer has. The spec tags
// are kept as written, with nothing the server adds: kubectl apply
// compares them whole, and a field added here would make every apply a
// change.
func (s *Service) applyTags(ctx context.Context, project, stream string, cur *imagev1.ImageStream, tags []imagev1.TagReference, sources []Source) error {
	for i, t := range tags {
		if t.From == nil {
			continue
		}
		again := t.Generation != nil && *t.Generation == 0
		if old := specOf(cur, t.Name); old != nil && sameSource(old, &t) && !again {
			continue
		}
		var ie *ImportError
		if err := s.SetTag(ctx, project, stream, t.Name, sources[i]); err != nil && !errors.As(err, &ie) {
			return fmt.Errorf("spec.tags[%d]: %w", i, err)
		}
	}
	if cur == nil {
		return nil
	}
	for _, old := range cur.Spec.Tags {
		if specOfTags(tags, old.Name) != nil {
			continue
		}
		if err := s.content.DeleteTag(ctx, project+"/"+stream, old.Name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	return nil
}

// DeleteStream deletes stream name of project: its spec object, its tags
// and their history. Manifests no other stream links go; blobs are left
// to garbage collection. It returns the upload sessions that ended, whose
// bytes the caller discards.
func (s *Service) DeleteStream(ctx context.Context, project, name string) (store.ProjectDeletion, error) {
	_, specErr := s.specs.DeleteObject(ctx, SpecKey(project, name), 0, "")
	if specErr != nil && !errors.Is(specErr, errdefs.ErrNotFound) {
		return store.ProjectDeletion{}, specErr
	}
	gone, err := s.specs.DeleteRepository(ctx, project+"/"+name)
	if errors.Is(err, errdefs.ErrNotFound) && specErr == nil {
		return gone, nil // a spec object whose repository had gone
	}
	return gone, err
}

func sameSource(a, b *imagev1.TagReference) bool {
	return reflect.DeepEqual(a.From, b.From) && a.Reference == b.Reference
}

func specOfTags(tags []imagev1.TagReference, name string) *imagev1.TagReference {
	for i := range tags {
		if tags[i].Name == name {
			return &tags[i]
		}
	}
	return nil
}

// normalSpec is a spec as compared: nil and empty tag lists alike.
func normalSpec(spec imagev1.ImageStreamSpec) imagev1.ImageStreamSpec {
	if len(spec.Tags) == 0 {
		spec.Tags = nil
	}
	return spec
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func newObjectUID() string { return uuid.NewString() }
