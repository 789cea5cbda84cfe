package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Images are a view of the stored manifests: cluster-scoped, named by
// digest, with what the manifest and its config say (the reference's
// image.openshift.io/v1 Image, JSON names and all).

// Blobs is what the API asks of the blob driver: an image's config to
// read, and the bytes of upload sessions a deleted project ended to
// discard.
type Blobs interface {
	Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error)
	AbortUpload(ctx context.Context, u store.EndedUpload) error
}

var resImages = auth.Resource{Group: groupImage, Resource: "images"}

func (s *Server) imageRoutes() {
	const base = "/apis/" + groupImage + "/v1/images"
	s.handle("GET "+base, s.listImages)
	s.handle("GET "+base+"/{name}", s.getImage)
}

// maxConfigBytes bounds the config blob read for an Image.
const maxConfigBytes = 4 << 20

// image is the Image of a stored manifest; with metadata, its config is
// read too (a Table shows none of it).
func (s *Server) image(ctx context.Context, r *http.Request, m store.StoredManifest, metadata bool) *imagev1.Image {
	img := &imagev1.Image{
		TypeMeta: metav1.TypeMeta{APIVersion: groupImage + "/v1", Kind: "Image"},
		ObjectMeta: metav1.ObjectMeta{Name: string(m.Digest),
			UID:               types.UID(newUIDFrom("image\x00" + string(m.Digest))),
			ResourceVersion:   "1", // content-addressed: an Image never changes
			CreationTimestamp: metav1.NewTime(m.Created.Truncate(time.Second))},
		DockerImageMetadataVersion: "1.0", DockerImageManifestMediaType: m.MediaType,
		DockerImageLayers: []imagev1.ImageLayer{},
	}
	if m.Repository != "" {
		img.DockerImageReference = registryHost(r) + "/" + m.Repository + "@" + string(m.Digest)
	}
	var doc struct {
		ocispec.Manifest
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(m.Payload, &doc) != nil {
		return img
	}
	for _, c := range doc.Manifests {
		child := imagev1.ImageManifest{Digest: string(c.Digest), MediaType: c.MediaType, ManifestSize: c.Size}
		if c.Platform != nil {
			child.Architecture, child.OS, child.Variant = c.Platform.Architecture, c.Platform.OS, c.Platform.Variant
		}
		img.DockerImageManifests = append(img.DockerImageManifests, child)
	}
	var layersSize int64
	for _, l := range doc.Layers {
		img.DockerImageLayers = append(img.DockerImageLayers, imagev1.ImageLayer{Name: string(l.Digest), Size: l.Size, MediaType: l.MediaType})
		layersSize += l.Size
	}
	if doc.Config.Digest == "" || !metadata {
		return img
	}
	meta := &imagev1.DockerImage{Kind: "DockerImage", APIVersion: "image.openshift.io/1.0", ID: string(doc.Config.Digest),
		Size: doc.Config.Size + layersSize}
	if cfg, err := s.imageConfig(ctx, doc.Config.Digest); err == nil {
		if cfg.Created != nil && !cfg.Created.IsZero() {
			t := metav1.NewTime(*cfg.Created)
			meta.Created = &t
		}
		meta.Architecture, meta.OS = cfg.Architecture, cfg.OS
		c := cfg.Config
		meta.Config = &imagev1.DockerConfig{User: c.User, ExposedPorts: c.ExposedPorts, Env: c.Env, Entrypoint: c.Entrypoint,
			Cmd: c.Cmd, Volumes: c.Volumes, WorkingDir: c.WorkingDir, Labels: c.Labels, StopSignal: c.StopSignal}
	} else {
		s.log.Debug("image config unreadable", "image", m.Digest, "config", doc.Config.Digest, "err", err)
	}
	img.DockerImageMetadata = meta
	return img
}

// imageConfig reads and decodes an image's config blob; an artifact's
// config that is not an image config decodes to little, which is fine.
// A blob never changes under its digest, so decoded configs are kept.
func (s *Server) imageConfig(ctx context.Context, dgst digest.Digest) (ocispec.Image, error) {
	if cfg, ok := s.configs.get(dgst); ok {
		return cfg, nil
	}
	var cfg ocispec.Image
	if s.opts.Blobs == nil {
		return cfg, errors.New("no blob store")
	}
	f, err := s.opts.Blobs.Open(ctx, dgst, 0, -1)
	if err != nil {
		return cfg, err
	}
	defer f.Close()
	if err := json.NewDecoder(io.LimitReader(f, maxConfigBytes)).Decode(&cfg); err != nil {
		return cfg, err
	}
	s.configs.put(dgst, cfg)
	return cfg, nil
}

// imageConfigCache holds decoded image configs by digest, up to a bound;
// beyond it an arbitrary entry makes room (configs are a few KB, and a
// miss only costs a blob read).
type imageConfigCache struct {
	mu      sync.Mutex
	configs map[digest.Digest]ocispec.Image
}

const maxCachedConfigs = 4096

func (c *imageConfigCache) get(dgst digest.Digest) (ocispec.Image, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, ok := c.configs[dgst]
	return cfg, ok
}

func (c *imageConfigCache) put(dgst digest.Digest, cfg ocispec.Image) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.configs == nil {
		c.configs = map[digest.Digest]ocispec.Image{}
	}
	if len(c.configs) >= maxCachedConfigs {
		for d := range c.configs {
			delete(c.configs, d)
			break
		}
	}
	c.configs[dgst] = cfg
}

var imageColumns = []metav1.TableColumnDefinition{columnName,
	{Name: "Image Reference", Type: "string", Description: "Where to pull the image from, by digest."}}

func imageTable(items []*imagev1.Image, next string) metav1.Table {
	t := newTable(imageColumns, "1", next)
	for _, img := range items {
		t.Rows = append(t.Rows, metaRow(img.ObjectMeta, img.Name, img.DockerImageReference))
	}
	return t
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r, "list", resImages, ""); err != nil {
		return err
	}
	limit := 500
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("limit %q is not a count", v)
		}
		if n > 0 {
			limit = n
		}
	}
	after := digest.Digest(r.URL.Query().Get("continue"))
	page, more, err := s.opts.Store.ManifestsPage(r.Context(), after, limit)
	if err != nil {
		return err
	}
	items := []*imagev1.Image{}
	table := wantsTable(r)
	for _, m := range page {
		items = append(items, s.image(r.Context(), r, m, !table))
	}
	next := ""
	if more && len(page) > 0 {
		next = string(page[len(page)-1].Digest)
	}
	if table {
		return writeJSONOrYAML(w, r, http.StatusOK, imageTable(items, next))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, map[string]any{
		"kind": "ImageList", "apiVersion": groupImage + "/v1",
		"metadata": metav1.ListMeta{ResourceVersion: "1", Continue: next}, "items": items,
	})
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.authorize(r, "get", resImages, ""); err != nil {
		return err
	}
	m, err := s.opts.Store.StoredManifestByDigest(r.Context(), digest.Digest(name))
	if errors.Is(err, errdefs.ErrNotFound) {
		return notFound("images.image.openshift.io", name)
	}
	if err != nil {
		return err
	}
	img := s.image(r.Context(), r, m, !wantsTable(r))
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, imageTable([]*imagev1.Image{img}, ""))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, img)
}
