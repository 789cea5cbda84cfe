package store

// migrations are applied in order, each once, inside a transaction; the
// version of the last one applied is recorded in schema_migrations. Never
// edit a migration that has shipped: append a new one.
//
// The DDL is written for SQLite; a PostgreSQL dialect supplies the same
// migrations with its own types (BIGSERIAL, BYTEA) and shares every query.
var sqliteMigrations = []string{
	// 1: the registry core.
	`
CREATE TABLE repositories (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL UNIQUE,
	project     TEXT    NOT NULL,
	-- counts tag changes: the generation of the next tag event
	tag_generation BIGINT NOT NULL DEFAULT 0,
	created_at  BIGINT  NOT NULL
);
CREATE INDEX repositories_project ON repositories (project, name);

-- Content known to the blob driver. A blob is visible in a repository only
-- through repository_blobs.
CREATE TABLE blobs (
	digest      TEXT    PRIMARY KEY,
	size        BIGINT  NOT NULL,
	created_at  BIGINT  NOT NULL
);

CREATE TABLE repository_blobs (
	repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	digest        TEXT   NOT NULL REFERENCES blobs (digest),
	created_at    BIGINT NOT NULL,
	PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

-- Manifests are content too: one row per digest, shared by repositories.
CREATE TABLE manifests (
	digest        TEXT   PRIMARY KEY,
	media_type    TEXT   NOT NULL,
	artifact_type TEXT   NOT NULL DEFAULT '',
	subject       TEXT   NOT NULL DEFAULT '',
	annotations   TEXT   NOT NULL DEFAULT '',
	size          BIGINT NOT NULL,
	payload       BLOB   NOT NULL,
	created_at    BIGINT NOT NULL
);
CREATE INDEX manifests_subject ON manifests (subject) WHERE subject <> '';

-- What a manifest needs to be complete: its config and layers (blobs) or
-- its children (manifests). Garbage collection marks through these rows.
CREATE TABLE manifest_references (
	manifest_digest TEXT    NOT NULL REFERENCES manifests (digest) ON DELETE CASCADE,
	reference       TEXT    NOT NULL,
	is_manifest     INTEGER NOT NULL,
	PRIMARY KEY (manifest_digest, reference)
);
CREATE INDEX manifest_references_reference ON manifest_references (reference);

CREATE TABLE repository_manifests (
	repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	digest        TEXT   NOT NULL REFERENCES manifests (digest),
	created_at    BIGINT NOT NULL,
	PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_manifests_digest ON repository_manifests (digest);

-- Tags are history: every change of a tag appends a row, newest last. A
-- NULL digest records a deletion. tag_heads indexes the newest live row of
-- each tag so that reads and listings cost one indexed lookup.
CREATE TABLE tag_events (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	repository_id BIGINT  NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	tag           TEXT    NOT NULL,
	digest        TEXT,
	generation    BIGINT  NOT NULL,
	created_at    BIGINT  NOT NULL
);
CREATE INDEX tag_events_tag ON tag_events (repository_id, tag, id);

CREATE TABLE tag_heads (
	repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	tag           TEXT   NOT NULL,
	digest        TEXT   NOT NULL,
	event_id      BIGINT NOT NULL,
	PRIMARY KEY (repository_id, tag)
);
CREATE INDEX tag_heads_digest ON tag_heads (repository_id, digest);

-- Upload sessions: any instance can continue one. hash_state is the
-- marshalled running sha256 after offset bytes.
CREATE TABLE uploads (
	id          TEXT   PRIMARY KEY,
	repository  TEXT   NOT NULL,
	size        BIGINT NOT NULL,
	hash_state  BLOB,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads (updated_at);

-- Every change appends here; seq is the API's resourceVersion.
CREATE TABLE events (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	kind        TEXT   NOT NULL,
	repository  TEXT   NOT NULL DEFAULT '',
	digest      TEXT   NOT NULL DEFAULT '',
	tag         TEXT   NOT NULL DEFAULT '',
	created_at  BIGINT NOT NULL
);
`,
	// 2: identity and access.
	`
-- Projects own repositories (<project>/<image>), roles and, later, quotas.
CREATE TABLE projects (
	name        TEXT   PRIMARY KEY,
	creator     TEXT   NOT NULL DEFAULT '',
	created_at  BIGINT NOT NULL
);

-- Users seen by an identity provider, and service accounts (named
-- system:serviceaccount:<project>:<name>).
CREATE TABLE users (
	name        TEXT   PRIMARY KEY,
	created_at  BIGINT NOT NULL
);

CREATE TABLE group_members (
	group_name  TEXT NOT NULL,
	user_name   TEXT NOT NULL,
	PRIMARY KEY (group_name, user_name)
);
CREATE INDEX group_members_user ON group_members (user_name);

-- Tokens are stored only as the SHA-256 of the secret.
CREATE TABLE tokens (
	id          TEXT   PRIMARY KEY,
	secret_hash BLOB   NOT NULL UNIQUE,
	user_name   TEXT   NOT NULL,
	description TEXT   NOT NULL DEFAULT '',
	created_at  BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	revoked_at  BIGINT
);
CREATE INDEX tokens_user ON tokens (user_name);

-- A role granted to a user or group in a project, or cluster-wide when
-- project is ''.
CREATE TABLE role_bindings (
	project      TEXT NOT NULL,
	role         TEXT NOT NULL,
	subject_kind TEXT NOT NULL CHECK (subject_kind IN ('User', 'Group')),
	subject      TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (project, role, subject_kind, subject)
);
`,
	// 3: local passwords (the bootstrap administrator) and settings.
	`
-- A bcrypt hash for users Berth itself authenticates (the bootstrap
-- admin); '' for users of an external identity provider and service accounts.
ALTER TABLE users ADD COLUMN password_hash TEXT NOT NULL DEFAULT '';

-- Cluster-wide settings every instance must agree on.
CREATE TABLE settings (
	name        TEXT   PRIMARY KEY,
	value       TEXT   NOT NULL,
	updated_at  BIGINT NOT NULL
);
`,
	// 4: API objects (the management API's stored kinds) and their events.
	`
-- An object of the management API, stored as JSON. The columns hold what
-- the server owns (uid, resourceVersion, creation time, labels for
-- selectors); the body holds the rest of the object.
CREATE TABLE objects (
	api_group        TEXT   NOT NULL, -- '' for the core group
	resource         TEXT   NOT NULL, -- the plural, e.g. configmaps
	namespace        TEXT   NOT NULL, -- '' for cluster-scoped kinds
	name             TEXT   NOT NULL,
	uid              TEXT   NOT NULL,
	resource_version BIGINT NOT NULL, -- the events.seq of its last change
	created_at       BIGINT NOT NULL,
	labels           TEXT   NOT NULL DEFAULT '{}',
	body             BLOB   NOT NULL,
	PRIMARY KEY (api_group, resource, namespace, name)
);

-- A change to an API object is an event too: its type and the object as it
-- was then, so a watch can replay from a resourceVersion.
ALTER TABLE events ADD COLUMN api_resource TEXT NOT NULL DEFAULT ''; -- group/resource
ALTER TABLE events ADD COLUMN namespace TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN object BLOB;
CREATE INDEX events_api_resource ON events (api_resource, seq);
-- A repository's changes, for the resourceVersion and watch of its
-- ImageStream.
CREATE INDEX events_repository ON events (repository, seq) WHERE repository <> '';
`,
	// 5: role bindings have names of their own (kubectl create rolebinding
	// NAME --clusterrole=ROLE); existing ones are named after their role.
	`
CREATE TABLE role_bindings_named (
	project      TEXT NOT NULL,
	name         TEXT NOT NULL,
	role         TEXT NOT NULL,
	subject_kind TEXT NOT NULL CHECK (subject_kind IN ('User', 'Group')),
	subject      TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (project, name, subject_kind, subject)
);
INSERT INTO role_bindings_named (project, name, role, subject_kind, subject, created_at)
	SELECT project, role, role, subject_kind, subject, created_at FROM role_bindings;
DROP TABLE role_bindings;
ALTER TABLE role_bindings_named RENAME TO role_bindings;
CREATE INDEX role_bindings_subject ON role_bindings (subject_kind, subject);
`,
	// 6: who opened an upload session and in which project, so that open
	// sessions can be capped per user and per project; and the epoch of
	// the driver its last bytes were written in (they may be unsynced).
	`
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN project TEXT NOT NULL DEFAULT '';
UPDATE uploads SET project = substr(repository, 1, instr(repository, '/') - 1);
CREATE INDEX uploads_owner ON uploads (owner);
CREATE INDEX uploads_project ON uploads (project);
`,
	// 7: the berth serve processes working from this store, each renewing
	// its row (a heartbeat); the management API shows them as pods.
	`
CREATE TABLE instances (
	id           TEXT    PRIMARY KEY, -- a UUID chosen at start
	name         TEXT    NOT NULL,    -- its pod name, image-registry-<hash>-<suffix>
	host         TEXT    NOT NULL,
	version      TEXT    NOT NULL,
	listen       TEXT    NOT NULL,
	ready        INTEGER NOT NULL,
	restarts     INTEGER NOT NULL DEFAULT 0,
	started_at   BIGINT  NOT NULL,
	heartbeat_at BIGINT  NOT NULL,
	stopping_at  BIGINT  NOT NULL DEFAULT 0 -- when its graceful shutdown began; 0 while serving
);
CREATE INDEX instances_heartbeat ON instances (heartbeat_at);
`,
	// 8: the storage a blob's bytes and an upload session's bytes are in
	// (spec.storage of the registry Config: "pvc:<claim>", "emptydir:<id>").
	// A blob is present only in the storage it is recorded in, so that
	// after a storage switch a client is not told that a blob exists whose
	// bytes stayed behind. Rows written before were in the data
	// directory's blob store, the default volume claim's (a memory-storage
	// process keeps no rows across restarts).
	`
ALTER TABLE blobs ADD COLUMN storage TEXT NOT NULL DEFAULT 'pvc:image-registry-storage';
ALTER TABLE uploads ADD COLUMN storage TEXT NOT NULL DEFAULT 'pvc:image-registry-storage';
`,
	// 9: a blob's bytes may be in several storages (pushed again after a
	// switch, or committed by a session that began before one): presence
	// is a row per storage, so a commit in one storage never takes a blob
	// away from another. blobs.storage stays as the first storage.
	`
CREATE TABLE blob_storages (
	digest  TEXT NOT NULL REFERENCES blobs (digest),
	storage TEXT NOT NULL,
	PRIMARY KEY (digest, storage)
);
INSERT INTO blob_storages (digest, storage) SELECT digest, storage FROM blobs;
`,
	// 10: what a blob driver keeps about an upload session between
	// requests (an S3 multipart upload's ID and parts), recorded in the
	// same step as the size it goes with.
	`
ALTER TABLE uploads ADD COLUMN driver_state BLOB;
`,
	// 11: the storages the operator put in effect, with what opens them
	// again (their spec.storage section, never credentials), so that
	// blobs left in an older storage stay readable from any instance.
	// Every storage a blob is recorded in is recorded here too.
	`
CREATE TABLE storages (
	id          TEXT PRIMARY KEY,
	config      TEXT NOT NULL,
	recorded_at INTEGER NOT NULL
);
-- Storages that hold blobs from before they were recorded: known by ID
-- alone (a volume opens from its ID; another says how to record it).
INSERT INTO storages (id, config, recorded_at) SELECT DISTINCT storage, '', 0 FROM blob_storages;
-- A storage's blobs, in digest order: what a migration pages through,
-- and whether an older storage still holds any.
CREATE INDEX blob_storages_by_storage ON blob_storages (storage, digest);
`,
	// 12: tags that users write. Each history entry says who made it and
	// why (a push, a tag from another image, an alias following its
	// source, a rollback, an import); an alias tag follows its source tag
	// (of any repository) in the same transaction; every event says who
	// caused it (webhooks' actor). Webhook deliveries are queued in the
	// store.
	`
ALTER TABLE tag_events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
ALTER TABLE tag_events ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
CREATE TABLE tag_aliases (
	repository_id        BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	tag                  TEXT   NOT NULL,
	source_repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	source_tag           TEXT   NOT NULL,
	PRIMARY KEY (repository_id, tag)
);
CREATE INDEX tag_aliases_source ON tag_aliases (source_repository_id, source_tag);
-- Why a tag moved, on its TagUpdated event (the tag history's reason).
ALTER TABLE events ADD COLUMN reason TEXT NOT NULL DEFAULT '';

-- Imports from other registries. A tag event of an import names the
-- upstream image it came from (pull spec by digest); a repository's
-- imported manifests say where they and their blobs can be fetched
-- (pull-through); a tag's last failed import is its ImportSuccess
-- condition.
ALTER TABLE tag_events ADD COLUMN source TEXT NOT NULL DEFAULT '';
-- The size a manifest's descriptor declares for each reference (-1 for
-- rows from before): what a pulled-through blob's HEAD answers.
ALTER TABLE manifest_references ADD COLUMN size BIGINT NOT NULL DEFAULT -1;
CREATE TABLE remote_manifests (
	repository_id BIGINT  NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	digest        TEXT    NOT NULL,
	source        TEXT    NOT NULL,
	insecure      INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (repository_id, digest)
);
CREATE TABLE tag_conditions (
	repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	tag           TEXT   NOT NULL,
	type          TEXT   NOT NULL,
	status        TEXT   NOT NULL,
	reason        TEXT   NOT NULL,
	message       TEXT   NOT NULL,
	generation    BIGINT NOT NULL,
	changed_at    BIGINT NOT NULL,
	PRIMARY KEY (repository_id, tag, type)
);

-- Webhooks: the dispatcher reads the event log from the cursor on and
-- queues a delivery per matching webhook in the same transaction that
-- moves the cursor, so an event is queued exactly once whatever crashes.
CREATE TABLE webhook_cursor (
	id  INTEGER PRIMARY KEY CHECK (id = 1),
	seq BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook_uid TEXT    NOT NULL,
	event_id    TEXT    NOT NULL,
	event_type  TEXT    NOT NULL,
	subject     TEXT    NOT NULL,
	payload     BLOB    NOT NULL,
	state       TEXT    NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_at     BIGINT  NOT NULL,
	created_at  BIGINT  NOT NULL,
	updated_at  BIGINT  NOT NULL,
	last_status INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'Queued';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_uid, updated_at);
`,
	// 13: the event log in commit order. The newest sequence number is a
	// row moved inside each writing transaction (see nextSeq), where it was
	// the table's AUTOINCREMENT; beside it, the counters the caches of
	// instances sharing a store go by (generations.go).
	`
CREATE TABLE sequences (
	name  TEXT   PRIMARY KEY,
	value BIGINT NOT NULL
);
INSERT INTO sequences (name, value) VALUES ('events', MAX(
	COALESCE((SELECT MAX(seq) FROM events), 0),
	COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)));
-- What the caches of instances sharing a store go by (SQLite, one
-- process's, keeps them in memory).
INSERT INTO sequences (name, value) VALUES ('access', 0), ('tags', 0), ('content', 0), ('moves', 0);
-- An upload session's writer lease, where instances share the store (one
-- process keeps its leases in memory).
ALTER TABLE uploads ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN lease_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
-- Leases of background jobs (webhook delivery, scheduled import, the
-- janitor): the instance that holds one runs the job. Times are the
-- database's clock.
CREATE TABLE job_leases (
	name        TEXT   PRIMARY KEY,
	holder      TEXT   NOT NULL,
	acquired_at BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL
);
-- Failed logins by user name or client address, where instances share
-- the store (one process counts them in memory).
CREATE TABLE login_failures (
	key          TEXT   PRIMARY KEY,
	failures     BIGINT NOT NULL,
	first_at     BIGINT NOT NULL,
	strikes      BIGINT NOT NULL,
	locked_until BIGINT NOT NULL
);
`,
	// 14: online garbage collection (gc.go). touched_at is when a blob or
	// manifest was last claimed (an upload about to write it, a link, a
	// push naming it): the grace period counts from there. deleting names
	// the collection that took a blob whose bytes it is removing (0: none),
	// since deleting_since; nothing links or claims such a blob until its
	// row is gone, and only that collection deletes its bytes.
	`
ALTER TABLE blobs ADD COLUMN touched_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN deleting BIGINT NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN deleting_since BIGINT NOT NULL DEFAULT 0;
UPDATE blobs SET touched_at = created_at;
CREATE INDEX blobs_deleting ON blobs (deleting) WHERE deleting <> 0;
ALTER TABLE manifests ADD COLUMN touched_at BIGINT NOT NULL DEFAULT 0;
UPDATE manifests SET touched_at = created_at;
-- Tag history keeps the images it names: the collector asks by digest.
CREATE INDEX tag_events_digest ON tag_events (digest) WHERE digest IS NOT NULL;
`,
	// 15: what each project holds, for its quotas (quota.go): a row per
	// distinct blob or manifest its repositories link, with the number of
	// links. Triggers keep it, so every write that links or unlinks does,
	// whatever its path; a project's storage is a sum over its rows.
	`
CREATE TABLE project_contents (
	project  TEXT    NOT NULL,
	manifest INTEGER NOT NULL,
	digest   TEXT    NOT NULL,
	size     BIGINT  NOT NULL,
	links    BIGINT  NOT NULL,
	PRIMARY KEY (project, manifest, digest)
) WITHOUT ROWID;
CREATE TRIGGER repository_blobs_counted AFTER INSERT ON repository_blobs BEGIN
	INSERT INTO project_contents (project, manifest, digest, size, links)
	SELECT r.project, 0, NEW.digest, b.size, 1 FROM repositories r, blobs b WHERE r.id = NEW.repository_id AND b.digest = NEW.digest
	ON CONFLICT (project, manifest, digest) DO UPDATE SET links = links + 1;
END;
CREATE TRIGGER repository_manifests_counted AFTER INSERT ON repository_manifests BEGIN
	INSERT INTO project_contents (project, manifest, digest, size, links)
	SELECT r.project, 1, NEW.digest, m.size, 1 FROM repositories r, manifests m WHERE r.id = NEW.repository_id AND m.digest = NEW.digest
	ON CONFLICT (project, manifest, digest) DO UPDATE SET links = links + 1;
END;
CREATE TRIGGER repository_blobs_uncounted AFTER DELETE ON repository_blobs BEGIN
	UPDATE project_contents SET links = links - 1
	WHERE project = (SELECT project FROM repositories WHERE id = OLD.repository_id) AND manifest = 0 AND digest = OLD.digest;
	DELETE FROM project_contents
	WHERE project = (SELECT project FROM repositories WHERE id = OLD.repository_id) AND manifest = 0 AND digest = OLD.digest AND links <= 0;
END;
CREATE TRIGGER repository_manifests_uncounted AFTER DELETE ON repository_manifests BEGIN
	UPDATE project_contents SET links = links - 1
	WHERE project = (SELECT project FROM repositories WHERE id = OLD.repository_id) AND manifest = 1 AND digest = OLD.digest;
	DELETE FROM project_contents
	WHERE project = (SELECT project FROM repositories WHERE id = OLD.repository_id) AND manifest = 1 AND digest = OLD.digest AND links <= 0;
END;
-- Counted after the triggers exist: creating them waits for writes under
-- way and holds new ones until the migration commits, so no link made
-- meanwhile escapes both the count and the triggers.
INSERT INTO project_contents (project, manifest, digest, size, links)
SELECT r.project, 0, rb.digest, b.size, COUNT(*) FROM repository_blobs rb
JOIN repositories r ON r.id = rb.repository_id JOIN blobs b ON b.digest = rb.digest
GROUP BY r.project, rb.digest, b.size;
INSERT INTO project_contents (project, manifest, digest, size, links)
SELECT r.project, 1, rm.digest, m.size, COUNT(*) FROM repository_manifests rm
JOIN repositories r ON r.id = rm.repository_id JOIN manifests m ON m.digest = rm.digest
GROUP BY r.project, rm.digest, m.size;
`,
	// 16: what the console lists and the audit log (listing.go, audit.go).
	// Pull counts and the last pull of each image of a repository, added
	// to by the pull log's batches (never a write per pull); the audit
	// log, written in the transactions of the changes it records, kept
	// for its own retention (the event log is trimmed for watches); and
	// project_contents by digest, for what projects share.
	`
CREATE TABLE image_pulls (
	repository_id  BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	digest         TEXT   NOT NULL,
	pulls          BIGINT NOT NULL,
	last_pulled_at BIGINT NOT NULL,
	PRIMARY KEY (repository_id, digest)
);
CREATE TABLE audit_log (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	at       BIGINT NOT NULL,
	actor    TEXT   NOT NULL,
	action   TEXT   NOT NULL,
	project  TEXT   NOT NULL,
	resource TEXT   NOT NULL,
	name     TEXT   NOT NULL,
	digest   TEXT   NOT NULL DEFAULT '',
	detail   TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_project ON audit_log (project, at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE INDEX project_contents_digest ON project_contents (digest, manifest, project);
`,
	// 17: each manifest's image size (listing.go's imageSizeOf), stored
	// when the manifest is, so that tags sort by size without computing
	// it for every tag.
	`
ALTER TABLE manifests ADD COLUMN image_size BIGINT NOT NULL DEFAULT -1;
UPDATE manifests SET image_size = manifests.size + COALESCE((
	SELECT SUM(CASE WHEN mr.is_manifest = 1 THEN COALESCE((
		SELECT c.size + COALESCE((SELECT SUM(CASE WHEN cr.size >= 0 THEN cr.size ELSE COALESCE((SELECT b.size FROM blobs b WHERE b.digest = cr.reference), 0) END)
			FROM manifest_references cr WHERE cr.manifest_digest = c.digest AND cr.is_manifest = 0), 0)
		FROM manifests c WHERE c.digest = mr.reference), CASE WHEN mr.size >= 0 THEN mr.size ELSE 0 END)
	ELSE CASE WHEN mr.size >= 0 THEN mr.size ELSE COALESCE((SELECT b.size FROM blobs b WHERE b.digest = mr.reference), 0) END END)
	FROM manifest_references mr WHERE mr.manifest_digest = manifests.digest), 0);
`,
}
