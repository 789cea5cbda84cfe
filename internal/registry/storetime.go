package registry

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/store"
)

// timedMetadata adds the time of each metadata store call to its
// request's debug line (reqlog) and, when the registry was given one, to
// the metrics by the call's name. Below debug level and without metrics
// a call costs one context lookup and a clock reading more.
type timedMetadata struct {
	Metadata
	observe func(call string, d time.Duration)
}

// storeCall is one metadata store call being timed.
type storeCall struct {
	log     reqlog.StoreTimer
	observe func(call string, d time.Duration)
	name    string
	start   time.Time
}

func startCall(ctx context.Context, observe func(string, time.Duration), name string) storeCall {
	c := storeCall{log: reqlog.StartStore(ctx), observe: observe, name: name}
	if observe != nil {
		c.start = time.Now()
	}
	return c
}

func (c storeCall) stop() {
	c.log.Stop()
	if c.observe != nil {
		c.observe(c.name, time.Since(c.start))
	}
}

func (t timedMetadata) start(ctx context.Context, name string) storeCall {
	return startCall(ctx, t.observe, name)
}

func (t timedMetadata) LocateBlob(ctx context.Context, in store.Storages, repo string, dgst digest.Digest) (store.BlobLocation, error) {
	defer t.start(ctx, "LocateBlob").stop()
	return t.Metadata.LocateBlob(ctx, in, repo, dgst)
}

func (t timedMetadata) MountBlob(ctx context.Context, in store.Storages, repo, from string, dgst digest.Digest) (bool, error) {
	defer t.start(ctx, "MountBlob").stop()
	return t.Metadata.MountBlob(ctx, in, repo, from, dgst)
}

func (t timedMetadata) ClaimBlob(ctx context.Context, storage string, dgst digest.Digest, size int64) (store.BlobClaim, error) {
	defer t.start(ctx, "ClaimBlob").stop()
	return t.Metadata.ClaimBlob(ctx, storage, dgst, size)
}

func (t timedMetadata) LinkClaimed(ctx context.Context, storage, repo string, c store.BlobClaim) error {
	defer t.start(ctx, "LinkClaimed").stop()
	return t.Metadata.LinkClaimed(ctx, storage, repo, c)
}

func (t timedMetadata) UnlinkBlob(ctx context.Context, repo string, dgst digest.Digest) error {
	defer t.start(ctx, "UnlinkBlob").stop()
	return t.Metadata.UnlinkBlob(ctx, repo, dgst)
}

func (t timedMetadata) CreateUpload(ctx context.Context, u store.Upload, limits store.UploadLimits) error {
	defer t.start(ctx, "CreateUpload").stop()
	return t.Metadata.CreateUpload(ctx, u, limits)
}

func (t timedMetadata) Upload(ctx context.Context, repo, id string) (store.Upload, error) {
	defer t.start(ctx, "Upload").stop()
	return t.Metadata.Upload(ctx, repo, id)
}

func (t timedMetadata) AdvanceUpload(ctx context.Context, u store.Upload, from int64, release bool) error {
	defer t.start(ctx, "AdvanceUpload").stop()
	return t.Metadata.AdvanceUpload(ctx, u, from, release)
}

func (t timedMetadata) AcquireUpload(ctx context.Context, repo, id, holder string, until time.Time) (store.Upload, error) {
	defer t.start(ctx, "AcquireUpload").stop()
	return t.Metadata.AcquireUpload(ctx, repo, id, holder, until)
}

func (t timedMetadata) RenewUpload(ctx context.Context, id, holder string, until time.Time) error {
	defer t.start(ctx, "RenewUpload").stop()
	return t.Metadata.RenewUpload(ctx, id, holder, until)
}

func (t timedMetadata) ReleaseUpload(ctx context.Context, id, holder string) error {
	defer t.start(ctx, "ReleaseUpload").stop()
	return t.Metadata.ReleaseUpload(ctx, id, holder)
}

func (t timedMetadata) CommitUpload(ctx context.Context, uploadID, repo string, c store.BlobClaim) error {
	defer t.start(ctx, "CommitUpload").stop()
	return t.Metadata.CommitUpload(ctx, uploadID, repo, c)
}

func (t timedMetadata) DeleteUpload(ctx context.Context, id string) error {
	defer t.start(ctx, "DeleteUpload").stop()
	return t.Metadata.DeleteUpload(ctx, id)
}

func (t timedMetadata) PutManifest(ctx context.Context, in store.Storages, repo string, m store.Manifest, tags []string) error {
	defer t.start(ctx, "PutManifest").stop()
	return t.Metadata.PutManifest(ctx, in, repo, m, tags)
}

func (t timedMetadata) Manifest(ctx context.Context, repo, reference string) (store.Manifest, error) {
	defer t.start(ctx, "Manifest").stop()
	return t.Metadata.Manifest(ctx, repo, reference)
}

func (t timedMetadata) DeleteManifest(ctx context.Context, repo string, dgst digest.Digest) error {
	defer t.start(ctx, "DeleteManifest").stop()
	return t.Metadata.DeleteManifest(ctx, repo, dgst)
}

func (t timedMetadata) DeleteTag(ctx context.Context, repo, tag string) error {
	defer t.start(ctx, "DeleteTag").stop()
	return t.Metadata.DeleteTag(ctx, repo, tag)
}

func (t timedMetadata) Tags(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	defer t.start(ctx, "Tags").stop()
	return t.Metadata.Tags(ctx, repo, last, n)
}

func (t timedMetadata) Repositories(ctx context.Context, last string, n int) ([]string, bool, error) {
	defer t.start(ctx, "Repositories").stop()
	return t.Metadata.Repositories(ctx, last, n)
}

func (t timedMetadata) Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType, last string, n int) ([]store.Descriptor, bool, error) {
	defer t.start(ctx, "Referrers").stop()
	return t.Metadata.Referrers(ctx, repo, dgst, artifactType, last, n)
}

// timedProjects is timedMetadata for what access control reads.
type timedProjects struct {
	Projects
	observe func(call string, d time.Duration)
}

func (t timedProjects) start(ctx context.Context, name string) storeCall {
	return startCall(ctx, t.observe, name)
}

func (t timedProjects) Project(ctx context.Context, name string) (store.Project, error) {
	defer t.start(ctx, "Project").stop()
	return t.Projects.Project(ctx, name)
}

func (t timedProjects) CreateProject(ctx context.Context, p store.Project) error {
	defer t.start(ctx, "CreateProject").stop()
	return t.Projects.CreateProject(ctx, p)
}

func (t timedProjects) RepositoryExists(ctx context.Context, repo string) (bool, error) {
	defer t.start(ctx, "RepositoryExists").stop()
	return t.Projects.RepositoryExists(ctx, repo)
}

func (t timedProjects) ProjectsBoundTo(ctx context.Context, user string, groups []string) ([]string, error) {
	defer t.start(ctx, "ProjectsBoundTo").stop()
	return t.Projects.ProjectsBoundTo(ctx, user, groups)
}

func (t timedProjects) RepositoriesIn(ctx context.Context, projects []string, last string, n int) ([]string, bool, error) {
	defer t.start(ctx, "RepositoriesIn").stop()
	return t.Projects.RepositoriesIn(ctx, projects, last, n)
}

func (t timedProjects) RepositoriesWithBlob(ctx context.Context, dgst digest.Digest, n int) ([]string, error) {
	defer t.start(ctx, "RepositoriesWithBlob").stop()
	return t.Projects.RepositoriesWithBlob(ctx, dgst, n)
}
