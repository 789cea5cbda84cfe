// Package imagestream is the image-stream service: the operations on
// streams and their tags that the management API, /v2 and background jobs
// (import, pruning) share, so that none of them holds the rules alone.
//
// An ImageStream is a view of the registry's own rows: a repository
// <project>/<name> is the stream <name> in namespace <project>, and its
// tags' histories (the append-only tag events /v2 writes) are the
// stream's status.tags. Nothing is copied, so the two cannot diverge.
package imagestream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Content is what the service reads and writes of the metadata store.
type Content interface {
	RepositoriesOfProject(ctx context.Context, project string) ([]store.Repository, error)
	RepositoryByName(ctx context.Context, name string) (store.Repository, error)
	StreamTags(ctx context.Context, repo string) ([]store.StreamTag, error)
	DeleteTag(ctx context.Context, repo, tag string) error
	// ListTags reads a sorted, filtered page of live tags (TagPage).
	ListTags(ctx context.Context, q store.TagQuery) (store.TagPage, error)
}

// Service runs the image-stream operations.
type Service struct {
	content  Content
	tags     Tagger
	specs    Specs
	remotes  Remotes
	importer *Importer
	proxy    proxyState
}

// Store is the metadata the service reads and writes.
type Store interface {
	Content
	Tagger
	Specs
	Remotes
}

// New returns the service over the store.
func New(st Store) *Service { return &Service{content: st, tags: st, specs: st, remotes: st} }

// Stream is the ImageStream of repo, whose images are pulled from host.
func (s *Service) Stream(ctx context.Context, host string, repo store.Repository) (*imagev1.ImageStream, error) {
	tags, err := s.content.StreamTags(ctx, repo.Name)
	if err != nil {
		return nil, err
	}
	_, name, _ := strings.Cut(repo.Name, "/")
	pullSpec := host + "/" + repo.Name
	is := &imagev1.ImageStream{
		TypeMeta: metav1.TypeMeta{APIVersion: imagev1.GroupName + "/v1", Kind: "ImageStream"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: repo.Project,
			UID:               uidFor("imagestream", repo.Name, repo.Created),
			ResourceVersion:   strconv.FormatInt(repo.Version, 10),
			CreationTimestamp: metav1.NewTime(repo.Created.Truncate(time.Second))},
		Status: imagev1.ImageStreamStatus{DockerImageRepository: pullSpec},
	}
	for _, t := range tags {
		if t.AliasOf != "" {
			is.Spec.Tags = append(is.Spec.Tags, aliasSpec(repo.Project, t))
		}
		list := imagev1.NamedTagEventList{Tag: t.Tag, Items: []imagev1.TagEvent{}}
		for _, ev := range t.Items {
			// An imported image is referred to where it came from; one
			// pushed here, here.
			ref := pullSpec + "@" + string(ev.Digest)
			if ev.Source != "" {
				ref = ev.Source
			}
			list.Items = append(list.Items, imagev1.TagEvent{
				Created:              metav1.NewTime(ev.Created.Truncate(time.Second)),
				DockerImageReference: ref,
				Image:                string(ev.Digest), Generation: ev.Generation,
				Actor: ev.Actor, Reason: string(ev.Reason),
			})
		}
		for _, c := range t.Conditions {
			list.Conditions = append(list.Conditions, imagev1.TagEventCondition{Type: c.Type, Status: c.Status,
				LastTransitionTime: metav1.NewTime(c.Changed.Truncate(time.Second)), Reason: c.Reason, Message: c.Message, Generation: c.Generation})
		}
		is.Status.Tags = append(is.Status.Tags, list)
	}
	if err := s.overlaySpec(ctx, is, repo.Version); err != nil {
		return nil, err
	}
	// A tag whose reference policy is Local is pulled through this
	// registry, whatever its images' sources.
	for i, t := range is.Status.Tags {
		if spec := specOf(is, t.Tag); spec != nil && spec.ReferencePolicy.Type == "Local" {
			for j := range t.Items {
				is.Status.Tags[i].Items[j].DockerImageReference = pullSpec + "@" + t.Items[j].Image
			}
		}
	}
	return is, nil
}

// aliasSpec is the spec tag of an alias: from the ImageStreamTag it
// follows, its namespace left out when it is the stream's own.
func aliasSpec(project string, t store.StreamTag) imagev1.TagReference {
	source, tag, _ := strings.Cut(t.AliasOf, ":")
	ns, stream, _ := strings.Cut(source, "/")
	if ns == project {
		ns = ""
	}
	generation := int64(0)
	if len(t.Items) > 0 {
		generation = t.Items[0].Generation
	}
	return imagev1.TagReference{Name: t.Tag, Generation: &generation,
		From:            &imagev1.ObjectReference{Kind: imagev1.KindImageStreamTag, Namespace: ns, Name: stream + ":" + tag},
		ReferencePolicy: imagev1.TagReferencePolicy{Type: "Source"}}
}

// Named is the stream name of project; errdefs.ErrNotFound when there is
// none.
func (s *Service) Named(ctx context.Context, host, project, name string) (*imagev1.ImageStream, error) {
	repo, err := s.content.RepositoryByName(ctx, project+"/"+name)
	if err != nil {
		return nil, err
	}
	return s.Stream(ctx, host, repo)
}

// In are the streams of project (of every project when "").
func (s *Service) In(ctx context.Context, host, project string) ([]*imagev1.ImageStream, error) {
	repos, err := s.content.RepositoriesOfProject(ctx, project)
	if err != nil {
		return nil, err
	}
	out := make([]*imagev1.ImageStream, 0, len(repos))
	for _, repo := range repos {
		is, err := s.Stream(ctx, host, repo)
		if err != nil {
			return nil, err
		}
		out = append(out, is)
	}
	return out, nil
}

// ErrTagName refuses an ImageStreamTag name that is not STREAM:TAG.
var ErrTagName = errors.New("an ImageStreamTag is named STREAM:TAG")

// Tag finds the tag named "stream:tag" in project, with its stream:
// errdefs.ErrNotFound when either is missing (a tag with no history is
// none), ErrTagName (an errdefs.ErrInvalidArgument) for another name.
func (s *Service) Tag(ctx context.Context, host, project, name string) (*imagev1.ImageStream, imagev1.NamedTagEventList, error) {
	stream, tag, ok := strings.Cut(name, ":")
	if !ok || stream == "" || tag == "" {
		return nil, imagev1.NamedTagEventList{}, fmt.Errorf("%w, not %q: %w", ErrTagName, name, errdefs.ErrInvalidArgument)
	}
	is, err := s.Named(ctx, host, project, stream)
	if err != nil {
		return nil, imagev1.NamedTagEventList{}, err
	}
	for _, t := range is.Status.Tags {
		if t.Tag == tag && len(t.Items) > 0 {
			return is, t, nil
		}
	}
	return nil, imagev1.NamedTagEventList{}, fmt.Errorf("tag %s of %s/%s: %w", tag, project, stream, errdefs.ErrNotFound)
}

// Untag deletes tag of stream in project, as DELETE of the /v2 tag does:
// the same row, seen in both places.
// A spec tag of that name goes too, as on the reference: a tag deleted
// is not set again from its source.
func (s *Service) Untag(ctx context.Context, project, stream, tag string) error {
	if err := s.content.DeleteTag(ctx, project+"/"+stream, tag); err != nil {
		return err
	}
	o, err := s.specs.GetObject(ctx, SpecKey(project, stream))
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var stored imagev1.ImageStream
	if err := json.Unmarshal(o.Body, &stored); err != nil {
		return fmt.Errorf("decode the spec of %s/%s: %w", project, stream, err)
	}
	if specOf(&stored, tag) == nil {
		return nil
	}
	kept := stored.Spec.Tags[:0]
	for _, t := range stored.Spec.Tags {
		if t.Name != tag {
			kept = append(kept, t)
		}
	}
	stored.Spec.Tags = kept
	stored.Generation++
	updated, err := specObject(&stored)
	if err != nil {
		return err
	}
	_, err = s.specs.UpdateObject(ctx, updated, o.ResourceVersion)
	return err
}

// TagView is the ImageStreamTag of tag in is: its latest image.
func TagView(is *imagev1.ImageStream, tag imagev1.NamedTagEventList) *imagev1.ImageStreamTag {
	var latest imagev1.TagEvent // none: a tag whose first import failed
	if len(tag.Items) > 0 {
		latest = tag.Items[0]
	}
	return &imagev1.ImageStreamTag{
		TypeMeta: metav1.TypeMeta{APIVersion: imagev1.GroupName + "/v1", Kind: "ImageStreamTag"},
		ObjectMeta: metav1.ObjectMeta{Name: is.Name + ":" + tag.Tag, Namespace: is.Namespace,
			UID:               uidFor("imagestreamtag", is.Namespace+"/"+is.Name+":"+tag.Tag, latest.Created.Time),
			ResourceVersion:   is.ResourceVersion,
			CreationTimestamp: latest.Created},
		Generation: latest.Generation,
		Tag:        specOf(is, tag.Tag),
		Image: imagev1.ImageRef{ObjectMeta: metav1.ObjectMeta{Name: latest.Image, CreationTimestamp: latest.Created},
			DockerImageReference: latest.DockerImageReference},
	}
}

// uidFor is a stable UID for a view object: the same repository created
// at the same time always has the same one, and a re-created one another.
func uidFor(kind, name string, created time.Time) types.UID {
	return types.UID(uuid.NewSHA1(uuid.NameSpaceOID, []byte(kind+"\x00"+name+"\x00"+created.UTC().Format(time.RFC3339Nano))).String())
}

// specOf is the spec tag of tag in is, nil when it has none (a pushed
// tag).
func specOf(is *imagev1.ImageStream, tag string) *imagev1.TagReference {
	if is == nil {
		return nil
	}
	for i := range is.Spec.Tags {
		if is.Spec.Tags[i].Name == tag {
			ref := is.Spec.Tags[i]
			return &ref
		}
	}
	return nil
}

func typesUID(uid string) types.UID { return types.UID(uid) }
