// Package prune is image pruning, the reference's oc adm prune images:
// per repository, each tag's history is trimmed to its newest revisions
// and the images nothing kept names are unlinked, so that garbage
// collection (internal/gc) frees what only they referenced. The store
// makes each repository's plan and carries it out under the repository's
// lock (store/prune.go); this package walks the repositories and reports.
// A dry run makes the same plans and keeps them.
package prune

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// Store is what pruning asks of the metadata store.
type Store interface {
	Repositories(ctx context.Context, last string, n int) ([]string, bool, error)
	PruneRepository(ctx context.Context, repo string, p store.PrunePolicy, apply bool) (store.PruneResult, error)
}

// The reference's defaults (oc adm prune images, the ImagePruner).
const (
	DefaultKeepTagRevisions = 3
	DefaultKeepYoungerThan  = 60 * time.Minute
)

// Options say what a run keeps and whether it removes anything.
type Options struct {
	// KeepTagRevisions is how many revisions of each tag's history stay
	// (the current one always does).
	KeepTagRevisions int
	// KeepYoungerThan keeps history entries and images younger than it.
	KeepYoungerThan time.Duration
	// Confirm removes; without it the run only reports.
	Confirm bool
}

// Report is what a run removed (or, unconfirmed, would remove).
type Report struct {
	Confirm          bool      `json:"confirm"`
	KeepTagRevisions int       `json:"keepTagRevisions"`
	KeepYoungerThan  string    `json:"keepYoungerThan"`
	Started          time.Time `json:"started"`
	Finished         time.Time `json:"finished"`
	// Repositories are those with something to remove, by name.
	Repositories []store.PruneResult `json:"repositories,omitempty"`
	Revisions    int                 `json:"revisions"`
	Images       int                 `json:"images"`
	// ManifestBytes are the pruned images' manifests; their blobs are
	// freed by garbage collection, with whatever else only they used.
	ManifestBytes int64 `json:"manifestBytes"`
	// Unlisted counts the entries beyond the first listedEntries, not
	// listed (the totals count them).
	Unlisted int      `json:"unlisted,omitempty"`
	Errors   []string `json:"errors,omitempty"`

	listed int
}

// listedEntries bounds the history entries and images a report lists.
const listedEntries = 10000

// ErrRunning refuses a run while another runs in this process.
var ErrRunning = errors.New("an image pruning is already running")

// ErrReadOnly refuses a confirmed run while the registry is read-only.
var ErrReadOnly = errors.New("the registry is read-only (spec.readOnly): pruning removes nothing until it is writable again")

// Pruner runs prunings, one at a time in a process.
type Pruner struct {
	Store Store
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// ReadOnly says the registry is read-only (nil: never).
	ReadOnly func() bool

	running sync.Mutex
}

// Run prunes every repository under opts. A repository that fails is
// reported and the others go on; a store that fails ends the run.
func (p *Pruner) Run(ctx context.Context, opts Options) (Report, error) {
	if opts.KeepTagRevisions < 0 || opts.KeepYoungerThan < 0 {
		return Report{}, fmt.Errorf("keep-tag-revisions and keep-younger-than must not be negative: %w", errdefs.ErrInvalidArgument)
	}
	if opts.Confirm && p.ReadOnly != nil && p.ReadOnly() {
		return Report{}, fmt.Errorf("%w: %w", ErrReadOnly, errdefs.ErrConflict)
	}
	if !p.running.TryLock() {
		return Report{}, fmt.Errorf("%w: %w", ErrRunning, errdefs.ErrConflict)
	}
	defer p.running.Unlock()
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	started := now()
	rep := Report{Confirm: opts.Confirm, KeepTagRevisions: opts.KeepTagRevisions, KeepYoungerThan: opts.KeepYoungerThan.String(), Started: started.UTC()}
	policy := store.PrunePolicy{KeepTagRevisions: opts.KeepTagRevisions, KeepYoungerThan: started.Add(-opts.KeepYoungerThan)}
	last := ""
	for {
		repos, more, err := p.Store.Repositories(ctx, last, 500)
		if err != nil {
			rep.Finished = now().UTC()
			return rep, err
		}
		for _, repo := range repos {
			if opts.Confirm && p.ReadOnly != nil && p.ReadOnly() {
				rep.Finished = now().UTC()
				return rep, fmt.Errorf("%w: %w", ErrReadOnly, errdefs.ErrConflict)
			}
			res, err := p.Store.PruneRepository(ctx, repo, policy, opts.Confirm)
			switch {
			case errors.Is(err, errdefs.ErrNotFound):
				continue // deleted meanwhile
			case ctx.Err() != nil:
				rep.Finished = now().UTC()
				return rep, ctx.Err()
			case err != nil:
				rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", repo, err))
				continue
			}
			if len(res.Revisions)+len(res.Images) == 0 {
				continue
			}
			rep.Revisions += len(res.Revisions)
			rep.Images += len(res.Images)
			for _, im := range res.Images {
				rep.ManifestBytes += im.Size
			}
			rep.list(res)
		}
		if !more || len(repos) == 0 {
			break
		}
		last = repos[len(repos)-1]
	}
	rep.Finished = now().UTC()
	return rep, nil
}

// list adds res to the report's listing, as much of it as the listing
// still holds.
func (r *Report) list(res store.PruneResult) {
	room := listedEntries - r.listed
	all := len(res.Revisions) + len(res.Images)
	if room <= 0 {
		r.Unlisted += all
		return
	}
	if len(res.Revisions) > room {
		res.Revisions = res.Revisions[:room]
	}
	room -= len(res.Revisions)
	if len(res.Images) > room {
		res.Images = res.Images[:room]
	}
	r.listed += len(res.Revisions) + len(res.Images)
	r.Unlisted += all - len(res.Revisions) - len(res.Images)
	r.Repositories = append(r.Repositories, res)
}
