package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// Image pruning, the reference's oc adm prune images: per repository,
// trim each tag's history to its newest revisions, then unlink the images
// nothing kept names. Garbage collection then frees what they alone
// referenced (gc.go). The plan is made and carried out in one transaction
// holding the repository's row, as a push does: a dry run makes the same
// plan and keeps it.

// PrunePolicy says what pruning keeps: in each tag's history the newest
// KeepTagRevisions revisions (images; 0 keeps none but the current one),
// and anything younger than KeepYoungerThan (history entries, images
// linked since).
type PrunePolicy struct {
	KeepTagRevisions int
	KeepYoungerThan  time.Time
}

// PrunedRevision is a tag history entry pruning removes.
type PrunedRevision struct {
	Tag     string        `json:"tag"`
	Digest  digest.Digest `json:"image,omitempty"` // "" for a deletion of the tag
	Created time.Time     `json:"created"`
	// Revision is its place in the tag's history, 0 the newest.
	Revision int `json:"revision"`
}

// PrunedImage is an image pruning unlinks from a repository.
type PrunedImage struct {
	Digest  digest.Digest `json:"image"`
	Size    int64         `json:"size"`
	Created time.Time     `json:"created"`
}

// PruneResult is what pruning one repository removes (would remove).
type PruneResult struct {
	Repository string           `json:"repository"`
	Revisions  []PrunedRevision `json:"revisions,omitempty"`
	Images     []PrunedImage    `json:"images,omitempty"`
}

// PruneRepository prunes repo under p; with apply false it only says what
// it would remove. An unknown repository is errdefs.ErrNotFound.
func (s *Store) PruneRepository(ctx context.Context, repo string, p PrunePolicy, apply bool) (PruneResult, error) {
	res := PruneResult{Repository: repo}
	if !apply {
		tx, err := s.snapshot(ctx)
		if err != nil {
			return res, fmt.Errorf("prune %s: %w", repo, err)
		}
		defer tx.Rollback()
		repoID, err := s.repositoryID(ctx, tx, repo)
		if err != nil {
			return res, err
		}
		plan, err := s.prunePlan(ctx, tx, repoID, p)
		res.Revisions, res.Images = plan.revisions, plan.images
		return res, err
	}
	err := s.pushTx(ctx, func(tx *sql.Tx) error {
		res.Revisions, res.Images = nil, nil
		repoID, err := s.repositoryID(ctx, tx, repo)
		if err != nil {
			return err
		}
		// What pushes, tag moves and deletions change waits: the plan is
		// made on what this transaction sees, and carried out before any
		// of them.
		if err := s.lockRepository(ctx, tx, repoID); err != nil {
			return err
		}
		plan, err := s.prunePlan(ctx, tx, repoID, p)
		if err != nil {
			return err
		}
		res.Revisions, res.Images = plan.revisions, plan.images
		for ids := range slices.Chunk(plan.eventIDs, 500) {
			args := []any{repoID}
			for _, id := range ids {
				args = append(args, id)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM tag_events WHERE repository_id = ? AND id IN (`+placeholders(len(ids))+`)`, args...); err != nil {
				return fmt.Errorf("trim the history of %s: %w", repo, err)
			}
		}
		if len(plan.eventIDs) > 0 {
			if err := s.appendEvent(ctx, tx, EventTagHistoryPruned, repo, "", ""); err != nil {
				return err
			}
		}
		for _, im := range plan.images {
			if _, err := tx.ExecContext(ctx, `DELETE FROM repository_manifests WHERE repository_id = ? AND digest = ?`, repoID, string(im.Digest)); err != nil {
				return fmt.Errorf("unlink %s from %s: %w", im.Digest, repo, err)
			}
			if err := s.appendEventWhy(ctx, tx, EventManifestDeleted, repo, im.Digest, "", ReasonPruned); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// prunePlan is what pruning removes from repoID, as q sees it.
type prunePlan struct {
	revisions []PrunedRevision
	eventIDs  []int64
	images    []PrunedImage
}

func (s *Store) prunePlan(ctx context.Context, q *sql.Tx, repoID int64, p PrunePolicy) (prunePlan, error) {
	var plan prunePlan
	cutoff := p.KeepYoungerThan.UnixMicro()
	rows, err := q.QueryContext(ctx, `
SELECT e.id, e.tag, COALESCE(e.digest, ''), e.created_at,
	EXISTS (SELECT 1 FROM tag_heads h WHERE h.repository_id = e.repository_id AND h.event_id = e.id)
FROM tag_events e WHERE e.repository_id = ? ORDER BY e.tag, e.id DESC`, repoID)
	if err != nil {
		return plan, fmt.Errorf("read tag history: %w", err)
	}
	kept := map[digest.Digest]bool{}
	tag, revision, deleted := "", 0, false
	for rows.Next() {
		var id, created int64
		var t, d string
		var head bool
		if err := rows.Scan(&id, &t, &d, &created, &head); err != nil {
			rows.Close()
			return plan, fmt.Errorf("read tag history: %w", err)
		}
		if t != tag {
			tag, revision, deleted = t, 0, false
		}
		// Revisions count back to the tag's newest deletion: what is
		// older (a deleted tag's whole history) is kept only while young,
		// as the stream no longer shows it.
		keep := head || created >= cutoff || (!deleted && revision < p.KeepTagRevisions)
		if d != "" {
			if keep {
				kept[digest.Digest(d)] = true
			}
			if !keep {
				plan.revisions = append(plan.revisions, PrunedRevision{Tag: t, Digest: digest.Digest(d), Created: time.UnixMicro(created).UTC(), Revision: revision})
			}
			revision++
		} else {
			// A deletion itself is kept while young only.
			keep = head || created >= cutoff
			if !keep {
				plan.revisions = append(plan.revisions, PrunedRevision{Tag: t, Created: time.UnixMicro(created).UTC(), Revision: revision})
			}
			deleted = true
		}
		if !keep {
			plan.eventIDs = append(plan.eventIDs, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return plan, fmt.Errorf("read tag history: %w", err)
	}

	// The images the repository links, with what keeps one: a kept
	// history entry (above), its youth (linked, or pushed anywhere, since
	// the cutoff), an index kept that names it, a subject kept that it
	// refers to.
	type image struct {
		size, created int64
		subject       digest.Digest
		children      []digest.Digest
	}
	images := map[digest.Digest]*image{}
	rows, err = q.QueryContext(ctx, `
SELECT rm.digest, m.size, CASE WHEN m.touched_at > rm.created_at THEN m.touched_at ELSE rm.created_at END, m.subject
FROM repository_manifests rm JOIN manifests m ON m.digest = rm.digest
WHERE rm.repository_id = ?`, repoID)
	if err != nil {
		return plan, fmt.Errorf("read images: %w", err)
	}
	for rows.Next() {
		var d, subject string
		im := &image{}
		if err := rows.Scan(&d, &im.size, &im.created, &subject); err != nil {
			rows.Close()
			return plan, fmt.Errorf("read images: %w", err)
		}
		im.subject = digest.Digest(subject)
		images[digest.Digest(d)] = im
		if im.created >= cutoff {
			kept[digest.Digest(d)] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return plan, fmt.Errorf("read images: %w", err)
	}
	rows, err = q.QueryContext(ctx, `
SELECT mr.manifest_digest, mr.reference FROM manifest_references mr
JOIN repository_manifests rm ON rm.digest = mr.manifest_digest AND rm.repository_id = ?
WHERE mr.is_manifest = 1`, repoID)
	if err != nil {
		return plan, fmt.Errorf("read index children: %w", err)
	}
	for rows.Next() {
		var parent, child string
		if err := rows.Scan(&parent, &child); err != nil {
			rows.Close()
			return plan, fmt.Errorf("read index children: %w", err)
		}
		if im := images[digest.Digest(parent)]; im != nil {
			im.children = append(im.children, digest.Digest(child))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return plan, fmt.Errorf("read index children: %w", err)
	}
	// From what is kept, what it needs: an index's children, the
	// referrers of a kept subject; each image is visited once.
	referrers := map[digest.Digest][]digest.Digest{}
	for d, im := range images {
		if im.subject != "" {
			referrers[im.subject] = append(referrers[im.subject], d)
		}
	}
	queue := make([]digest.Digest, 0, len(kept))
	for d := range kept {
		queue = append(queue, d)
	}
	for len(queue) > 0 {
		d := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		var needs []digest.Digest
		if im := images[d]; im != nil {
			needs = im.children
		}
		for _, n := range append(needs, referrers[d]...) {
			if !kept[n] {
				kept[n] = true
				queue = append(queue, n)
			}
		}
	}
	for d, im := range images {
		if !kept[d] {
			plan.images = append(plan.images, PrunedImage{Digest: d, Size: im.size, Created: time.UnixMicro(im.created).UTC()})
		}
	}
	slices.SortFunc(plan.images, func(a, b PrunedImage) int { return cmp.Compare(a.Digest, b.Digest) })
	return plan, nil
}
