package imagestream

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/names"
)

// ImportResult is the outcome of one image of an ImageStreamImport.
type ImportResult struct {
	Tag     string
	Fetched Fetched
	// Err is the import's failure (an *ImportError), nil on success.
	Err error
}

// ImportOutcome is the outcome of an ImageStreamImport.
type ImportOutcome struct {
	Images []ImportResult
	// Repository is the outcome of a repository import: each tag's, and
	// the upstream tags beyond the maximum.
	Repository     []ImportResult
	AdditionalTags []string
	// RepositoryErr is why the repository's tags could not be listed.
	RepositoryErr error
}

// MaxImagesPerImport bounds spec.images of one ImageStreamImport: one
// request must not hold the importer (and its rate) for everyone.
const MaxImagesPerImport = 100

// DefaultMaxBulk is how many tags a repository import takes by default
// (the reference's maxImagesBulkImportedPerRepository).
const DefaultMaxBulk = 50

// Import runs an ImageStreamImport for project: each image is fetched
// and, when isi.Spec.Import, recorded under its tag, whose spec tag is
// set (the stream is created if needed). A failure of one image is in
// its result (and on its tag), not an error; an error is a request that
// is wrong as a whole or a store that failed.
func (s *Service) Import(ctx context.Context, project string, isi *imagev1.ImageStreamImport, checkImportList bool) (ImportOutcome, error) {
	var out ImportOutcome
	if s.importer == nil {
		return out, fmt.Errorf("%v: %w", ErrImportNeeded, errdefs.ErrInvalidArgument)
	}
	stream := isi.Name
	if err := names.Repository(project + "/" + stream); err != nil {
		return out, fmt.Errorf("metadata.name: Invalid value: %q: %v: %w", stream, err, errdefs.ErrInvalidArgument)
	}
	if isi.Spec.Repository == nil && len(isi.Spec.Images) == 0 {
		return out, fmt.Errorf("spec: Required value: spec.images or spec.repository: %w", errdefs.ErrInvalidArgument)
	}
	if len(isi.Spec.Images) > MaxImagesPerImport {
		return out, fmt.Errorf("spec.images: Too many: %d: must have at most %d items (import a repository with spec.repository): %w",
			len(isi.Spec.Images), MaxImagesPerImport, errdefs.ErrInvalidArgument)
	}
	for i, img := range isi.Spec.Images {
		if img.From.Kind != imagev1.KindDockerImage {
			return out, fmt.Errorf("spec.images[%d].from.kind: Unsupported value: %q: supported values: \"DockerImage\": %w", i, img.From.Kind, errdefs.ErrInvalidArgument)
		}
		if img.To != nil && !names.Tag(img.To.Name) {
			return out, fmt.Errorf("spec.images[%d].to.name: Invalid value: %q: not a tag: %w", i, img.To.Name, errdefs.ErrInvalidArgument)
		}
	}
	if r := isi.Spec.Repository; r != nil && r.From.Kind != imagev1.KindDockerImage {
		return out, fmt.Errorf("spec.repository.from.kind: Unsupported value: %q: supported values: \"DockerImage\": %w", r.From.Kind, errdefs.ErrInvalidArgument)
	}
	var specs []imagev1.TagReference
	for _, img := range isi.Spec.Images {
		o := ImportOptions{Insecure: img.ImportPolicy.Insecure, PreserveOriginal: img.ImportPolicy.ImportMode == "PreserveOriginal", CheckImportList: checkImportList}
		res := s.importOne(ctx, project, stream, img.From.Name, img.To, isi.Spec.Import, o)
		out.Images = append(out.Images, res)
		if img.To != nil && isi.Spec.Import {
			specs = append(specs, specTag(img.To.Name, img.From.Name, img.ImportPolicy, img.ReferencePolicy))
		}
	}
	if r := isi.Spec.Repository; r != nil {
		o := ImportOptions{Insecure: r.ImportPolicy.Insecure, PreserveOriginal: r.ImportPolicy.ImportMode == "PreserveOriginal", CheckImportList: checkImportList}
		upstreamTags, err := s.ListUpstreamTags(ctx, project, r.From.Name, o)
		if err != nil {
			var ie *ImportError
			if !errors.As(err, &ie) {
				return out, err
			}
			out.RepositoryErr = ie
		}
		tags := PrioritizeTags(upstreamTags)
		limit := s.importer.MaxBulk
		if limit == 0 {
			limit = DefaultMaxBulk
		}
		if limit > 0 && len(tags) > limit {
			out.AdditionalTags = tags[limit:]
			tags = tags[:limit]
		}
		for _, tag := range tags {
			from := r.From.Name + ":" + tag
			res := s.importOne(ctx, project, stream, from, &imagev1.LocalObjectReference{Name: tag}, isi.Spec.Import, o)
			out.Repository = append(out.Repository, res)
			if isi.Spec.Import {
				specs = append(specs, specTag(tag, from, r.ImportPolicy, r.ReferencePolicy))
			}
		}
	}
	if isi.Spec.Import {
		if err := s.ensureSpecTags(ctx, project, stream, specs); err != nil {
			return out, err
		}
	}
	return out, nil
}

func specTag(tag, from string, ip imagev1.TagImportPolicy, rp imagev1.TagReferencePolicy) imagev1.TagReference {
	return imagev1.TagReference{Name: tag, From: &imagev1.ObjectReference{Kind: imagev1.KindDockerImage, Name: from},
		ImportPolicy: ip, ReferencePolicy: rp}
}

// importOne fetches one image and, when record, records it under to.
func (s *Service) importOne(ctx context.Context, project, stream, from string, to *imagev1.LocalObjectReference, record bool, o ImportOptions) ImportResult {
	res := ImportResult{}
	if to != nil {
		res.Tag = to.Name
	}
	if record && to != nil {
		res.Fetched, res.Err = s.ImportTag(ctx, project, stream, to.Name, from, o)
		return res
	}
	// A look-up writes nothing: no config blob is kept.
	res.Fetched, res.Err = s.Fetch(ctx, project, "", from, o)
	if res.Err != nil {
		res.Err = importFailure(res.Err)
	}
	return res
}

// ensureSpecTags sets the spec tags of project/stream to tags (by name),
// creating the stream's spec object if needed. A tag's reference policy
// is kept when it has one (importing does not change it).
func (s *Service) ensureSpecTags(ctx context.Context, project, stream string, tags []imagev1.TagReference) error {
	if len(tags) == 0 {
		return s.specs.TouchRepository(ctx, project+"/"+stream)
	}
	for range 5 {
		err := s.writeSpecTags(ctx, project, stream, tags)
		if !errors.Is(err, errdefs.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("spec of %s/%s kept changing: %w", project, stream, errdefs.ErrConflict)
}

func (s *Service) writeSpecTags(ctx context.Context, project, stream string, tags []imagev1.TagReference) error {
	o, err := s.specs.GetObject(ctx, SpecKey(project, stream))
	var is imagev1.ImageStream
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		is = imagev1.ImageStream{ObjectMeta: metav1.ObjectMeta{Name: stream, Namespace: project, UID: typesUID(newObjectUID()),
			CreationTimestamp: metav1.Now().Rfc3339Copy(), Generation: 1}}
	case err != nil:
		return err
	default:
		if err := jsonUnmarshal(o.Body, &is); err != nil {
			return fmt.Errorf("decode the spec of %s/%s: %w", project, stream, err)
		}
	}
	changed := false
	for _, t := range tags {
		cur := specOf(&is, t.Name)
		if cur == nil {
			is.Spec.Tags = append(is.Spec.Tags, t)
			changed = true
			continue
		}
		if cur.ReferencePolicy.Type != "" {
			t.ReferencePolicy = cur.ReferencePolicy
		}
		t.Annotations = cur.Annotations
		if !sameSource(cur, &t) || cur.ImportPolicy != t.ImportPolicy || cur.ReferencePolicy != t.ReferencePolicy {
			*cur = t
			changed = true
		}
	}
	if !changed && err == nil {
		return s.specs.TouchRepository(ctx, project+"/"+stream)
	}
	if err == nil {
		is.Generation++
	}
	updated, merr := specObject(&is)
	if merr != nil {
		return merr
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		if _, err := s.specs.CreateObject(ctx, updated); err != nil {
			if errors.Is(err, errdefs.ErrAlreadyExists) {
				return fmt.Errorf("created meanwhile: %w", errdefs.ErrConflict)
			}
			return err
		}
	} else if _, err := s.specs.UpdateObject(ctx, updated, o.ResourceVersion); err != nil {
		return err
	}
	return s.specs.TouchRepository(ctx, project+"/"+stream)
}

// ImportStatus is the Status of one result, as the reference reports it.
func ImportStatus(err error) metav1.Status {
	if err == nil {
		return metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK}
	}
	ie := importFailure(err)
	code := http.StatusInternalServerError
	switch ie.Reason {
	case "NotFound":
		code = http.StatusNotFound
	case "Unauthorized":
		code = http.StatusUnauthorized
	case "Forbidden":
		code = http.StatusForbidden
	case "BadRequest", "Invalid":
		code = http.StatusBadRequest
	case "TooManyRequests":
		code = http.StatusTooManyRequests
	}
	return metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Reason: metav1.StatusReason(ie.Reason), Message: ie.Message}
}
