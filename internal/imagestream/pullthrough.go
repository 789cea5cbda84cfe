package imagestream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/upstream"
)

// Pull-through (registry.Upstreams): the blobs of imported images are
// fetched from where their manifests came from, with the project's
// credentials and the cluster's trust.

// Remotes say where imported content came from.
type Remotes interface {
	BlobSources(ctx context.Context, repo string, dgst digest.Digest) ([]store.RemoteSource, error)
}

// BlobUpstream is the size the imported manifests of repo declare for
// blob dgst; errdefs.ErrNotFound when no imported manifest names it.
func (s *Service) BlobUpstream(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	if s.importer == nil {
		return 0, fmt.Errorf("blob %s of %s: %w", dgst, repo, errdefs.ErrNotFound)
	}
	srcs, err := s.remotes.BlobSources(ctx, repo, dgst)
	if err != nil {
		return 0, err
	}
	for _, src := range srcs {
		if src.Size >= 0 {
			return src.Size, nil
		}
	}
	return 0, fmt.Errorf("blob %s of %s has no upstream: %w", dgst, repo, errdefs.ErrNotFound)
}

// OpenUpstreamBlob opens blob dgst of repo at the first of its upstreams
// that serves it. When none does and one was unavailable, the error
// wraps registry.ErrUpstreamUnavailable; when all say they do not have
// it, errdefs.ErrNotFound.
func (s *Service) OpenUpstreamBlob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, error) {
	if s.importer == nil {
		return nil, fmt.Errorf("blob %s of %s: %w", dgst, repo, errdefs.ErrNotFound)
	}
	srcs, err := s.remotes.BlobSources(ctx, repo, dgst)
	if err != nil {
		return nil, err
	}
	project, _, _ := strings.Cut(repo, "/")
	pull := s.importer.PullUpstreams()
	var failures []error
	unavailable := false
	for _, src := range srcs {
		var opts []name.Option
		if src.Insecure {
			opts = append(opts, name.Insecure)
		}
		up, err := name.NewRepository(src.Source, opts...)
		if err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", src.Source, err))
			continue
		}
		ref := up.Digest(dgst.String())
		ropts, err := pull.Remote(ctx, project, ref, src.Insecure, false)
		if err == nil {
			var layer interface{ Compressed() (io.ReadCloser, error) }
			if layer, err = remote.Layer(ref, append(ropts, remote.WithContext(ctx))...); err == nil {
				var rc io.ReadCloser
				if rc, err = layer.Compressed(); err == nil {
					return rc, nil
				}
			}
		}
		unavailable = unavailable || upstream.Unavailable(err)
		_, msg := upstream.Classify(err)
		failures = append(failures, errors.New(msg))
	}
	joined := errors.Join(failures...)
	switch {
	case unavailable:
		return nil, fmt.Errorf("%w: %w", registry.ErrUpstreamUnavailable, joined)
	case len(failures) == 0:
		return nil, fmt.Errorf("blob %s of %s has no upstream: %w", dgst, repo, errdefs.ErrNotFound)
	}
	return nil, fmt.Errorf("%w: %w", joined, errdefs.ErrNotFound)
}
