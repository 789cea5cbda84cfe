package apiserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/imagestream"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// ImageStreams and ImageStreamTags, served from the image-stream service
// (internal/imagestream, where what they are is told). The JSON field
// names are the reference's.

const groupImage = imagev1.GroupName

var (
	resImageStreams    = auth.Resource{Group: groupImage, Resource: "imagestreams"}
	resImageStreamTags = auth.Resource{Group: groupImage, Resource: "imagestreamtags"}
)

func (s *Server) imageStreamRoutes() {
	const base = "/apis/" + groupImage + "/v1"
	s.handle("GET "+base+"/imagestreams", s.listImageStreams)
	s.handle("GET "+base+"/namespaces/{ns}/imagestreams", s.listImageStreams)
	s.handle("GET "+base+"/namespaces/{ns}/imagestreams/{name}", s.getImageStream)
	s.handle("GET "+base+"/imagestreamtags", s.listImageStreamTags)
	s.handle("GET "+base+"/namespaces/{ns}/imagestreamtags", s.listImageStreamTags)
	s.handle("GET "+base+"/namespaces/{ns}/imagestreamtags/{name}", s.getImageStreamTag)
	s.handle("DELETE "+base+"/namespaces/{ns}/imagestreamtags/{name}", s.deleteImageStreamTag)
	s.handleDryRun("POST "+base+"/namespaces/{ns}/imagestreamtags", s.writeImageStreamTag)
	s.handleDryRun("PUT "+base+"/namespaces/{ns}/imagestreamtags/{name}", s.writeImageStreamTag)
	s.handle("POST "+base+"/namespaces/{ns}/imagestreamimports", s.createImageStreamImport)
}

// registryHost is the host clients reach the registry at: the one this
// request came to (the API and the registry share the listener).
func registryHost(r *http.Request) string { return r.Host }

// ImageStreams are the image-stream operations the API serves
// (internal/imagestream).
type ImageStreams interface {
	Stream(ctx context.Context, host string, repo store.Repository) (*imagev1.ImageStream, error)
	In(ctx context.Context, host, project string) ([]*imagev1.ImageStream, error)
	Named(ctx context.Context, host, project, name string) (*imagev1.ImageStream, error)
	Tag(ctx context.Context, host, project, name string) (*imagev1.ImageStream, imagev1.NamedTagEventList, error)
	Untag(ctx context.Context, project, stream, tag string) error
	SetTag(ctx context.Context, project, stream, tag string, src imagestream.Source) error
	TagPage(ctx context.Context, host string, q store.TagQuery) ([]*imagev1.ImageStreamTag, int, error)
	TagSummary(ctx context.Context, project, name string) (store.TagRow, error)
	StreamWriter
	Importer
}

var imageStreamColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "Image Repository", Type: "string", Description: "Where to pull the stream's images from."},
	{Name: "Tags", Type: "string", Description: "The stream's tags, by name."},
	{Name: "Updated", Type: "string", Description: "When a tag last changed."}}

func imageStreamTable(items []*imagev1.ImageStream, rv string) metav1.Table {
	t := newTable(imageStreamColumns, rv, "")
	for _, is := range items {
		var names []string
		var updated time.Time
		for _, tag := range is.Status.Tags {
			names = append(names, tag.Tag)
			if len(tag.Items) > 0 && tag.Items[0].Created.After(updated) {
				updated = tag.Items[0].Created.Time
			}
		}
		when := ""
		if !updated.IsZero() {
			when = humanAgo(updated)
		}
		t.Rows = append(t.Rows, metaRow(is.ObjectMeta, is.Name, is.Status.DockerImageRepository, strings.Join(names, ","), when))
	}
	return t
}

func (s *Server) listImageStreams(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	q, err := parseListQuery(r)
	if err != nil {
		return err
	}
	if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
		if err := s.authorize(r, "watch", resImageStreams, ns); err != nil {
			return err
		}
		return serveWatch(s, w, r, q, s.imageStreamWatchFeed(r, ns))
	}
	if err := s.authorize(r, "list", resImageStreams, ns); err != nil {
		return err
	}
	page, err := parsePageQuery(r, imageStreamSorts)
	if err != nil {
		return err
	}
	var items []*imagev1.ImageStream
	var meta metav1.ListMeta
	rv, err := s.opts.Store.LatestResourceVersion(r.Context())
	if err != nil {
		return err
	}
	if q.labels.Empty() {
		// Sorted, searched and paged over the repositories' summaries;
		// only the page's streams are built.
		sums, err := s.opts.Store.RepositorySummaries(r.Context(), ns)
		if err != nil {
			return err
		}
		var kept []store.RepositorySummary
		for _, sum := range sums {
			project, name, _ := strings.Cut(sum.Name, "/")
			if page.matchesSearch(sum.Name) && q.fields.Matches(fields.Set{"metadata.name": name, "metadata.namespace": project}) {
				kept = append(kept, sum)
			}
		}
		sortStreams(kept, page.sortBy, page.desc)
		from, to := page.window(len(kept))
		meta.Continue, meta.RemainingItemCount = page.pageMeta(to-from, len(kept))
		for _, sum := range kept[from:to] {
			is, err := s.streams.Stream(r.Context(), registryHost(r), sum.Repository)
			if err != nil {
				return err
			}
			items = append(items, is)
		}
	} else {
		// Labels live in the streams' spec objects: build them all.
		if page.sortBy != imageStreamSorts[0] {
			return badRequest("sortBy %s cannot go with a labelSelector; sort by name, or search instead", page.sortBy)
		}
		streams, _, err := s.imageStreamsIn(r, ns)
		if err != nil {
			return err
		}
		var selected []*imagev1.ImageStream
		for _, is := range streams {
			if q.labels.Matches(labelSet(is.Labels)) && q.fields.Matches(fieldSet(is.ObjectMeta)) {
				selected = append(selected, is)
			}
		}
		items = sortedPage(selected, page, func(is *imagev1.ImageStream) string { return is.Namespace + "/" + is.Name }, &meta)
	}
	if items == nil {
		items = []*imagev1.ImageStream{}
	}
	meta.ResourceVersion = strconv.FormatInt(rv, 10)
	if wantsTable(r) {
		t := imageStreamTable(items, meta.ResourceVersion)
		t.Continue, t.RemainingItemCount = meta.Continue, meta.RemainingItemCount
		return writeJSONOrYAML(w, r, http.StatusOK, t)
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "ImageStreamList", "apiVersion": groupImage + "/v1", "metadata": meta, "items": items,
	})
}

// imageStreamSorts are the keys streams sort by, the default first.
var imageStreamSorts = []string{"name", "tags", "updated"}

// sortStreams orders summaries (in name order) by key; ties stay in name
// order whichever the direction.
func sortStreams(sums []store.RepositorySummary, key string, desc bool) {
	sortItems(sums, desc, func(a, b store.RepositorySummary) int {
		switch key {
		case "tags":
			return cmp.Compare(a.Tags, b.Tags)
		case "updated":
			return a.Updated.Compare(b.Updated)
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// imageStreamsIn builds the streams of namespace ns (all when ""), and the
// resourceVersion they are as of.
func (s *Server) imageStreamsIn(r *http.Request, ns string) ([]*imagev1.ImageStream, int64, error) {
	rv, err := s.opts.Store.LatestResourceVersion(r.Context())
	if err != nil {
		return nil, 0, err
	}
	out, err := s.streams.In(r.Context(), registryHost(r), ns)
	if err != nil {
		return nil, 0, err
	}
	return out, rv, nil
}

func (s *Server) getImageStream(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "get", resImageStreams, ns); err != nil {
		return err
	}
	is, err := s.streams.Named(r.Context(), registryHost(r), ns, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &StatusError{http.StatusNotFound, "NotFound", `imagestreams.image.openshift.io "` + name + `" not found`}
	}
	if err != nil {
		return err
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, imageStreamTable([]*imagev1.ImageStream{is}, is.ResourceVersion))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, is)
}

// imageStreamWatchFeed is how serveWatch reads the streams of ns (all
// when ""): a MODIFIED event (ADDED for a new repository) with the stream
// as it now is whenever one of its repository's rows changes — a push, a
// tag update or deletion.
func (s *Server) imageStreamWatchFeed(r *http.Request, ns string) watchFeed[*imagev1.ImageStream] {
	// A push links its blobs one event each before its manifest: read
	// enough to see a push whole, and show the stream once.
	const batch = 200
	return watchFeed[*imagev1.ImageStream]{
		resource: resImageStreams, project: ns,
		current: func(context.Context) ([]*imagev1.ImageStream, int64, error) { return s.imageStreamsIn(r, ns) },
		changes: func(ctx context.Context, after int64) ([]watchChange[*imagev1.ImageStream], int64, bool, error) {
			events, err := s.opts.Store.RepositoryEvents(ctx, ns, after, batch)
			if err != nil {
				return nil, after, false, err
			}
			// One event per repository per batch, with the stream as it is now.
			seen := map[string]int64{}
			var order []string
			created := map[string]bool{}
			for _, e := range events {
				after = e.Seq
				if !e.Kind.ChangesStream() {
					continue // a blob link: the stream looks the same
				}
				if _, ok := seen[e.Repository]; !ok {
					order = append(order, e.Repository)
				}
				seen[e.Repository] = e.Seq
				created[e.Repository] = created[e.Repository] || e.Kind == store.EventRepositoryCreated
			}
			var changes []watchChange[*imagev1.ImageStream]
			for _, name := range order {
				change, err := s.imageStreamChange(ctx, r, name, seen[name], created[name])
				if err != nil {
					return nil, after, false, err
				}
				changes = append(changes, change)
			}
			return changes, after, len(events) == batch, nil
		},
		table: func(is *imagev1.ImageStream) metav1.Table {
			return imageStreamTable([]*imagev1.ImageStream{is}, is.ResourceVersion)
		},
	}
}

// imageStreamChange is the watch event for repository name, changed last
// at seq: DELETED when it is gone, ADDED when the changes created it.
func (s *Server) imageStreamChange(ctx context.Context, r *http.Request, name string, seq int64, created bool) (watchChange[*imagev1.ImageStream], error) {
	rv := strconv.FormatInt(seq, 10)
	repo, err := s.opts.Store.RepositoryByName(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		project, image, _ := strings.Cut(name, "/")
		return watchChange[*imagev1.ImageStream]{Type: "DELETED", Object: &imagev1.ImageStream{
			TypeMeta:   metav1.TypeMeta{APIVersion: groupImage + "/v1", Kind: "ImageStream"},
			ObjectMeta: metav1.ObjectMeta{Name: image, Namespace: project, ResourceVersion: rv},
			Status:     imagev1.ImageStreamStatus{DockerImageRepository: registryHost(r) + "/" + name}}}, nil
	}
	if err != nil {
		return watchChange[*imagev1.ImageStream]{}, err
	}
	is, err := s.streams.Stream(ctx, registryHost(r), repo)
	if err != nil {
		return watchChange[*imagev1.ImageStream]{}, err
	}
	is.ResourceVersion = rv
	typ := "MODIFIED"
	if created {
		typ = "ADDED"
	}
	return watchChange[*imagev1.ImageStream]{Type: typ, Object: is}, nil
}

var imageStreamTagColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "Image Reference", Type: "string", Description: "Where to pull the tag's image from, by digest."},
	{Name: "Updated", Type: "string", Description: "When the tag last changed."}}

func imageStreamTagTable(items []*imagev1.ImageStreamTag, rv string) metav1.Table {
	t := newTable(imageStreamTagColumns, rv, "")
	for _, ist := range items {
		t.Rows = append(t.Rows, metaRow(ist.ObjectMeta, ist.Name, ist.Image.DockerImageReference, humanAgo(ist.CreationTimestamp.Time)))
	}
	return t
}

func (s *Server) listImageStreamTags(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	q, err := parseListQuery(r)
	if err != nil {
		return err
	}
	if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
		if err := s.authorize(r, "watch", resImageStreamTags, ns); err != nil {
			return err
		}
		return serveWatch(s, w, r, q, s.imageStreamTagWatchFeed(r, ns, q))
	}
	if err := s.authorize(r, "list", resImageStreamTags, ns); err != nil {
		return err
	}
	page, err := parsePageQuery(r, imageStreamTagSorts)
	if err != nil {
		return err
	}
	rv, err := s.opts.Store.LatestResourceVersion(r.Context())
	if err != nil {
		return err
	}
	var items []*imagev1.ImageStreamTag
	var meta metav1.ListMeta
	if q.fields.Empty() {
		// Sorted, filtered and paged by the store.
		var total int
		tq := store.TagQuery{Project: ns,
			Search: page.search, Sort: store.TagSort(page.sortBy), Descending: page.desc, Offset: page.offset, Limit: page.limit}
		if stream := r.URL.Query().Get("imageStream"); stream != "" {
			if ns == "" {
				return badRequest("imageStream names a stream of a project: list the tags of the project")
			}
			tq.Repository = ns + "/" + stream
		}
		items, total, err = s.streams.TagPage(r.Context(), registryHost(r), tq)
		if err != nil {
			return err
		}
		meta.Continue, meta.RemainingItemCount = page.pageMeta(len(items), total)
	} else if page.sortBy != string(store.TagsByName) {
		return badRequest("sortBy %s cannot go with a fieldSelector; sort by name, or search instead", page.sortBy)
	} else if items, _, err = s.imageStreamTagsIn(r, ns, q); err != nil {
		return err
	} else {
		// A field selector matches names the store does not index: the
		// selection is made here, then sorted and paged.
		items = sortedPage(items, page, func(ist *imagev1.ImageStreamTag) string { return ist.Namespace + "/" + ist.Name }, &meta)
	}
	meta.ResourceVersion = strconv.FormatInt(rv, 10)
	if wantsTable(r) {
		t := imageStreamTagTable(items, meta.ResourceVersion)
		t.Continue, t.RemainingItemCount = meta.Continue, meta.RemainingItemCount
		return writeJSONOrYAML(w, r, http.StatusOK, t)
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "ImageStreamTagList", "apiVersion": groupImage + "/v1", "metadata": meta, "items": items,
	})
}

// imageStreamTagSorts are the keys tags sort by (sortBy), the default
// first: store.TagSort's.
var imageStreamTagSorts = []string{string(store.TagsByName), string(store.TagsByPushed), string(store.TagsBySize),
	string(store.TagsByPulled), string(store.TagsByPulls)}

// sortedPage is the page of items (already in name order) that p asks,
// searched by name only: what lists the store does not sort take.
func sortedPage[T any](items []T, p pageQuery, name func(T) string, meta *metav1.ListMeta) []T {
	kept := []T{}
	for _, it := range items {
		if p.matchesSearch(name(it)) {
			kept = append(kept, it)
		}
	}
	if p.desc {
		slices.Reverse(kept)
	}
	from, to := p.window(len(kept))
	meta.Continue, meta.RemainingItemCount = p.pageMeta(to-from, len(kept))
	return kept[from:to]
}

// imageStreamTagsIn are the tags of the streams of ns (all when "") that
// q selects, and the resourceVersion they are as of.
func (s *Server) imageStreamTagsIn(r *http.Request, ns string, q listQuery) ([]*imagev1.ImageStreamTag, int64, error) {
	streams, rv, err := s.imageStreamsIn(r, ns)
	if err != nil {
		return nil, 0, err
	}
	items := []*imagev1.ImageStreamTag{}
	for _, is := range streams {
		for _, tag := range is.Status.Tags {
			if len(tag.Items) == 0 {
				continue // a failed first import: a condition, no image yet
			}
			if ist := imagestream.TagView(is, tag); q.fields.Matches(fieldSet(ist.ObjectMeta)) {
				items = append(items, ist)
			}
		}
	}
	return items, rv, nil
}

// imageStreamTagWatchFeed is how serveWatch reads the tags of ns (all
// when ""): a MODIFIED event (ADDED for a tag's first entry) with the tag
// as it now is whenever it moves, DELETED when it is deleted.
func (s *Server) imageStreamTagWatchFeed(r *http.Request, ns string, q listQuery) watchFeed[*imagev1.ImageStreamTag] {
	const batch = 200
	return watchFeed[*imagev1.ImageStreamTag]{
		resource: resImageStreamTags, project: ns,
		current: func(context.Context) ([]*imagev1.ImageStreamTag, int64, error) { return s.imageStreamTagsIn(r, ns, q) },
		changes: func(ctx context.Context, after int64) ([]watchChange[*imagev1.ImageStreamTag], int64, bool, error) {
			events, err := s.opts.Store.RepositoryEvents(ctx, ns, after, batch)
			if err != nil {
				return nil, after, false, err
			}
			// One event per tag per batch, with the tag as it is now.
			type tagKey struct{ repo, tag string }
			last := map[tagKey]int64{}
			var order []tagKey
			for _, e := range events {
				after = e.Seq
				if !e.Kind.ChangesTags() || e.Tag == "" {
					continue
				}
				k := tagKey{e.Repository, e.Tag}
				if _, ok := last[k]; !ok {
					order = append(order, k)
				}
				last[k] = e.Seq
			}
			var changes []watchChange[*imagev1.ImageStreamTag]
			for _, k := range order {
				project, stream, _ := strings.Cut(k.repo, "/")
				name := stream + ":" + k.tag
				rv := strconv.FormatInt(last[k], 10)
				is, tag, err := s.streams.Tag(ctx, registryHost(r), project, name)
				if errors.Is(err, errdefs.ErrNotFound) {
					changes = append(changes, watchChange[*imagev1.ImageStreamTag]{Type: "DELETED", Object: &imagev1.ImageStreamTag{
						TypeMeta:   metav1.TypeMeta{APIVersion: groupImage + "/v1", Kind: "ImageStreamTag"},
						ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: project, ResourceVersion: rv}}})
					continue
				}
				if err != nil {
					return nil, after, false, err
				}
				ist := imagestream.TagView(is, tag)
				ist.ResourceVersion = rv
				if !q.fields.Matches(fieldSet(ist.ObjectMeta)) {
					continue
				}
				typ := "MODIFIED"
				if len(tag.Items) == 1 {
					typ = "ADDED"
				}
				changes = append(changes, watchChange[*imagev1.ImageStreamTag]{Type: typ, Object: ist})
			}
			return changes, after, len(events) == batch, nil
		},
		table: func(ist *imagev1.ImageStreamTag) metav1.Table {
			return imageStreamTagTable([]*imagev1.ImageStreamTag{ist}, ist.ResourceVersion)
		},
	}
}

// findTag returns the stream and tag named "stream:tag" in ns.
func (s *Server) findTag(r *http.Request, ns, name string) (*imagev1.ImageStream, imagev1.NamedTagEventList, error) {
	is, tag, err := s.streams.Tag(r.Context(), registryHost(r), ns, name)
	switch {
	case errors.Is(err, imagestream.ErrTagName):
		return nil, tag, badRequest("an ImageStreamTag is named STREAM:TAG, not %q", name)
	case errors.Is(err, errdefs.ErrNotFound):
		return nil, tag, &StatusError{http.StatusNotFound, "NotFound", `imagestreamtags.image.openshift.io "` + name + `" not found`}
	}
	return is, tag, err
}

func (s *Server) getImageStreamTag(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "get", resImageStreamTags, ns); err != nil {
		return err
	}
	is, tag, err := s.findTag(r, ns, name)
	if err != nil {
		return err
	}
	ist := imagestream.TagView(is, tag)
	if m, err := s.opts.Store.StoredManifestByDigest(r.Context(), digest.Digest(ist.Image.Name)); err == nil {
		ist.Image.DockerImageManifestMediaType = m.MediaType
	}
	if row, err := s.streams.TagSummary(r.Context(), ns, name); err == nil && row.Digest == digest.Digest(ist.Image.Name) {
		ist.Annotations = map[string]string{}
		imagestream.Annotate(ist.Annotations, row)
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, imageStreamTagTable([]*imagev1.ImageStreamTag{ist}, ist.ResourceVersion))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, ist)
}

// writeImageStreamTag creates (POST) or updates (PUT, which creates too,
// as the reference's does) a tag from its tag.from: an ImageStreamTag it
// then follows, or an ImageStreamImage (stream@digest) set once — the
// request behind berth tag and berth rollback.
func (s *Server) writeImageStreamTag(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	creating := r.Method == http.MethodPost
	verb := "update"
	if creating {
		verb = "create"
	}
	if err := s.authorize(r, verb, resImageStreamTags, ns); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var ist imagev1.ImageStreamTag
	if err := decodeJSONOrYAML(r, body, &ist); err != nil {
		return err
	}
	if ist.Kind != "" && (ist.Kind != "ImageStreamTag" || ist.APIVersion != groupImage+"/v1") {
		return badRequest("the body is a %s %s, not an %s/v1 ImageStreamTag", ist.APIVersion, ist.Kind, groupImage)
	}
	if ist.Namespace != "" && ist.Namespace != ns {
		return badRequest("the namespace of the provided object (%q) does not match the namespace sent on the request (%q)", ist.Namespace, ns)
	}
	switch {
	case creating:
		name = ist.Name
	case ist.Name != "" && ist.Name != name:
		return badRequest("the name of the object (%s) does not match the name on the URL (%s)", ist.Name, name)
	}
	stream, tag, ok := strings.Cut(name, ":")
	if !ok || stream == "" || tag == "" {
		return invalid("metadata.name: Invalid value: %q: an ImageStreamTag is named STREAM:TAG", name)
	}
	if err := imagestream.CheckTagName(ns, stream, tag); err != nil {
		return invalid("metadata.name: Invalid value: %q: %s", name, imagestream.WithoutClass(err))
	}
	if ist.Tag == nil || ist.Tag.From == nil {
		return invalid("tag.from: Required value: the image the tag points at (an ImageStreamTag to follow, or an ImageStreamImage STREAM@DIGEST); push to create a tag from new content")
	}
	if ist.Tag.Name != "" && ist.Tag.Name != tag {
		return invalid("tag.name: Invalid value: %q: must be the tag of the name, %q", ist.Tag.Name, tag)
	}
	src, err := imagestream.SourceOf(ns, *ist.Tag.From)
	if err != nil {
		return invalid("tag.%s", imagestream.WithoutClass(err))
	}
	if src.Kind == imagev1.KindDockerImage {
		src.Import = imagestream.ImportOptions{Insecure: ist.Tag.ImportPolicy.Insecure,
			PreserveOriginal: ist.Tag.ImportPolicy.ImportMode == "PreserveOriginal",
			CheckImportList:  s.authorize(r, "create", resImages, "") != nil}
	} else if src.Namespace != ns {
		// Tagging copies what the caller can read: pulling from the source
		// project is the right asked for.
		if err := s.authorize(r, "get", auth.ImageStreamLayers, src.Namespace); err != nil {
			return err
		}
	}
	if err := refuseWhenReadOnly(r, "tags cannot be changed"); err != nil {
		return err
	}
	if creating {
		if _, _, err := s.findTag(r, ns, name); err == nil {
			return &StatusError{http.StatusConflict, "AlreadyExists", `imagestreamtags.image.openshift.io "` + name + `" already exists`}
		}
	}
	code := http.StatusOK
	if creating {
		code = http.StatusCreated
	}
	if isDryRun(r) {
		return writeJSONOrYAML(w, r, code, &ist)
	}
	if err := s.streams.SetTag(r.Context(), ns, stream, tag, src); err != nil {
		var ie *imagestream.ImportError
		if errors.As(err, &ie) {
			return importRefusal(ie)
		}
		if errors.Is(err, imagestream.ErrImportNeeded) {
			return invalid("tag.from: Unsupported value: %q: %v", src.Kind, err)
		}
		if errors.Is(err, errdefs.ErrNotFound) {
			return &StatusError{http.StatusNotFound, "NotFound", fmt.Sprintf("tag.from %s %s/%s: not found", src.Kind, src.Namespace, src.Name)}
		}
		return err
	}
	is, cur, err := s.findTag(r, ns, name)
	if err != nil {
		return err
	}
	return writeJSONOrYAML(w, r, code, imagestream.TagView(is, cur))
}

// importRefusal answers a failed import of a tag: Forbidden (a registry
// the cluster's policy refuses) and NotFound as they are, anything else
// as the import's reason in a 422 (an upstream's 401 is not the caller's).
func importRefusal(ie *imagestream.ImportError) *StatusError {
	switch ie.Reason {
	case "Forbidden":
		return &StatusError{http.StatusForbidden, "Forbidden", "import: " + ie.Message}
	case "NotFound":
		return &StatusError{http.StatusNotFound, "NotFound", "import: " + ie.Message}
	}
	return &StatusError{http.StatusUnprocessableEntity, "Invalid", "import failed (" + ie.Reason + "): " + ie.Message}
}

// deleteImageStreamTag deletes the tag (imagestream.Service.Untag).
func (s *Server) deleteImageStreamTag(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "delete", resImageStreamTags, ns); err != nil {
		return err
	}
	is, tag, err := s.findTag(r, ns, name)
	if err != nil {
		return err
	}
	if err := refuseWhenReadOnly(r, "tags cannot be deleted"); err != nil {
		return err
	}
	if err := s.streams.Untag(r.Context(), ns, is.Name, tag.Tag); err != nil {
		return err
	}
	writeSuccess(w, name, groupImage, "imagestreamtags")
	return nil
}

// newUIDFrom is a UUID derived from s (version 5), stable across reads.
func newUIDFrom(s string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(s)).String()
}

func humanAgo(t time.Time) string { return duration.HumanDuration(time.Since(t)) }

func labelSet(l map[string]string) labels.Set { return labels.Set(l) }

func fieldSet(m metav1.ObjectMeta) fields.Set {
	return fields.Set{"metadata.name": m.Name, "metadata.namespace": m.Namespace}
}

// refuseWhenReadOnly answers 405 for a change to the registry's images
// while the Config's readOnly is set (as /v2 does); access is checked
// first, so a caller who may not make the change learns that instead.
func refuseWhenReadOnly(r *http.Request, what string) error {
	if !settings.From(r.Context()).ReadOnly {
		return nil
	}
	return &StatusError{http.StatusMethodNotAllowed, "MethodNotAllowed",
		"the registry is read-only (spec.readOnly of the registry Config): " + what}
}
