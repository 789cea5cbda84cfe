package apiserver

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/store"
)

// The API server's needs of the metadata store, by role: it depends on
// these, not on the store's type, so that what it asks is visible here
// and another implementation (a service in front of the store) can stand
// in for one role.

// ObjectStore keeps the stored kinds (ConfigMaps, Secrets, the registry
// Config, …) and their change log.
type ObjectStore interface {
	GetObject(ctx context.Context, k store.ObjectKey) (store.Object, error)
	ListObjects(ctx context.Context, q store.ObjectQuery) ([]store.Object, bool, int64, error)
	ProjectUsage(ctx context.Context, project string) (store.Usage, error)
	CreateObject(ctx context.Context, o store.Object) (store.Object, error)
	UpdateObject(ctx context.Context, o store.Object, expect int64) (store.Object, error)
	DeleteObject(ctx context.Context, k store.ObjectKey, expect int64, uid string) (store.Object, error)
	ObjectEventsIn(ctx context.Context, apiResource, namespace string, after int64, limit int) ([]store.ObjectEvent, int64, bool, error)
	LatestResourceVersion(ctx context.Context) (int64, error)
	Changed() <-chan struct{}
}

// IdentityStore knows users, their tokens and groups, and when access
// changed (a watch re-checks its caller then).
type IdentityStore interface {
	User(ctx context.Context, name string) (store.User, error)
	UsersWithPrefix(ctx context.Context, prefix string) ([]store.User, error)
	TokensOf(ctx context.Context, user string) ([]store.Token, error)
	RevokeToken(ctx context.Context, id string) error
	GroupsOf(ctx context.Context, user string) ([]string, error)
	AccessGeneration() int64
	AccessChanged() <-chan struct{}
}

// ProjectStore keeps projects.
type ProjectStore interface {
	Project(ctx context.Context, name string) (store.Project, error)
	Projects(ctx context.Context) ([]store.Project, error)
	CreateProject(ctx context.Context, p store.Project) error
	ProjectsBoundTo(ctx context.Context, user string, groups []string) ([]string, error)
	DeleteProjectAndRepositories(ctx context.Context, name string) (store.ProjectDeletion, error)
}

// ContentStore is the registry's content as the API shows it: repositories
// (image streams), their tags and history, manifests (images).
type ContentStore interface {
	RepositoriesOfProject(ctx context.Context, project string) ([]store.Repository, error)
	RepositoryByName(ctx context.Context, name string) (store.Repository, error)
	StreamTags(ctx context.Context, repo string) ([]store.StreamTag, error)
	RepositoryEvents(ctx context.Context, project string, after int64, limit int) ([]store.RepositoryEvent, error)
	StoredManifestByDigest(ctx context.Context, dgst digest.Digest) (store.StoredManifest, error)
	ManifestsPage(ctx context.Context, after digest.Digest, n int) ([]store.StoredManifest, bool, error)
	DeleteTag(ctx context.Context, repo, tag string) error
	TagImage(ctx context.Context, repo, tag, from string, dgst digest.Digest, why store.TagReason) error
	AliasTag(ctx context.Context, repo, tag, sourceRepo, sourceTag string) error
	TagHistory(ctx context.Context, repo, tag string) ([]store.TagEvent, error)
	TouchRepository(ctx context.Context, repo string) error
	DeleteRepository(ctx context.Context, repo string) (store.ProjectDeletion, error)
	Manifest(ctx context.Context, repo, reference string) (store.Manifest, error)
	RecordImport(ctx context.Context, repo, tag string, im store.Imported) error
	SetTagCondition(ctx context.Context, repo, tag string, c store.TagCondition) error
	BlobSources(ctx context.Context, repo string, dgst digest.Digest) ([]store.RemoteSource, error)
	// What the paged lists read: sorted, filtered and counted in the store.
	ListTags(ctx context.Context, q store.TagQuery) (store.TagPage, error)
	RepositorySummaries(ctx context.Context, project string) ([]store.RepositorySummary, error)
	ProjectSummaries(ctx context.Context, among []string) (map[string]store.ProjectSummary, error)
}

// AuditStore reads the audit log.
type AuditStore interface {
	AuditLog(ctx context.Context, q store.AuditQuery) (store.AuditPage, error)
}

// InstanceStore knows the registry's instances (pods).
type InstanceStore interface {
	Instances(ctx context.Context) ([]store.Instance, error)
}

// Store is all the API server asks of the metadata store.
type Store interface {
	ObjectStore
	IdentityStore
	ProjectStore
	ContentStore
	InstanceStore
	AuditStore
}
