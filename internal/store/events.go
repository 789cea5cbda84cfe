package store

// EventKind names what an event of the registry's log records. The kinds
// say themselves what they change, so that the caches, the access
// generation and the image-stream watch read one definition instead of
// each keeping its own list of strings.
type EventKind string

// The registry's event kinds (the log's kind column).
const (
	EventProjectCreated    EventKind = "ProjectCreated"
	EventProjectDeleted    EventKind = "ProjectDeleted"
	EventUserCreated       EventKind = "UserCreated"
	EventUserDeleted       EventKind = "UserDeleted"
	EventRepositoryCreated EventKind = "RepositoryCreated"
	EventRepositoryDeleted EventKind = "RepositoryDeleted"
	EventBlobLinked        EventKind = "BlobLinked"
	EventBlobUnlinked      EventKind = "BlobUnlinked"
	EventManifestPushed    EventKind = "ManifestPushed"
	EventManifestDeleted   EventKind = "ManifestDeleted"
	EventTagUpdated        EventKind = "TagUpdated"
	EventTagDeleted        EventKind = "TagDeleted"
	// EventStreamSpecChanged records a change of an image stream's spec
	// object (labels, annotations, spec tags) that moved no tag.
	EventStreamSpecChanged EventKind = "StreamSpecChanged"
	// EventImagePulled records that an image was pulled, at most once a
	// minute per repository and image (PullLog): for webhooks, not a
	// change of anything.
	EventImagePulled EventKind = "ImagePulled"
)

// Removes says that the event takes a blob or a manifest away from a
// repository: lookups by digest may answer differently after it. Every
// removal (a delete, garbage collection, pruning) appends one.
func (k EventKind) Removes() bool {
	switch k {
	case EventBlobUnlinked, EventManifestDeleted, EventRepositoryDeleted, EventProjectDeleted:
		return true
	}
	return false
}

// ChangesAccess says that the event changes who may do what.
func (k EventKind) ChangesAccess() bool {
	switch k {
	case EventProjectCreated, EventProjectDeleted, EventUserCreated, EventUserDeleted:
		return true
	}
	return false
}

// ChangesTags says that the event changes what a tag names.
func (k EventKind) ChangesTags() bool {
	return k == EventTagUpdated || k == EventTagDeleted
}

// ChangesStream says that the event changes a repository's ImageStream:
// the stream itself, its tags, or the images they name.
func (k EventKind) ChangesStream() bool {
	switch k {
	case EventRepositoryCreated, EventRepositoryDeleted, EventTagUpdated, EventTagDeleted, EventManifestPushed, EventManifestDeleted,
		EventStreamSpecChanged:
		return true
	}
	return false
}
