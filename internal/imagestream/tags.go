package imagestream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/store"
)

// Tagger is what SetTag writes through.
type Tagger interface {
	TagImage(ctx context.Context, repo, tag, from string, dgst digest.Digest, why store.TagReason) error
	AliasTag(ctx context.Context, repo, tag, sourceRepo, sourceTag string) error
	TagHistory(ctx context.Context, repo, tag string) ([]store.TagEvent, error)
	RecordImport(ctx context.Context, repo, tag string, im store.Imported) error
	SetTagCondition(ctx context.Context, repo, tag string, c store.TagCondition) error
}

// ErrImportNeeded refuses a tag whose image is in another registry
// (from of kind DockerImage) where importing is not available.
var ErrImportNeeded = errors.New("importing from other registries is not available")

// Source is where SetTag takes a tag's image from: a tag (followed, as
// an alias) or an image by digest, in Namespace's streams.
type Source struct {
	Kind      string // imagev1.KindImageStreamTag, KindImageStreamImage or KindDockerImage
	Namespace string
	Name      string // "stream:tag", "stream@sha256:…" or a pull spec
	// Import says how a DockerImage is imported.
	Import ImportOptions
}

// Repository is the repository of the source's stream (of an
// ImageStreamTag or ImageStreamImage).
func (src Source) Repository() string {
	stream, _, _ := cutReference(src.Name)
	return src.Namespace + "/" + stream
}

// cutReference splits "stream:tag" and "stream@digest" at the separator.
func cutReference(name string) (stream, ref string, byDigest bool) {
	if stream, ref, ok := strings.Cut(name, "@"); ok {
		return stream, ref, true
	}
	stream, ref, _ = strings.Cut(name, ":")
	return stream, ref, false
}

// SourceOf reads a spec tag's from in project (whose own namespace is the
// default).
func SourceOf(project string, from imagev1.ObjectReference) (Source, error) {
	src := Source{Kind: from.Kind, Namespace: from.Namespace, Name: from.Name}
	if src.Namespace == "" {
		src.Namespace = project
	}
	if !names.Component(src.Namespace) {
		return Source{}, fmt.Errorf("from.namespace %q is not a project name: %w", src.Namespace, errdefs.ErrInvalidArgument)
	}
	stream, ref, byDigest := cutReference(src.Name)
	switch src.Kind {
	case imagev1.KindImageStreamTag:
		if byDigest || ref == "" || !names.Tag(ref) {
			return Source{}, fmt.Errorf("from.name of an ImageStreamTag is STREAM:TAG, not %q: %w", src.Name, errdefs.ErrInvalidArgument)
		}
	case imagev1.KindImageStreamImage:
		if !byDigest {
			return Source{}, fmt.Errorf("from.name of an ImageStreamImage is STREAM@DIGEST, not %q: %w", src.Name, errdefs.ErrInvalidArgument)
		}
		if _, err := names.Digest(ref); err != nil {
			return Source{}, fmt.Errorf("from.name %q: %v: %w", src.Name, err, errdefs.ErrInvalidArgument)
		}
	case imagev1.KindDockerImage:
		if _, err := name.ParseReference(src.Name, name.Insecure); err != nil {
			return Source{}, fmt.Errorf("from.name of a DockerImage is a pull spec, not %q: %w", src.Name, errdefs.ErrInvalidArgument)
		}
		src.Namespace = ""
		return src, nil
	default:
		return Source{}, fmt.Errorf("from.kind must be ImageStreamTag, ImageStreamImage or DockerImage, not %q: %w", src.Kind, errdefs.ErrInvalidArgument)
	}
	if err := names.Repository(src.Namespace + "/" + stream); err != nil {
		return Source{}, fmt.Errorf("from.name %q: %v: %w", src.Name, err, errdefs.ErrInvalidArgument)
	}
	return src, nil
}

// CheckTagName checks that stream and tag can name a tag of project.
func CheckTagName(project, stream, tag string) error {
	if err := names.Repository(project + "/" + stream); err != nil {
		return fmt.Errorf("stream %q: %v: %w", stream, err, errdefs.ErrInvalidArgument)
	}
	if !names.Tag(tag) {
		return fmt.Errorf("tag %q: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-': %w", tag, errdefs.ErrInvalidArgument)
	}
	return nil
}

// SetTag points tag of project/stream at src: a tag of the same stream,
// which it then follows (an alias), a tag of another stream or an image
// by digest, linked once as they are now, or an
// image of another registry, imported (a failed import is an
// *ImportError, also recorded on the tag). An image of the tag's own
// history is recorded as a rollback. The caller checks that the caller
// may read src.Namespace.
func (s *Service) SetTag(ctx context.Context, project, stream, tag string, src Source) error {
	if err := CheckTagName(project, stream, tag); err != nil {
		return err
	}
	repo := project + "/" + stream
	_, ref, _ := cutReference(src.Name)
	switch src.Kind {
	case imagev1.KindImageStreamTag:
		if src.Repository() == repo {
			return s.tags.AliasTag(ctx, repo, tag, repo, ref)
		}
		// A tag of another stream is taken as it is now (oc tag without
		// --alias): following it would go on copying another project's
		// images after the caller lost access to them.
		m, err := s.specs.Manifest(ctx, src.Repository(), ref)
		if err != nil {
			return err
		}
		return s.tags.TagImage(ctx, repo, tag, src.Repository(), m.Digest, store.ReasonTagged)
	case imagev1.KindDockerImage:
		_, err := s.ImportTag(ctx, project, stream, tag, src.Name, src.Import)
		return err
	case imagev1.KindImageStreamImage:
		dgst := digest.Digest(ref)
		why := store.ReasonTagged
		if src.Repository() == repo {
			history, err := s.tags.TagHistory(ctx, repo, tag)
			if err != nil {
				return err
			}
			for i, ev := range history {
				if i > 0 && ev.Digest == dgst {
					why = store.ReasonRollback
					break
				}
			}
		}
		return s.tags.TagImage(ctx, repo, tag, src.Repository(), dgst, why)
	}
	return fmt.Errorf("from.kind %q: %w", src.Kind, errdefs.ErrInvalidArgument)
}

// RollbackTarget picks the image a rollback of a tag goes to from its
// history (newest first, as status.tags[].items lists it): to "" is the
// newest entry with another image than the current one, a number N the
// Nth entry (0 is the current one), a digest an entry with that image.
func RollbackTarget(items []imagev1.TagEvent, to string) (string, error) {
	if len(items) == 0 {
		return "", fmt.Errorf("the tag has no history: %w", errdefs.ErrNotFound)
	}
	switch {
	case to == "":
		for _, ev := range items[1:] {
			if ev.Image != items[0].Image {
				return ev.Image, nil
			}
		}
		return "", fmt.Errorf("the tag's history holds no other image than the current one: %w", errdefs.ErrNotFound)
	case strings.Contains(to, ":"):
		for _, ev := range items {
			if ev.Image == to {
				return to, nil
			}
		}
		return "", fmt.Errorf("%s is not in the tag's history: %w", to, errdefs.ErrNotFound)
	}
	n, err := strconv.Atoi(to)
	if err != nil || n < 0 {
		return "", fmt.Errorf("--to is an entry number (0 is the current one) or a digest, not %q: %w", to, errdefs.ErrInvalidArgument)
	}
	if n >= len(items) {
		return "", fmt.Errorf("the tag's history has %d entries (0 to %d), not %d: %w", len(items), len(items)-1, n, errdefs.ErrNotFound)
	}
	return items[n].Image, nil
}
