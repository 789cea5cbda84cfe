package imagestream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/upstream"
)

// Imports from other registries. The importer fetches an image's
// manifest (an index with its children, or one platform of it) and its
// config blob, and records them: the config is stored here (the Image's
// metadata comes from it), the layers are not — pull-through fetches
// them on the first pull. A failed import leaves the tag as it was and
// records why on it (ImportSuccess False).

// Upstreams reach other registries with a project's credentials and the
// cluster's trust and policy (internal/upstream).
type Upstreams interface {
	Remote(ctx context.Context, project string, ref name.Reference, insecure, checkImportList bool) ([]remote.Option, error)
}

// BlobSink stores a blob fetched from elsewhere in the storage in effect
// and links it into a repository.
type BlobSink interface {
	PutBlob(ctx context.Context, repo string, dgst digest.Digest, size int64, r io.Reader) error
}

// Importer is what imports need besides the metadata store.
type Importer struct {
	Upstreams Upstreams
	// PullThrough reaches upstreams for pull-through (nil: Upstreams);
	// unlike imports, a pull is not rate-limited.
	PullThrough Upstreams
	Blobs       BlobSink
	// MaxBulk caps a repository import (the reference's
	// maxImagesBulkImportedPerRepository, default 50; -1: none).
	MaxBulk int
}

// PullUpstreams are the upstreams pulls go through.
func (im *Importer) PullUpstreams() Upstreams {
	if im.PullThrough != nil {
		return im.PullThrough
	}
	return im.Upstreams
}

// SetImporter lets the service import (without one, a DockerImage source
// is refused with ErrImportNeeded).
func (s *Service) SetImporter(im *Importer) { s.importer = im }

// MaxIndexChildren bounds the manifests of an imported index (a
// multi-platform image has tens).
const MaxIndexChildren = 256

// maxConfigBytes bounds an image config fetched by an import.
const maxConfigBytes = 4 << 20

// ImportOptions say how one image is imported.
type ImportOptions struct {
	Insecure bool
	// PreserveOriginal keeps an index with every platform; otherwise one
	// platform of it is imported (the reference's Legacy mode).
	PreserveOriginal bool
	// CheckImportList applies allowedRegistriesForImport (callers who may
	// not create images).
	CheckImportList bool
	// ForPull fetches for a client's pull (a proxy cache): without the
	// imports' rate limit.
	ForPull bool
}

// Fetched is an image an import fetched.
type Fetched struct {
	// Manifests are the one the tag points at first, then its children.
	Manifests []store.Manifest
	// Source is the upstream repository.
	Source string
}

// Top is the digest of the fetched image.
func (f Fetched) Top() digest.Digest { return f.Manifests[0].Digest }

// ImportError is a failed import, with the reference's reason.
type ImportError struct {
	Reason, Message string
}

func (e *ImportError) Error() string { return e.Message }

func importFailure(err error) *ImportError {
	var ie *ImportError
	if errors.As(err, &ie) {
		return ie
	}
	reason, message := upstream.Classify(err)
	return &ImportError{Reason: reason, Message: message}
}

// Fetch fetches the image pullSpec names for project and stores the
// config blobs of what it fetched in repo (none when repo is "": a
// look-up).
func (s *Service) Fetch(ctx context.Context, project, repo, pullSpec string, o ImportOptions) (Fetched, error) {
	if s.importer == nil {
		return Fetched{}, fmt.Errorf("import %s: %w", pullSpec, ErrImportNeeded)
	}
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(pullSpec, nameOpts...)
	if err != nil {
		return Fetched{}, &ImportError{Reason: "Invalid", Message: fmt.Sprintf("%q is not a pull spec: %v", pullSpec, err)}
	}
	ups := s.importer.Upstreams
	if o.ForPull {
		ups = s.importer.PullUpstreams()
	}
	opts, err := ups.Remote(ctx, project, ref, o.Insecure, o.CheckImportList)
	if err != nil {
		return Fetched{}, importFailure(err)
	}
	opts = append(opts, remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil && upstream.AnonymousRetry(err) {
		// A public image can answer 401 to a wrong secret: try without
		// one, and report the first failure if that fails too.
		anonymous := append(opts[:len(opts):len(opts)], upstream.WithoutCredentials())
		if d, aerr := remote.Get(ref, anonymous...); aerr == nil {
			desc, err, opts = d, nil, anonymous
		}
	}
	if err != nil {
		return Fetched{}, importFailure(err)
	}
	f := Fetched{Source: ref.Context().Name()}
	top, err := parseFetched(desc.Manifest, string(desc.MediaType), desc.Digest)
	if err != nil {
		return Fetched{}, err
	}
	children := []ggcrv1.Descriptor{}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Fetched{}, importFailure(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return Fetched{}, importFailure(err)
		}
		if len(im.Manifests) > MaxIndexChildren {
			return Fetched{}, &ImportError{Reason: "BadRequest", Message: fmt.Sprintf("index %s@%s lists %d manifests, more than %d",
				f.Source, desc.Digest, len(im.Manifests), MaxIndexChildren)}
		}
		if o.PreserveOriginal {
			f.Manifests = append(f.Manifests, top)
			children = im.Manifests
		} else if c, ok := pickPlatform(im.Manifests); ok {
			children = []ggcrv1.Descriptor{c}
		} else {
			return Fetched{}, &ImportError{Reason: "NotFound", Message: fmt.Sprintf("index %s@%s lists no image", f.Source, desc.Digest)}
		}
	} else {
		f.Manifests = append(f.Manifests, top)
	}
	for _, c := range children {
		cd, err := remote.Get(ref.Context().Digest(c.Digest.String()), opts...)
		if err != nil {
			return Fetched{}, importFailure(err)
		}
		m, err := parseFetched(cd.Manifest, string(cd.MediaType), cd.Digest)
		if err != nil {
			return Fetched{}, err
		}
		f.Manifests = append(f.Manifests, m)
	}
	if repo == "" {
		return f, nil // a look-up: nothing is kept
	}
	for _, m := range f.Manifests {
		if err := s.fetchConfig(ctx, ref, opts, repo, m); err != nil {
			return Fetched{}, err
		}
	}
	return f, nil
}

// parseFetched checks a fetched manifest against its digest and reads it
// by the rules of a push.
func parseFetched(payload []byte, mediaType string, want ggcrv1.Hash) (store.Manifest, error) {
	dgst := digest.FromBytes(payload)
	if dgst.String() != want.String() {
		return store.Manifest{}, &ImportError{Reason: "InternalError", Message: fmt.Sprintf("the upstream manifest has digest %s, not %s", dgst, want)}
	}
	m, err := registry.ParseManifest(payload, mediaType, dgst)
	if err != nil {
		return store.Manifest{}, &ImportError{Reason: "BadRequest", Message: fmt.Sprintf("the upstream manifest %s: %v", dgst, err)}
	}
	return m, nil
}

// fetchConfig stores the config blob of an image manifest in repo, so
// that its Image has metadata without a pull.
func (s *Service) fetchConfig(ctx context.Context, ref name.Reference, opts []remote.Option, repo string, m store.Manifest) error {
	if isIndex(m.MediaType) {
		return nil
	}
	for _, r := range m.References {
		if r.Manifest {
			continue
		}
		// The config is a manifest's first reference (registry.ParseManifest).
		if r.Size > maxConfigBytes {
			return &ImportError{Reason: "BadRequest", Message: fmt.Sprintf("config %s is %d bytes, more than %d", r.Digest, r.Size, maxConfigBytes)}
		}
		layer, err := remote.Layer(ref.Context().Digest(r.Digest.String()), opts...)
		if err != nil {
			return importFailure(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return importFailure(err)
		}
		defer rc.Close()
		if err := s.importer.Blobs.PutBlob(ctx, repo, r.Digest, r.Size, io.LimitReader(rc, r.Size+1)); err != nil {
			if errors.Is(err, errdefs.ErrSizeMismatch) || errors.Is(err, errdefs.ErrInvalidArgument) {
				return &ImportError{Reason: "InternalError", Message: fmt.Sprintf("config %s: %v", r.Digest, err)}
			}
			return err
		}
		return nil
	}
	return nil
}

func isIndex(mediaType string) bool {
	return types.MediaType(mediaType).IsIndex()
}

// pickPlatform is the image the reference's Legacy mode keeps of an
// index: linux/amd64, else the first image.
func pickPlatform(ds []ggcrv1.Descriptor) (ggcrv1.Descriptor, bool) {
	for _, d := range ds {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			return d, true
		}
	}
	for _, d := range ds {
		if d.MediaType.IsImage() {
			return d, true
		}
	}
	return ggcrv1.Descriptor{}, false
}

// ImportTag imports pullSpec into tag of project/stream: the tag moves to
// the fetched image (no history when the upstream digest is unchanged),
// or, when the import fails, the tag keeps its image and records why.
// The failure is returned too.
func (s *Service) ImportTag(ctx context.Context, project, stream, tag, pullSpec string, o ImportOptions) (Fetched, error) {
	repo := project + "/" + stream
	f, err := s.Fetch(ctx, project, repo, pullSpec, o)
	if errors.Is(err, ErrImportNeeded) {
		return Fetched{}, err
	}
	if err == nil {
		err = s.tags.RecordImport(ctx, repo, tag, store.Imported{Manifests: f.Manifests, Source: f.Source, Insecure: o.Insecure})
		if err == nil {
			return f, nil
		}
	}
	var ie *ImportError
	if !errors.As(err, &ie) {
		return Fetched{}, err // the store or the storage failed, not the upstream
	}
	if cerr := s.tags.SetTagCondition(ctx, repo, tag, store.TagCondition{Type: store.ConditionImportSuccess, Status: "False",
		Reason: ie.Reason, Message: ie.Message}); cerr != nil {
		return Fetched{}, cerr
	}
	return Fetched{}, ie
}

// PrioritizeTags orders upstream tags as the reference does for a
// repository import: latest first, then full versions (newest first),
// then minor versions (newest first), then the rest by name.
func PrioritizeTags(tags []string) []string {
	type ranked struct {
		tag   string
		class int
		nums  []int
	}
	var rs []ranked
	seen := map[string]bool{}
	for _, t := range tags {
		if t == "" {
			t = "latest"
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		r := ranked{tag: t, class: 3}
		if t == "latest" {
			r.class = 0
		} else if nums, ok := versionOf(t); ok {
			r.nums = nums
			r.class = 1
			if len(nums) == 2 {
				r.class = 2
			}
		}
		rs = append(rs, r)
	}
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.class != b.class {
			return a.class < b.class
		}
		for k := 0; k < len(a.nums) && k < len(b.nums); k++ {
			if a.nums[k] != b.nums[k] {
				return a.nums[k] > b.nums[k]
			}
		}
		return a.tag < b.tag
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.tag
	}
	return out
}

// versionOf reads [v]MAJOR.MINOR[.PATCH] (with an optional pre-release or
// build suffix on a full version).
func versionOf(tag string) ([]int, bool) {
	t := strings.TrimPrefix(tag, "v")
	core, _, _ := strings.Cut(t, "-")
	core, _, _ = strings.Cut(core, "+")
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 3 || (len(parts) == 2 && core != t) {
		return nil, false
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, false
		}
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		nums[i] = n
	}
	return nums, true
}

// ListUpstreamTags lists the tags of the upstream repository pullSpec.
func (s *Service) ListUpstreamTags(ctx context.Context, project, pullSpec string, o ImportOptions) ([]string, error) {
	if s.importer == nil {
		return nil, fmt.Errorf("import %s: %w", pullSpec, ErrImportNeeded)
	}
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	repo, err := name.NewRepository(pullSpec, nameOpts...)
	if err != nil {
		return nil, &ImportError{Reason: "Invalid", Message: fmt.Sprintf("%q is not a repository: %v", pullSpec, err)}
	}
	opts, err := s.importer.Upstreams.Remote(ctx, project, repo.Tag("latest"), o.Insecure, o.CheckImportList)
	if err != nil {
		return nil, importFailure(err)
	}
	tags, err := remote.List(repo, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, importFailure(err)
	}
	return tags, nil
}
