package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// PullLog records pulls without a write per pull: Pulled only notes the
// pull in memory, and Flush, every few seconds, adds the pulls noted to
// each image's count and last pull time (image_pulls) in one
// transaction. Once per interval per repository and image it also
// appends an ImagePulled event (for webhooks) and an audit row per user
// with the number of pulls they made. Pulls are frequent and a pull must
// stay a read.
//
// No pull goes unaudited: past maxPendingPulls images noted between two
// flushes, a pull is counted by user alone (an audit row "not itemized"),
// and the log asks for an early flush, which writes every image it holds
// (events included, sooner than the interval). A flush that fails puts what it
// took back, for the next one.
type PullLog struct {
	store    *Store
	interval time.Duration
	limit    int           // maxPendingPulls; tests make it smaller
	full     chan struct{} // signalled when the log should flush early

	mu       sync.Mutex
	pending  map[pullKey]*pullNote
	logged   map[pullKey]time.Time // when each last had its event
	overflow map[string]overflowNote
	// signalled says an early flush was asked for since the last flush.
	signalled bool
	dropped   atomic.Int64
}

type pullKey struct {
	repo   string
	digest digest.Digest
}

// pullNote is what the log holds of an image's pulls.
type pullNote struct {
	count int64     // pulls since the last flush
	first time.Time // the earliest of them
	at    time.Time // the latest of them
	// actors counts the pulls of each user since the image's last event,
	// actor the latest user.
	actors map[string]actorPulls
	actor  string
}

// actorPulls are one user's pulls of an image since its last event.
type actorPulls struct {
	count int64
	last  time.Time
}

// overflowNote counts a user's pulls that were not itemized by image.
type overflowNote struct {
	count   int64
	at      time.Time
	project string // the project of the latest, "" once they span several
}

// maxPendingPulls bounds the images a flood of pulls may hold in memory
// between flushes, maxOverflowActors the users counted past it, and
// maxPullActors the users one image keeps apart between its audit rows.
const (
	maxPendingPulls   = 10000
	maxOverflowActors = 10000
	maxPullActors     = 100
)

// othersActor stands for the users past the bounds in an audit row.
const othersActor = "(others)"

// NewPullLog returns a log that appends each repository and image's
// event and audit rows at most once per interval.
func (s *Store) NewPullLog(interval time.Duration) *PullLog {
	return &PullLog{store: s, interval: interval, limit: maxPendingPulls, full: make(chan struct{}, 1),
		pending: map[pullKey]*pullNote{}, logged: map[pullKey]time.Time{}, overflow: map[string]overflowNote{}}
}

// Pulled notes that actor pulled manifest dgst of repo.
func (p *PullLog) Pulled(repo string, dgst digest.Digest, actor string) {
	p.pulledAt(repo, dgst, actor, 1, time.Now())
}

// pulledAt notes count pulls by actor, the latest at; callers hold no
// lock.
func (p *PullLog) pulledAt(repo string, dgst digest.Digest, actor string, count int64, at time.Time) {
	k := pullKey{repo, dgst}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.pending[k]
	if !ok {
		if len(p.pending) >= p.limit {
			p.noteOverflow(repo, actor, count, at)
			return
		}
		n = &pullNote{actors: map[string]actorPulls{}, first: at}
		p.pending[k] = n
	}
	n.count += count
	if at.Before(n.first) || n.first.IsZero() {
		n.first = at
	}
	if at.After(n.at) {
		n.at, n.actor = at, actor
	}
	if _, ok := n.actors[actor]; !ok && len(n.actors) >= maxPullActors {
		actor = othersActor
	}
	a := n.actors[actor]
	a.count += count
	if at.After(a.last) {
		a.last = at
	}
	n.actors[actor] = a
}

// noteOverflow counts pulls the log has no room to itemize, and asks for
// an early flush (once until the next flush).
func (p *PullLog) noteOverflow(repo, actor string, count int64, at time.Time) {
	p.dropped.Add(count)
	project, _, _ := strings.Cut(repo, "/")
	p.mergeOverflow(actor, overflowNote{count: count, at: at, project: project})
	if !p.signalled {
		p.signalled = true
		select {
		case p.full <- struct{}{}:
		default:
		}
	}
}

type viewingKey struct{}

// Viewing marks ctx as a read to show a manifest (the web console's
// image page), not a pull: the registry does not count it. Only code in
// the process can set it; a client cannot.
func Viewing(ctx context.Context) context.Context { return context.WithValue(ctx, viewingKey{}, true) }

// IsViewing says whether ctx is a read to show, not a pull.
func IsViewing(ctx context.Context) bool { v, _ := ctx.Value(viewingKey{}).(bool); return v }

// Dropped counts the pulls not itemized by image because too many images
// were pending (each is still counted in the audit log, by user).
func (p *PullLog) Dropped() int64 { return p.dropped.Load() }

// pullBatch is what one flush writes of an image.
type pullBatch struct {
	key       pullKey
	count     int64
	first, at time.Time
	event     bool // the interval passed: an event and audit rows too
	actor     string
	actors    map[string]actorPulls
	loggedAt  time.Time // when it last had its event, for a restore
}

// Flush writes the pulls noted since the last flush.
func (p *PullLog) Flush(ctx context.Context) error { return p.flush(ctx, false) }

// flush writes the pulls noted; all of them, events and audit rows
// included, when final (the log stops) or when the log is full (so that
// a flood of distinct images cannot keep it full). On failure what it
// took goes back to the log.
func (p *PullLog) flush(ctx context.Context, final bool) error {
	now := time.Now()
	var batch []pullBatch
	p.mu.Lock()
	all := final || len(p.pending) >= p.limit
	for k, n := range p.pending {
		last, ok := p.logged[k]
		due := all || !ok || now.Sub(last) >= p.interval
		if n.count == 0 && !due {
			continue
		}
		b := pullBatch{key: k, count: n.count, first: n.first, at: n.at, event: due, loggedAt: last}
		n.count, n.first = 0, time.Time{}
		if due {
			b.actor, b.actors = n.actor, n.actors
			p.logged[k] = now
			delete(p.pending, k)
		}
		batch = append(batch, b)
	}
	for k, at := range p.logged {
		if _, ok := p.pending[k]; !ok && now.Sub(at) >= p.interval {
			delete(p.logged, k)
		}
	}
	overflow := p.overflow
	p.overflow = map[string]overflowNote{}
	p.signalled = false
	p.mu.Unlock()
	if len(batch) == 0 && len(overflow) == 0 {
		return nil
	}
	// The same order in every flush: instances flushing at once lock
	// image_pulls rows in one order.
	slices.SortFunc(batch, func(a, b pullBatch) int {
		return cmp.Or(cmp.Compare(a.key.repo, b.key.repo), cmp.Compare(a.key.digest, b.key.digest))
	})
	err := p.store.tx(ctx, func(tx *sql.Tx) error {
		for _, b := range batch {
			if err := p.store.countPulls(ctx, tx, b); err != nil {
				return err
			}
		}
		for _, actor := range slices.Sorted(maps.Keys(overflow)) {
			o := overflow[actor]
			e := AuditEntry{At: o.at, Actor: actor, Action: AuditPull, Project: o.project, Resource: "manifests", Name: "(not itemized)",
				Detail: fmt.Sprintf("%d pulls while the pull log was full", o.count)}
			if err := p.store.insertAudit(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// At least once: a commit that succeeded but reported an error
		// (a connection lost at COMMIT) is written again.
		p.restore(batch, overflow)
	}
	return err
}

// restore puts a batch that failed to commit back into the log, within
// its bounds: an image there is no more room for is counted by user.
func (p *PullLog) restore(batch []pullBatch, overflow map[string]overflowNote) {
	for _, b := range batch {
		if !b.event {
			// Its note stayed, with its users: only the counts go back.
			p.mu.Lock()
			if n, ok := p.pending[b.key]; ok {
				n.count += b.count
				if n.first.IsZero() || b.first.Before(n.first) {
					n.first = b.first
				}
			}
			p.mu.Unlock()
			continue
		}
		for actor, a := range b.actors {
			p.pulledAt(b.key.repo, b.key.digest, actor, a.count, a.last)
		}
		p.mu.Lock()
		if n, ok := p.pending[b.key]; ok {
			// The counts since the last flush are the batch's, not the
			// actors' since the last event.
			n.count += b.count - sumActors(b.actors)
			if b.loggedAt.IsZero() {
				delete(p.logged, b.key)
			} else {
				p.logged[b.key] = b.loggedAt
			}
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for actor, o := range overflow {
		p.mergeOverflow(actor, o)
	}
}

// mergeOverflow adds o to actor's pulls that were not itemized, within
// the bound on users; callers hold p.mu.
func (p *PullLog) mergeOverflow(actor string, o overflowNote) {
	if _, ok := p.overflow[actor]; !ok && len(p.overflow) >= maxOverflowActors {
		actor = othersActor
	}
	cur, seen := p.overflow[actor]
	if seen && cur.project != o.project {
		o.project = ""
	}
	if cur.at.After(o.at) {
		o.at = cur.at
	}
	o.count += cur.count
	p.overflow[actor] = o
}

func sumActors(actors map[string]actorPulls) int64 {
	var n int64
	for _, a := range actors {
		n += a.count
	}
	return n
}

// countPulls writes one image's batch. Pulls count toward the
// repository of that name only if it existed when they began: the pulls
// of a repository deleted and pushed again go nowhere rather than to the
// new one. Each user's audit row bears the time of their own last pull.
func (s *Store) countPulls(ctx context.Context, tx *sql.Tx, b pullBatch) error {
	if b.count > 0 {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO image_pulls (repository_id, digest, pulls, last_pulled_at)
SELECT id, ?, ?, ? FROM repositories WHERE name = ? AND created_at <= ?
ON CONFLICT (repository_id, digest) DO UPDATE SET pulls = image_pulls.pulls + excluded.pulls,
	last_pulled_at = CASE WHEN excluded.last_pulled_at > image_pulls.last_pulled_at THEN excluded.last_pulled_at ELSE image_pulls.last_pulled_at END`,
			string(b.key.digest), b.count, b.at.UnixMicro(), b.key.repo, b.first.UnixMicro()); err != nil {
			return fmt.Errorf("count pulls of %s@%s: %w", b.key.repo, b.key.digest, err)
		}
	}
	if !b.event {
		return nil
	}
	if err := s.appendEvent(WithActor(ctx, b.actor), tx, EventImagePulled, b.key.repo, b.key.digest, ""); err != nil {
		return err
	}
	project, _, _ := strings.Cut(b.key.repo, "/")
	for _, actor := range slices.Sorted(maps.Keys(b.actors)) {
		a := b.actors[actor]
		e := AuditEntry{At: a.last, Actor: actor, Action: AuditPull, Project: project, Resource: "manifests", Name: b.key.repo,
			Digest: b.key.digest, Detail: fmt.Sprintf("%d pulls", a.count)}
		if a.count == 1 {
			e.Detail = "1 pull"
		}
		if err := s.insertAudit(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}

// Run flushes every period until ctx ends, and once more then; sooner
// when the log fills, but not more than once a second.
func (p *PullLog) Run(ctx context.Context, period time.Duration, onError func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.flush(fctx, true); err != nil && onError != nil {
				onError(err)
			}
			return
		case <-t.C:
		case <-p.full:
			if wait := time.Second - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					continue
				}
			}
		}
		last = time.Now()
		if err := p.Flush(ctx); err != nil && onError != nil {
			onError(err)
		}
	}
}
