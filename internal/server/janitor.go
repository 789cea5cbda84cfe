package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/internal/instance"
	"github.com/berth-registry/berth/internal/store"
)

// The janitor's hourly jobs (expired upload sessions are in server.go with
// the crash recovery they share).

// every runs job each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, job func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			job(ctx)
		}
	}
}

// expireTokens deletes tokens a day after they expired or were revoked
// (kept that long so a client is told "expired", not "unknown").
func expireTokens(ctx context.Context, meta *store.Store, log *slog.Logger) {
	n, err := meta.DeleteExpiredTokens(ctx, time.Now().Add(-24*time.Hour))
	if err != nil {
		log.Warn("delete expired tokens", "err", err)
	} else if n > 0 {
		log.Info("deleted expired tokens", "count", n)
	}
}

// keptEvents is how much of the change history watches can replay from.
const keptEvents = 100000

// pruneEvents bounds the event history; a watch from before it is told
// 410 Gone and lists again.
func pruneEvents(ctx context.Context, meta *store.Store, log *slog.Logger) {
	n, err := meta.PruneEvents(ctx, keptEvents)
	if err != nil {
		log.Warn("prune events", "err", err)
	} else if n > 0 {
		log.Info("pruned old events", "count", n)
	}
}

// pruneAudit deletes the audit rows older than retention.
func pruneAudit(ctx context.Context, meta *store.Store, retention time.Duration, log *slog.Logger) {
	n, err := meta.PruneAudit(ctx, time.Now().Add(-retention))
	if err != nil {
		log.Warn("prune the audit log", "err", err)
	} else if n > 0 {
		log.Info("pruned old audit rows", "count", n, "retention", retention)
	}
}

// forgetInstances deletes the heartbeat rows of instances that died
// without removing theirs (killed, or their machine lost) and have been
// silent for instance.ForgetAfter; until then they show as pods that are
// not ready.
func forgetInstances(ctx context.Context, meta *store.Store, log *slog.Logger) {
	n, err := meta.DeleteStaleInstances(ctx, time.Now().Add(-instance.ForgetAfter))
	if err != nil {
		log.Warn("forget silent instances", "err", err)
	} else if n > 0 {
		log.Info("forgot silent instances", "count", n, "silent_for", instance.ForgetAfter)
	}
}

// forgetLoginFailures forgets the failed logins a shared store counted
// that are out of the window and locked nothing out.
func forgetLoginFailures(ctx context.Context, meta *store.Store, window time.Duration, log *slog.Logger) {
	n, err := meta.DeleteStaleLoginFailures(ctx, time.Now().Add(-window))
	if err != nil {
		log.Warn("forget old failed logins", "err", err)
	} else if n > 0 {
		log.Info("forgot old failed logins", "count", n)
	}
}
