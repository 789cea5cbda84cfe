package imagestream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Annotations Berth puts on the ImageStreamTags it lists: what a tag's
// image weighs, who moved the tag, and how often it is pulled (counted in
// batches, so up to a few seconds behind).
const (
	AnnotationImageSize  = "berth.io/image-size"  // bytes: the manifest, config and layers (an index's children whole)
	AnnotationPushedBy   = "berth.io/pushed-by"   // the user who last moved the tag
	AnnotationPulls      = "berth.io/pulls"       // how many times the image was pulled from the stream
	AnnotationLastPulled = "berth.io/last-pulled" // RFC 3339; absent when never pulled
)

// TagPage lists the tags q selects as ImageStreamTags, in q's order, and
// how many it selects in all. Only the streams of the page are read (their
// spec objects), not every tag's history.
func (s *Service) TagPage(ctx context.Context, host string, q store.TagQuery) ([]*imagev1.ImageStreamTag, int, error) {
	page, err := s.content.ListTags(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	shells := map[string]*imagev1.ImageStream{}
	out := make([]*imagev1.ImageStreamTag, 0, len(page.Rows))
	for _, row := range page.Rows {
		is, ok := shells[row.Repository]
		if !ok {
			if is, err = s.shell(ctx, host, row.Repository); err != nil {
				return nil, 0, err
			}
			shells[row.Repository] = is
		}
		out = append(out, tagOfRow(is, row))
	}
	return out, page.Total, nil
}

// TagSummary is the tag row of tag "stream:tag" in project: the listing's
// view of one tag.
func (s *Service) TagSummary(ctx context.Context, project, name string) (store.TagRow, error) {
	stream, tag, ok := strings.Cut(name, ":")
	if !ok {
		return store.TagRow{}, fmt.Errorf("tag %q: %w", name, errdefs.ErrNotFound)
	}
	page, err := s.content.ListTags(ctx, store.TagQuery{Repository: project + "/" + stream, Tag: tag})
	if err != nil {
		return store.TagRow{}, err
	}
	if len(page.Rows) == 0 {
		return store.TagRow{}, fmt.Errorf("tag %s of %s/%s: %w", tag, project, stream, errdefs.ErrNotFound)
	}
	return page.Rows[0], nil
}

// shell is the ImageStream of repo without its tags' histories: identity
// and spec, what a tag's view takes from its stream.
func (s *Service) shell(ctx context.Context, host, name string) (*imagev1.ImageStream, error) {
	repo, err := s.content.RepositoryByName(ctx, name)
	if err != nil {
		return nil, err
	}
	_, image, _ := strings.Cut(repo.Name, "/")
	is := &imagev1.ImageStream{
		ObjectMeta: metav1.ObjectMeta{Name: image, Namespace: repo.Project,
			ResourceVersion: strconv.FormatInt(repo.Version, 10)},
		Status: imagev1.ImageStreamStatus{DockerImageRepository: host + "/" + repo.Name},
	}
	o, err := s.specs.GetObject(ctx, SpecKey(repo.Project, image))
	if errors.Is(err, errdefs.ErrNotFound) {
		return is, nil
	}
	if err != nil {
		return nil, err
	}
	var stored imagev1.ImageStream
	if err := json.Unmarshal(o.Body, &stored); err != nil {
		return nil, fmt.Errorf("decode the spec of %s: %w", name, err)
	}
	is.Spec = stored.Spec
	is.ResourceVersion = strconv.FormatInt(max(repo.Version, o.ResourceVersion), 10)
	return is, nil
}

// tagOfRow is the ImageStreamTag of a listed row, as TagView makes it of
// the stream's history, with the listing's annotations.
func tagOfRow(is *imagev1.ImageStream, row store.TagRow) *imagev1.ImageStreamTag {
	project, _, _ := strings.Cut(row.Repository, "/")
	pullSpec := is.Status.DockerImageRepository
	spec := specOf(is, row.Tag)
	if spec == nil && row.AliasOf != "" {
		alias := aliasSpec(project, store.StreamTag{Tag: row.Tag, AliasOf: row.AliasOf,
			Items: []store.TagEvent{{Generation: row.Generation}}})
		spec = &alias
	}
	ref := pullSpec + "@" + string(row.Digest)
	if row.Source != "" && (spec == nil || spec.ReferencePolicy.Type != "Local") {
		ref = row.Source
	}
	created := metav1.NewTime(row.Pushed.Truncate(time.Second))
	annotations := map[string]string{}
	Annotate(annotations, row)
	return &imagev1.ImageStreamTag{
		TypeMeta: metav1.TypeMeta{APIVersion: imagev1.GroupName + "/v1", Kind: "ImageStreamTag"},
		ObjectMeta: metav1.ObjectMeta{Name: is.Name + ":" + row.Tag, Namespace: is.Namespace,
			UID:               uidFor("imagestreamtag", is.Namespace+"/"+is.Name+":"+row.Tag, created.Time),
			ResourceVersion:   is.ResourceVersion,
			CreationTimestamp: created, Annotations: annotations},
		Generation: row.Generation,
		Tag:        spec,
		Image: imagev1.ImageRef{ObjectMeta: metav1.ObjectMeta{Name: string(row.Digest), CreationTimestamp: created},
			DockerImageReference: ref, DockerImageManifestMediaType: row.MediaType},
	}
}

// Annotate adds the listing's annotations of row to annotations.
func Annotate(annotations map[string]string, row store.TagRow) {
	annotations[AnnotationImageSize] = strconv.FormatInt(row.Size, 10)
	annotations[AnnotationPulls] = strconv.FormatInt(row.Pulls, 10)
	if row.PushedBy != "" {
		annotations[AnnotationPushedBy] = row.PushedBy
	}
	if !row.LastPulled.IsZero() {
		annotations[AnnotationLastPulled] = row.LastPulled.UTC().Format(time.RFC3339)
	}
}
