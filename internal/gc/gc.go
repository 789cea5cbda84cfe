// Package gc is Berth's online garbage collector: it deletes the manifests
// and blobs nothing references any more, while pushes and pulls go on (no
// read-only window). The metadata store decides what is unreferenced and
// guards each deletion against concurrent pushes (store/gc.go); this
// package pages through the candidates, deletes blob bytes from every
// storage that holds them, and reports. docs/GC.md has the argument for
// why a blob that a push relies on is never deleted.
package gc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// Store is what the collector asks of the metadata store.
type Store interface {
	GCManifestCandidates(ctx context.Context, before time.Time, after digest.Digest, n int) ([]store.GCCandidate, error)
	GCBlobCandidates(ctx context.Context, before, staleSince time.Time, after digest.Digest, n int) ([]store.GCCandidate, error)
	GCCascade(ctx context.Context, gone map[digest.Digest]bool, before time.Time) (manifests, blobs []store.GCCandidate, err error)
	GCPending(ctx context.Context, before time.Time) (manifests, blobs int64, err error)
	CollectManifest(ctx context.Context, dgst digest.Digest, before time.Time) (bool, error)
	TakeBlob(ctx context.Context, dgst digest.Digest, before, staleSince time.Time, owner int64) (store.TakenBlob, bool, error)
	ForgetBlobBytes(ctx context.Context, dgst digest.Digest, storage string, owner int64) error
	FinishBlob(ctx context.Context, dgst digest.Digest, owner int64, release bool) (bool, error)
}

// Storages are the blob storages open now: the one in effect and the
// older ones still read, by ID.
type Storages func() (inEffect string, open map[string]storage.Deleter)

// Metrics records runs (metrics.GCMetrics).
type Metrics interface {
	Ran(result string, took time.Duration, manifests, blobs int, bytes int64, pendingManifests, pendingBlobs int64)
}

// DefaultGrace is how long an unreferenced blob or manifest is kept after
// it was last pushed, linked or claimed: as GitLab's registry's review
// delay, a day, so that a slow push (layers first, the manifest hours
// later) never finds a layer it uploaded gone.
const DefaultGrace = 24 * time.Hour

// StaleAfter is how long a collection holds a blob it took before another
// may take it over: far longer than deleting its bytes takes (each
// storage's deletion is bounded by DeleteTimeout), so that only a
// collection that died, or whose deletion's outcome is unknown, loses it.
const StaleAfter = 5 * time.Minute

// listedItems bounds the items a report lists; its totals count them all.
const listedItems = 10000

// Collector runs collections: one at a time in a process; several
// processes may run at once, each blob's deletion being one collection's
// alone (its owner token in the store).
type Collector struct {
	Store    Store
	Storages Storages
	// ReadOnly says the registry is read-only (spec.readOnly): nothing is
	// deleted then (nil: never).
	ReadOnly func() bool
	// Grace is the grace period (DefaultGrace when 0).
	Grace   time.Duration
	Log     *slog.Logger
	Metrics Metrics
	// DeleteTimeout bounds each deletion of bytes from a storage (30s
	// when 0): a storage that does not answer leaves the blob for the
	// next run instead of holding this one.
	DeleteTimeout time.Duration

	running sync.Mutex
}

// Options choose what a run does.
type Options struct {
	// DryRun reports what a run would delete, and deletes nothing.
	DryRun bool
	// Grace overrides the collector's grace period for this run when set.
	Grace *time.Duration
}

// Item is a manifest or blob a run deleted (or, dry, would delete).
type Item struct {
	Kind   string        `json:"kind"` // "manifest" or "blob"
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// Touched is when it was last pushed, linked or claimed.
	Touched time.Time `json:"touched"`
	// Reason says why it is garbage.
	Reason string `json:"reason"`
}

// Report is what a run did.
type Report struct {
	DryRun   bool      `json:"dryRun"`
	Grace    string    `json:"grace"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Items are what went (would go), manifests first, in the order taken.
	Items            []Item `json:"items"`
	ManifestsDeleted int    `json:"manifestsDeleted"`
	BlobsDeleted     int    `json:"blobsDeleted"`
	// BytesFreed are the blob bytes deleted (would be), counted once per
	// blob however many storages held a copy.
	BytesFreed int64 `json:"bytesFreed"`
	// PendingManifests and PendingBlobs are unreferenced but within the
	// grace period: a later run may delete them.
	PendingManifests int64 `json:"pendingManifests"`
	PendingBlobs     int64 `json:"pendingBlobs"`
	// Unlisted counts the items beyond the first listedItems, not listed.
	Unlisted int `json:"unlisted,omitempty"`
	// Errors are deletions that failed; the next run retries them.
	Errors []string `json:"errors,omitempty"`
}

// list adds it to the report's listing while it is short enough.
func (r *Report) list(it Item) {
	if len(r.Items) < listedItems {
		r.Items = append(r.Items, it)
	} else {
		r.Unlisted++
	}
}

// ErrRunning refuses a run while another runs in this process.
var ErrRunning = errors.New("a garbage collection is already running")

// ErrReadOnly refuses a run that would delete while the registry is
// read-only.
var ErrReadOnly = errors.New("the registry is read-only (spec.readOnly): garbage collection deletes nothing until it is writable again")

// page is how many candidates a query returns.
const page = 500

// Run runs one collection (see Options). A run stops early when ctx
// ends, with what it did so far; a blob it took and could not finish is
// finished by the next run.
func (c *Collector) Run(ctx context.Context, opts Options) (Report, error) {
	if !opts.DryRun && c.ReadOnly != nil && c.ReadOnly() {
		return Report{}, fmt.Errorf("%w: %w", ErrReadOnly, errdefs.ErrConflict)
	}
	if !c.running.TryLock() {
		return Report{}, fmt.Errorf("%w: %w", ErrRunning, errdefs.ErrConflict)
	}
	defer c.running.Unlock()
	grace := c.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	if opts.Grace != nil {
		grace = *opts.Grace
	}
	started := time.Now()
	before := started.Add(-grace)
	rep := Report{DryRun: opts.DryRun, Grace: grace.String(), Started: started.UTC()}
	var err error
	if opts.DryRun {
		err = c.forecast(ctx, before, started.Add(-StaleAfter), &rep)
	} else {
		err = c.collect(ctx, before, started.Add(-StaleAfter), newOwner(), &rep)
	}
	if err == nil {
		rep.PendingManifests, rep.PendingBlobs, err = c.Store.GCPending(ctx, before)
	}
	rep.Finished = time.Now().UTC()
	result := "success"
	switch {
	case opts.DryRun:
		result = "dry_run"
	case err != nil || len(rep.Errors) > 0:
		result = "error"
	}
	if c.Metrics != nil && err == nil {
		c.Metrics.Ran(result, time.Since(started), rep.ManifestsDeleted, rep.BlobsDeleted, rep.BytesFreed, rep.PendingManifests, rep.PendingBlobs)
	}
	if c.Log != nil && !opts.DryRun {
		attrs := []any{"manifests", rep.ManifestsDeleted, "blobs", rep.BlobsDeleted, "bytes", rep.BytesFreed,
			"pending_manifests", rep.PendingManifests, "pending_blobs", rep.PendingBlobs, "took", time.Since(started).Round(time.Millisecond)}
		switch {
		case err != nil:
			c.Log.Warn("garbage collection stopped", append(attrs, "err", err)...)
		case len(rep.Errors) > 0:
			c.Log.Warn("garbage collection left some for the next run", append(attrs, "errors", len(rep.Errors), "first", rep.Errors[0])...)
		case rep.ManifestsDeleted+rep.BlobsDeleted > 0:
			c.Log.Info("garbage collection", attrs...)
		}
	}
	return rep, err
}

// newOwner names a collection: a random non-zero number.
func newOwner() int64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if n := int64(binary.BigEndian.Uint64(b[:]) >> 1); n != 0 {
			return n
		}
	}
}

// Resume finishes the blobs collections took and hold no more (they died,
// or could not delete the bytes): until then, uploads of those blobs
// wait. It deletes nothing else.
func (c *Collector) Resume(ctx context.Context) error {
	if c.ReadOnly != nil && c.ReadOnly() {
		return nil
	}
	if !c.running.TryLock() {
		return nil // a run finishes them
	}
	defer c.running.Unlock()
	var rep Report
	owner := newOwner()
	stale := time.Now().Add(-StaleAfter)
	// No blob is untouched since the epoch: only held ones are listed.
	err := eachCandidate(ctx, func(ctx context.Context, after digest.Digest, n int) ([]store.GCCandidate, error) {
		return c.Store.GCBlobCandidates(ctx, time.Time{}, stale, after, n)
	}, func(b store.GCCandidate) error {
		return c.collectBlob(ctx, b, time.Time{}, stale, owner, &rep)
	})
	if c.Log != nil && (rep.BlobsDeleted > 0 || len(rep.Errors) > 0) {
		c.Log.Info("garbage collection finished blobs an earlier run held", "blobs", rep.BlobsDeleted, "bytes", rep.BytesFreed, "errors", len(rep.Errors))
	}
	return err
}

// collect deletes: manifests first, pass after pass (a collected index
// leaves its children unreferenced), then blobs, which collected
// manifests may have left unreferenced.
func (c *Collector) collect(ctx context.Context, before, stale time.Time, owner int64, rep *Report) error {
	for {
		found := 0
		err := eachCandidate(ctx, manifestsBefore(c.Store, before), func(m store.GCCandidate) error {
			ok, err := c.Store.CollectManifest(ctx, m.Digest, before)
			if ok {
				found++
				rep.ManifestsDeleted++
				rep.list(manifestItem(m))
			}
			return err
		})
		if err != nil {
			return err
		}
		if found == 0 {
			break
		}
	}
	return eachCandidate(ctx, blobsBefore(c.Store, before, stale), func(b store.GCCandidate) error {
		return c.collectBlob(ctx, b, before, stale, owner, rep)
	})
}

// candidates lists a page of candidates after after.
type candidates func(ctx context.Context, after digest.Digest, n int) ([]store.GCCandidate, error)

func manifestsBefore(st Store, before time.Time) candidates {
	return func(ctx context.Context, after digest.Digest, n int) ([]store.GCCandidate, error) {
		return st.GCManifestCandidates(ctx, before, after, n)
	}
}

func blobsBefore(st Store, before, stale time.Time) candidates {
	return func(ctx context.Context, after digest.Digest, n int) ([]store.GCCandidate, error) {
		return st.GCBlobCandidates(ctx, before, stale, after, n)
	}
}

// eachCandidate calls fn with every candidate list finds, a page at a
// time, until fn fails.
func eachCandidate(ctx context.Context, list candidates, fn func(store.GCCandidate) error) error {
	var after digest.Digest
	for {
		cands, err := list(ctx, after, page)
		if err != nil {
			return err
		}
		for _, c := range cands {
			if err := fn(c); err != nil {
				return err
			}
		}
		if len(cands) < page {
			return nil
		}
		after = cands[len(cands)-1].Digest
	}
}

// collectBlob takes blob b in the store, deletes its bytes from every
// storage that may hold them, and then its row. A deletion that failed is
// reported: the blob is let go for a later run when the storage refused,
// and held (for a run to finish once the hold is stale) when the outcome
// is unknown (a timeout: the deletion may still land, and must not land on
// the bytes of a new upload).
func (c *Collector) collectBlob(ctx context.Context, b store.GCCandidate, before, stale time.Time, owner int64, rep *Report) error {
	taken, ok, err := c.Store.TakeBlob(ctx, b.Digest, before, stale, owner)
	if err != nil || !ok {
		return err
	}
	// From here on the blob is unlinked everywhere and nothing claims
	// it: its deletion finishes even if the run is asked to stop.
	ctx = context.WithoutCancel(ctx)
	inEffect, open := c.Storages()
	// The storage in effect too, whatever the store lists: bytes an
	// upload committed there and never recorded (it died, or its claim
	// was taken) go with the blob's row.
	targets := append([]string(nil), taken.Storages...)
	if inEffect != "" && !slices.Contains(targets, inEffect) {
		targets = append(targets, inEffect)
	}
	failed, unknown := false, false
	for _, id := range targets {
		d, ok := open[id]
		if !ok {
			if slices.Contains(taken.Storages, id) {
				failed = true
				rep.Errors = append(rep.Errors, fmt.Sprintf("blob %s: storage %s is not open here; its bytes stay", b.Digest, id))
			}
			continue
		}
		if err := c.delete(ctx, d, b.Digest); err != nil {
			failed = true
			unknown = unknown || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errdefs.ErrTimeout) || errors.Is(err, errdefs.ErrUnavailable)
			rep.Errors = append(rep.Errors, fmt.Sprintf("blob %s: delete from %s: %v", b.Digest, id, err))
			continue
		}
		if slices.Contains(taken.Storages, id) {
			if err := c.Store.ForgetBlobBytes(ctx, b.Digest, id, owner); err != nil {
				return err
			}
		}
	}
	if failed {
		// Bytes that may remain somewhere: the row stays until they are
		// known to be gone.
		_, err := c.Store.FinishBlob(ctx, b.Digest, owner, !unknown)
		return err
	}
	done, err := c.Store.FinishBlob(ctx, b.Digest, owner, true)
	if err != nil {
		return err
	}
	if done {
		rep.BlobsDeleted++
		if len(taken.Storages) > 0 {
			rep.BytesFreed += taken.Size
		}
		rep.list(blobItem(b))
	}
	return nil
}

func (c *Collector) delete(ctx context.Context, d storage.Deleter, dgst digest.Digest) error {
	timeout := c.DeleteTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.Delete(ctx, dgst); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	return nil
}

// forecast lists what collect would delete now: the candidates, and what
// collecting them would leave unreferenced.
func (c *Collector) forecast(ctx context.Context, before, stale time.Time, rep *Report) error {
	gone := map[digest.Digest]bool{}
	err := eachCandidate(ctx, manifestsBefore(c.Store, before), func(m store.GCCandidate) error {
		gone[m.Digest] = true
		rep.list(manifestItem(m))
		return nil
	})
	if err != nil {
		return err
	}
	manifests, cascaded, err := c.Store.GCCascade(ctx, gone, before)
	if err != nil {
		return err
	}
	for _, m := range manifests {
		it := manifestItem(m)
		it.Reason = "only manifests collected in this run reference it, and no repository links it and no tag history names it"
		rep.list(it)
	}
	rep.ManifestsDeleted = len(gone)
	blobs := map[digest.Digest]bool{}
	err = eachCandidate(ctx, blobsBefore(c.Store, before, stale), func(b store.GCCandidate) error {
		blobs[b.Digest] = true
		rep.list(blobItem(b))
		rep.BytesFreed += b.Size
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(cascaded, func(i, j int) bool { return cascaded[i].Digest < cascaded[j].Digest })
	for _, b := range cascaded {
		if blobs[b.Digest] {
			continue
		}
		blobs[b.Digest] = true
		it := blobItem(b)
		it.Reason = "only manifests collected in this run reference it" + linkedIn(b.Linked)
		rep.list(it)
		rep.BytesFreed += b.Size
	}
	rep.BlobsDeleted = len(blobs)
	return nil
}

func manifestItem(m store.GCCandidate) Item {
	return Item{Kind: "manifest", Digest: m.Digest, Size: m.Size, Touched: m.Touched,
		Reason: "no repository links it, no tag history names it and no stored index references it"}
}

func blobItem(b store.GCCandidate) Item {
	reason := "no stored manifest references it" + linkedIn(b.Linked)
	if b.Deleting {
		reason = "a collection took it and has not finished deleting its bytes (it stopped, or their deletion failed)"
	}
	return Item{Kind: "blob", Digest: b.Digest, Size: b.Size, Touched: b.Touched, Reason: reason}
}

func linkedIn(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " (uploaded to 1 repository, which loses it)"
	default:
		return fmt.Sprintf(" (uploaded to %d repositories, which lose it)", n)
	}
}
