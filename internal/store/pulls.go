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
// and the log asks for an early flush. A flush that fails puts what it
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
	dropped  atomic.Int64
}

type pullKey struct {
	repo   string
	digest digest.Digest
}

// pullNote is what the log holds of an image's pulls.
type pullNote struct {
	count int64     // pulls since the last flush
	at    time.Time // the latest of them
	// actors counts the pulls of each user since the image's last event,
	// actor the latest user.
	actors map[string]int64
	actor  string
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
	k := pullKey{repo, dgst}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.pending[k]
	if !ok {
		if len(p.pending) >= p.limit {
			p.noteOverflow(repo, actor, now)
			return
		}
		n = &pullNote{actors: map[string]int64{}}
		p.pending[k] = n
	}
	n.count++
	n.at = now
	n.actor = actor
	if _, ok := n.actors[actor]; !ok && len(n.actors) >= maxPullActors {
		actor = othersActor
	}
	n.actors[actor]++
}

// noteOverflow counts a pull the log has no room to itemize, and asks for
// an early flush.
func (p *PullLog) noteOverflow(repo, actor string, at time.Time) {
	p.dropped.Add(1)
	if _, ok := p.overflow[actor]; !ok && len(p.overflow) >= maxOverflowActors {
		actor = othersActor
	}
	project, _, _ := strings.Cut(repo, "/")
	o, seen := p.overflow[actor]
	if seen && o.project != project {
		project = ""
	}
	p.overflow[actor] = overflowNote{count: o.count + 1, at: at, project: project}
	select {
	case p.full <- struct{}{}:
	default:
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
	key      pullKey
	count    int64
	at       time.Time
	event    bool // the interval passed: an event and audit rows too
	actor    string
	actors   map[string]int64
	loggedAt time.Time // when it last had its event, for a restore
}

// Flush writes the pulls noted since the last flush.
func (p *PullLog) Flush(ctx context.Context) error { return p.flush(ctx, false) }

// flush writes the pulls noted; all of them, events and audit rows
// included, when final (the log stops). On failure what it took goes
// back to the log.
func (p *PullLog) flush(ctx context.Context, final bool) error {
	now := time.Now()
	var batch []pullBatch
	p.mu.Lock()
	for k, n := range p.pending {
		last, ok := p.logged[k]
		due := final || !ok || now.Sub(last) >= p.interval
		if n.count == 0 && !due {
			continue
		}
		b := pullBatch{key: k, count: n.count, at: n.at, event: due, loggedAt: last}
		n.count = 0
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
		p.restore(batch, overflow)
	}
	return err
}

// restore puts a batch that failed to commit back into the log.
func (p *PullLog) restore(batch []pullBatch, overflow map[string]overflowNote) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range batch {
		n, ok := p.pending[b.key]
		if !ok {
			n = &pullNote{actors: map[string]int64{}}
			p.pending[b.key] = n
		}
		n.count += b.count
		if b.at.After(n.at) {
			n.at = b.at
		}
		if b.event {
			for actor, c := range b.actors {
				n.actors[actor] += c
			}
			if n.actor == "" {
				n.actor = b.actor
			}
			if b.loggedAt.IsZero() {
				delete(p.logged, b.key)
			} else {
				p.logged[b.key] = b.loggedAt
			}
		}
	}
	for actor, o := range overflow {
		cur := p.overflow[actor]
		if cur.count > 0 && cur.project != o.project {
			o.project = ""
		}
		p.overflow[actor] = overflowNote{count: cur.count + o.count, at: o.at, project: o.project}
	}
}

// countPulls writes one image's batch.
func (s *Store) countPulls(ctx context.Context, tx *sql.Tx, b pullBatch) error {
	if b.count > 0 {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO image_pulls (repository_id, digest, pulls, last_pulled_at)
SELECT id, ?, ?, ? FROM repositories WHERE name = ?
ON CONFLICT (repository_id, digest) DO UPDATE SET pulls = image_pulls.pulls + excluded.pulls,
	last_pulled_at = CASE WHEN excluded.last_pulled_at > image_pulls.last_pulled_at THEN excluded.last_pulled_at ELSE image_pulls.last_pulled_at END`,
			string(b.key.digest), b.count, b.at.UnixMicro(), b.key.repo); err != nil {
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
	actors := slices.Sorted(maps.Keys(b.actors))
	for _, actor := range actors {
		e := AuditEntry{At: b.at, Actor: actor, Action: AuditPull, Project: project, Resource: "manifests", Name: b.key.repo,
			Digest: b.key.digest, Detail: fmt.Sprintf("%d pulls", b.actors[actor])}
		if b.actors[actor] == 1 {
			e.Detail = "1 pull"
		}
		if err := s.insertAudit(ctx, tx, e); err != nil {
			return err
		}
	}
	return nil
}

// Run flushes every period until ctx ends, and once more then; sooner
// when the log fills.
func (p *PullLog) Run(ctx context.Context, period time.Duration, onError func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
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
		}
		if err := p.Flush(ctx); err != nil && onError != nil {
			onError(err)
		}
	}
}
