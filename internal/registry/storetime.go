package registry

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/store"
)

// timedMetadata adds the time of each metadata store call to its
// request's debug line (reqlog). Below debug level a call costs one
// context lookup more.
type timedMetadata struct{ Metadata }

func (t timedMetadata) BlobSize(ctx context.Context, storage, repo string, dgst digest.Digest) (int64, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.BlobSize(ctx, storage, repo, dgst)
}

func (t timedMetadata) MountBlob(ctx context.Context, storage, repo, from string, dgst digest.Digest) (bool, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.MountBlob(ctx, storage, repo, from, dgst)
}

func (t timedMetadata) LinkBlob(ctx context.Context, storage, repo string, dgst digest.Digest, size int64) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.LinkBlob(ctx, storage, repo, dgst, size)
}

func (t timedMetadata) UnlinkBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.UnlinkBlob(ctx, repo, dgst)
}

func (t timedMetadata) CreateUpload(ctx context.Context, u store.Upload, limits store.UploadLimits) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.CreateUpload(ctx, u, limits)
}

func (t timedMetadata) Upload(ctx context.Context, repo, id string) (store.Upload, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.Upload(ctx, repo, id)
}

func (t timedMetadata) AdvanceUpload(ctx context.Context, u store.Upload, from int64) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.AdvanceUpload(ctx, u, from)
}

func (t timedMetadata) CommitUpload(ctx context.Context, uploadID, repo string, dgst digest.Digest, size int64) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.CommitUpload(ctx, uploadID, repo, dgst, size)
}

func (t timedMetadata) DeleteUpload(ctx context.Context, id string) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.DeleteUpload(ctx, id)
}

func (t timedMetadata) PutManifest(ctx context.Context, storage, repo string, m store.Manifest, tags []string) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.PutManifest(ctx, storage, repo, m, tags)
}

func (t timedMetadata) Manifest(ctx context.Context, repo, reference string) (store.Manifest, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.Manifest(ctx, repo, reference)
}

func (t timedMetadata) DeleteManifest(ctx context.Context, repo string, dgst digest.Digest) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.DeleteManifest(ctx, repo, dgst)
}

func (t timedMetadata) DeleteTag(ctx context.Context, repo, tag string) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.DeleteTag(ctx, repo, tag)
}

func (t timedMetadata) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.Tags(ctx, repo, last, n)
}

func (t timedMetadata) Repositories(ctx context.Context, last string, n int) ([]string, bool, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.Repositories(ctx, last, n)
}

func (t timedMetadata) Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType, last string, n int) ([]store.Descriptor, bool, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Metadata.Referrers(ctx, repo, dgst, artifactType, last, n)
}

// timedProjects is timedMetadata for what access control reads.
type timedProjects struct{ Projects }

func (t timedProjects) Project(ctx context.Context, name string) (store.Project, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Projects.Project(ctx, name)
}

func (t timedProjects) CreateProject(ctx context.Context, p store.Project) error {
	defer reqlog.StartStore(ctx).Stop()
	return t.Projects.CreateProject(ctx, p)
}

func (t timedProjects) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Projects.RepositoryExists(ctx, repo)
}

func (t timedProjects) ProjectsBoundTo(ctx context.Context, user string, groups []string) ([]string, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Projects.ProjectsBoundTo(ctx, user, groups)
}

func (t timedProjects) RepositoriesIn(ctx context.Context, projects []string, last string, n int) ([]string, bool, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Projects.RepositoriesIn(ctx, projects, last, n)
}

func (t timedProjects) RepositoriesWithBlob(ctx context.Context, dgst digest.Digest, n int) ([]string, error) {
	defer reqlog.StartStore(ctx).Stop()
	return t.Projects.RepositoriesWithBlob(ctx, dgst, n)
}
