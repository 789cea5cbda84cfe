package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Lists that a user pages through (the console, scripts) are sorted,
// filtered and counted here, in SQL: a page of a project with thousands
// of tags reads one page of rows, and its order is the order of all of
// them, not of the page.

// TagSort is what a tag listing is sorted by.
type TagSort string

// The keys tags sort by. Ties go by stream and tag name.
const (
	TagsByName   TagSort = "name"       // stream, then tag
	TagsByPushed TagSort = "pushed"     // when the tag last moved
	TagsBySize   TagSort = "size"       // ImageSize of its image
	TagsByPulled TagSort = "lastPulled" // its image's last pull
	TagsByPulls  TagSort = "pulls"      // its image's pull count
)

// tagSortColumns are the SQL of each key.
var tagSortColumns = map[TagSort]string{
	TagsByName:   "r.name",
	TagsByPushed: "te.created_at",
	TagsBySize:   "m.image_size",
	TagsByPulled: "COALESCE(ip.last_pulled_at, 0)",
	TagsByPulls:  "COALESCE(ip.pulls, 0)",
}

// TagQuery selects and orders live tags.
type TagQuery struct {
	// Project is the project whose tags are listed, "" for all.
	Project string
	// Repository narrows the listing to one repository ("project/name").
	Repository string
	// Tag narrows it to one tag.
	Tag string
	// Search keeps the tags whose "project/stream:tag" contains it,
	// ignoring case.
	Search string
	Sort   TagSort // TagsByName when ""
	// Descending reverses the order of Sort (not of the ties).
	Descending    bool
	Offset, Limit int // Limit 0: all
}

// TagRow is a live tag and what the console shows of it.
type TagRow struct {
	Repository string
	Tag        string
	Digest     digest.Digest
	MediaType  string
	// ArtifactType is the manifest's artifact type, "" for an image.
	ArtifactType string
	// Size is ImageSize: the manifest, its config and layers, and for an
	// index each child's the same.
	Size       int64
	Pushed     time.Time // when the tag last moved
	PushedBy   string    // who moved it ("" for Berth itself)
	Reason     TagReason
	Generation int64
	// Source is where an imported image came from, "" for one pushed.
	Source string
	// AliasOf is the tag an alias follows ("project/stream:tag"), "" for
	// a tag that is not one.
	AliasOf    string
	LastPulled time.Time // zero when never pulled
	Pulls      int64
}

// TagPage is a page of tags with the number the query selects in all.
type TagPage struct {
	Rows  []TagRow
	Total int
}

// imageSizeOf is the SQL of the size of the image of the manifest row
// alias: its own bytes and those of what it references (declared sizes,
// or the blob's for rows from before sizes were recorded), an index's
// children counted whole. recordManifest stores it in image_size when it
// stores a manifest (and migration 17 for those from before), so that
// sorting tags by size reads a column instead of computing each.
func imageSizeOf(alias string) string {
	return alias + `.size + COALESCE((
	SELECT SUM(CASE WHEN mr.is_manifest = 1 THEN COALESCE((
		SELECT c.size + COALESCE((SELECT SUM(CASE WHEN cr.size >= 0 THEN cr.size ELSE COALESCE((SELECT b.size FROM blobs b WHERE b.digest = cr.reference), 0) END)
			FROM manifest_references cr WHERE cr.manifest_digest = c.digest AND cr.is_manifest = 0), 0)
		FROM manifests c WHERE c.digest = mr.reference), CASE WHEN mr.size >= 0 THEN mr.size ELSE 0 END)
	ELSE CASE WHEN mr.size >= 0 THEN mr.size ELSE COALESCE((SELECT b.size FROM blobs b WHERE b.digest = mr.reference), 0) END END)
	FROM manifest_references mr WHERE mr.manifest_digest = ` + alias + `.digest), 0)`
}

// recordImageSize stores the image size of manifest dgst, whose
// references are recorded, and again that of every index that names it:
// an index stored before its children (an import stores manifests in
// digest order; a sparse index may come first) counts them once they
// are here.
func recordImageSize(ctx context.Context, tx *sql.Tx, dgst digest.Digest) error {
	if _, err := tx.ExecContext(ctx, `UPDATE manifests SET image_size = `+imageSizeOf("manifests")+`
WHERE digest = ? OR digest IN (SELECT manifest_digest FROM manifest_references WHERE reference = ? AND is_manifest = 1)`,
		string(dgst), string(dgst)); err != nil {
		return fmt.Errorf("record the image size of %s: %w", dgst, err)
	}
	return nil
}

// ListTags reads a page of the live tags q selects, in its order, and how
// many it selects in all (one snapshot for both).
func (s *Store) ListTags(ctx context.Context, q TagQuery) (TagPage, error) {
	if q.Sort == "" {
		q.Sort = TagsByName
	}
	key, ok := tagSortColumns[q.Sort]
	if !ok {
		return TagPage{}, fmt.Errorf("sort tags by %q: no such key", q.Sort)
	}
	var where []string
	var args []any
	if q.Project != "" {
		where, args = append(where, "r.project = ?"), append(args, q.Project)
	}
	if q.Repository != "" {
		where, args = append(where, "r.name = ?"), append(args, q.Repository)
	}
	if q.Tag != "" {
		where, args = append(where, "h.tag = ?"), append(args, q.Tag)
	}
	if q.Search != "" {
		where, args = append(where, `LOWER(r.name || ':' || h.tag) LIKE ? ESCAPE '\'`), append(args, likeContaining(q.Search))
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	const from = ` FROM tag_heads h JOIN repositories r ON r.id = h.repository_id`
	tx, err := s.snapshot(ctx)
	if err != nil {
		return TagPage{}, err
	}
	defer tx.Rollback()
	var page TagPage
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*)`+from+cond, args...).Scan(&page.Total); err != nil {
		return TagPage{}, fmt.Errorf("count tags: %w", err)
	}
	dir := "ASC"
	if q.Descending {
		dir = "DESC"
	}
	order := key + " " + dir + ", r.name, h.tag"
	if q.Sort == TagsByName {
		order = "r.name " + dir + ", h.tag " + dir
	}
	limit := q.Limit
	if limit <= 0 {
		limit = math.MaxInt32
	}
	// Two steps: the page's keys in order, reading only what the sort
	// needs, then the page's rows whole. Reading every column of every
	// tag to sort them cost as much as reading the whole stream.
	keyJoin := map[TagSort]string{
		TagsByPushed: ` JOIN tag_events te ON te.id = h.event_id`,
		TagsBySize:   ` JOIN manifests m ON m.digest = h.digest`,
		TagsByPulled: ` LEFT JOIN image_pulls ip ON ip.repository_id = h.repository_id AND ip.digest = h.digest`,
		TagsByPulls:  ` LEFT JOIN image_pulls ip ON ip.repository_id = h.repository_id AND ip.digest = h.digest`,
	}[q.Sort]
	sortKey := key
	query := `
WITH page AS (
	SELECT h.repository_id AS repository_id, h.tag AS tag, ` + sortKey + ` AS sort_key` + from + keyJoin + cond + `
	ORDER BY ` + strings.Replace(order, key, "sort_key", 1) + ` LIMIT ? OFFSET ?)
SELECT r.name, h.tag, h.digest, m.media_type, m.artifact_type, m.image_size,
	te.created_at, te.actor, te.reason, te.generation, te.source,
	COALESCE((SELECT sr.name || ':' || a.source_tag FROM tag_aliases a JOIN repositories sr ON sr.id = a.source_repository_id
	          WHERE a.repository_id = r.id AND a.tag = h.tag), ''),
	COALESCE(ip.last_pulled_at, 0), COALESCE(ip.pulls, 0)
FROM page JOIN tag_heads h ON h.repository_id = page.repository_id AND h.tag = page.tag
JOIN repositories r ON r.id = h.repository_id
JOIN tag_events te ON te.id = h.event_id
JOIN manifests m ON m.digest = h.digest
LEFT JOIN image_pulls ip ON ip.repository_id = h.repository_id AND ip.digest = h.digest
ORDER BY ` + strings.Replace(order, key, "page.sort_key", 1)
	rows, err := tx.QueryContext(ctx, query, append(args, limit, max(q.Offset, 0))...)
	if err != nil {
		return TagPage{}, fmt.Errorf("list tags: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t TagRow
		var dgst string
		var pushed, pulled int64
		if err := rows.Scan(&t.Repository, &t.Tag, &dgst, &t.MediaType, &t.ArtifactType, &t.Size,
			&pushed, &t.PushedBy, &t.Reason, &t.Generation, &t.Source, &t.AliasOf, &pulled, &t.Pulls); err != nil {
			return TagPage{}, err
		}
		t.Digest, t.Pushed = digest.Digest(dgst), time.UnixMicro(pushed).UTC()
		if pulled > 0 {
			t.LastPulled = time.UnixMicro(pulled).UTC()
		}
		page.Rows = append(page.Rows, t)
	}
	return page, rows.Err()
}

// likeContaining is the LIKE pattern of the strings containing s, its
// wildcards escaped, in lower case (matched against LOWER(...)).
func likeContaining(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

// ImagePulls is what the pull log counted of an image of a repository.
type ImagePulls struct {
	Pulls      int64
	LastPulled time.Time // zero when never pulled
}

// PullsOf reads the pull counts of images of repo, by digest.
func (s *Store) PullsOf(ctx context.Context, repo string) (map[digest.Digest]ImagePulls, error) {
	rows, err := s.query(ctx, `
SELECT ip.digest, ip.pulls, ip.last_pulled_at FROM image_pulls ip JOIN repositories r ON r.id = ip.repository_id WHERE r.name = ?`, repo)
	if err != nil {
		return nil, fmt.Errorf("pulls of %s: %w", repo, err)
	}
	defer rows.Close()
	out := map[digest.Digest]ImagePulls{}
	for rows.Next() {
		var dgst string
		var p ImagePulls
		var at int64
		if err := rows.Scan(&dgst, &p.Pulls, &at); err != nil {
			return nil, err
		}
		p.LastPulled = time.UnixMicro(at).UTC()
		out[digest.Digest(dgst)] = p
	}
	return out, rows.Err()
}

// RepositorySummary is a repository and what the console shows of it.
type RepositorySummary struct {
	Repository
	Tags    int
	Updated time.Time // when a tag last moved; zero without tags
}

// RepositorySummaries reads the repositories of project (every project
// when "") with their tag counts, by name.
func (s *Store) RepositorySummaries(ctx context.Context, project string) ([]RepositorySummary, error) {
	q, args := `
SELECT `+repositoryColumns+`,
	(SELECT COUNT(*) FROM tag_heads h WHERE h.repository_id = r.id),
	COALESCE((SELECT MAX(te.created_at) FROM tag_heads h JOIN tag_events te ON te.id = h.event_id WHERE h.repository_id = r.id), 0)
FROM repositories r`, []any{}
	if project != "" {
		q += ` WHERE r.project = ?`
		args = append(args, project)
	}
	rows, err := s.query(ctx, q+` ORDER BY r.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("summarize repositories of %q: %w", project, err)
	}
	defer rows.Close()
	var out []RepositorySummary
	for rows.Next() {
		var r RepositorySummary
		var created, updated int64
		if err := rows.Scan(&r.Name, &r.Project, &created, &r.Version, &r.Tags, &updated); err != nil {
			return nil, err
		}
		r.Created = time.UnixMicro(created).UTC()
		if updated > 0 {
			r.Updated = time.UnixMicro(updated).UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ProjectSummary is what a project holds, as its list shows it.
type ProjectSummary struct {
	Streams, Tags int
	// Storage is the bytes of the distinct blobs and manifests its
	// repositories link (what its storage quota counts); Shared is the
	// part of them other projects link too. Storage - Shared is what
	// deleting the project could free.
	Storage, Shared int64
	// LastPush is when a tag of the project last moved.
	LastPush time.Time
}

// ProjectSummaries reads what the projects among hold, by name (every
// project when among is nil); a project with no repository has no entry.
// Shared counts only what another project among holds too: whether a
// project the caller cannot see holds some content is not the caller's
// to learn (a push of a candidate layer would tell).
func (s *Store) ProjectSummaries(ctx context.Context, among []string) (map[string]ProjectSummary, error) {
	tx, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	out := map[string]ProjectSummary{}
	rows, err := tx.QueryContext(ctx, `
SELECT r.project, COUNT(DISTINCT r.id), COUNT(h.tag), COALESCE(MAX(te.created_at), 0)
FROM repositories r LEFT JOIN tag_heads h ON h.repository_id = r.id LEFT JOIN tag_events te ON te.id = h.event_id
GROUP BY r.project`)
	if err != nil {
		return nil, fmt.Errorf("summarize projects: %w", err)
	}
	if err := scanEach(rows, func() error {
		var name string
		var p ProjectSummary
		var last int64
		if err := rows.Scan(&name, &p.Streams, &p.Tags, &last); err != nil {
			return err
		}
		if last > 0 {
			p.LastPush = time.UnixMicro(last).UTC()
		}
		out[name] = p
		return nil
	}); err != nil {
		return nil, err
	}
	others, args := "", []any{}
	if among != nil {
		if len(among) == 0 {
			return out, nil
		}
		// One parameter however many projects: a list of placeholders
		// would pass the dialects' limits on parameters (32,766 in SQLite).
		list, err := json.Marshal(among)
		if err != nil {
			return nil, err
		}
		others, args = ` AND o.project IN (SELECT value FROM json_each(?))`, []any{string(list)}
		if s.dialect.shared {
			others = ` AND o.project IN (SELECT json_array_elements_text(CAST(? AS json)))`
		}
	}
	rows, err = tx.QueryContext(ctx, `
SELECT pc.project, SUM(pc.size),
	SUM(CASE WHEN EXISTS (SELECT 1 FROM project_contents o WHERE o.digest = pc.digest AND o.manifest = pc.manifest AND o.project <> pc.project`+others+`)
		THEN pc.size ELSE 0 END)
FROM project_contents pc GROUP BY pc.project`, args...)
	if err != nil {
		return nil, fmt.Errorf("summarize project storage: %w", err)
	}
	err = scanEach(rows, func() error {
		var name string
		var storage, shared int64
		if err := rows.Scan(&name, &storage, &shared); err != nil {
			return err
		}
		p := out[name]
		p.Storage, p.Shared = storage, shared
		out[name] = p
		return nil
	})
	return out, err
}

// scanEach calls scan for each row of rows and closes them.
func scanEach(rows *sql.Rows, scan func() error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(); err != nil {
			return err
		}
	}
	return rows.Err()
}
