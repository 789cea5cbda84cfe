package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// PullLog records pulls as ImagePulled events without a write per pull:
// Pulled only notes the pull in memory, and Run appends the notes in one
// transaction every few seconds, each repository and image at most once
// per interval. Pulls are frequent and a pull must stay a read.
type PullLog struct {
	store    *Store
	interval time.Duration

	mu      sync.Mutex
	pending map[pullKey]string    // → the actor of the latest pull
	last    map[pullKey]time.Time // when each was last appended
	dropped atomic.Int64
}

type pullKey struct {
	repo   string
	digest digest.Digest
}

// maxPendingPulls bounds what a flood of pulls of distinct images may
// hold in memory between flushes; the excess is counted, not kept.
const maxPendingPulls = 10000

// NewPullLog returns a log that appends each repository and image at
// most once per interval.
func (s *Store) NewPullLog(interval time.Duration) *PullLog {
	return &PullLog{store: s, interval: interval, pending: map[pullKey]string{}, last: map[pullKey]time.Time{}}
}

// Pulled notes that actor pulled manifest dgst of repo.
func (p *PullLog) Pulled(repo string, dgst digest.Digest, actor string) {
	k := pullKey{repo, dgst}
	p.mu.Lock()
	defer p.mu.Unlock()
	if at, ok := p.last[k]; ok && time.Since(at) < p.interval {
		return
	}
	if _, ok := p.pending[k]; !ok && len(p.pending) >= maxPendingPulls {
		p.dropped.Add(1)
		return
	}
	p.pending[k] = actor
}

// Dropped counts the pulls not recorded because too many were pending.
func (p *PullLog) Dropped() int64 { return p.dropped.Load() }

// Flush appends the pending pulls.
func (p *PullLog) Flush(ctx context.Context) error {
	p.mu.Lock()
	pending := p.pending
	p.pending = map[pullKey]string{}
	now := time.Now()
	for k := range pending {
		p.last[k] = now
	}
	for k, at := range p.last {
		if now.Sub(at) >= p.interval {
			delete(p.last, k)
		}
	}
	p.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	return p.store.tx(ctx, func(tx *sql.Tx) error {
		for k, actor := range pending {
			if err := p.store.appendEvent(WithActor(ctx, actor), tx, EventImagePulled, k.repo, k.digest, ""); err != nil {
				return err
			}
		}
		return nil
	})
}

// Run flushes every period until ctx ends, and once more then.
func (p *PullLog) Run(ctx context.Context, period time.Duration, onError func(error)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			return
		case <-t.C:
			if err := p.Flush(ctx); err != nil && onError != nil {
				onError(err)
			}
		}
	}
}
