// Package lease runs background jobs on one instance at a time: the one
// that holds the job's lease in the store. Instances that share a store
// all run a Runner for each job; one takes the lease and runs the job,
// the others wait, and when the holder stops (or dies, and stops
// renewing), another takes over.
package lease

import (
	"context"
	"log/slog"
	"time"
)

// Leases is what a Runner needs of the store.
type Leases interface {
	AcquireJobLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseJobLease(ctx context.Context, name, holder string) error
}

// DefaultTTL is how long a lease outlives its holder's last renewal.
const DefaultTTL = 30 * time.Second

// Runner runs jobs under leases held by Holder.
type Runner struct {
	Leases Leases
	// Holder names this instance (its ID).
	Holder string
	// TTL is how long a lease outlives its last renewal (0: DefaultTTL);
	// it is renewed every third of it, and another instance takes over a
	// dead holder's job within about TTL plus a third.
	TTL time.Duration
	Log *slog.Logger
	// Held, when set, is told when this instance takes or loses a lease.
	Held func(name string, held bool)
}

func (r *Runner) ttl() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return DefaultTTL
}

// Run runs job while this instance holds lease name, until ctx ends. The
// job's context ends when the lease is lost: another took it, or the
// store could not be reached to renew it for two thirds of TTL (before
// another may take it, by the store's clock). Then Run waits for job to
// return and tries again; when ctx ends it releases the lease.
func (r *Runner) Run(ctx context.Context, name string, job func(context.Context)) {
	ttl := r.ttl()
	period := ttl / 3
	log := r.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lease", name)
	for {
		asked := time.Now()
		held, err := r.Leases.AcquireJobLease(ctx, name, r.Holder, ttl)
		if err != nil && ctx.Err() == nil {
			log.Warn("take the lease of a background job", "err", err)
		}
		if held && time.Since(asked) < ttl*2/3 {
			r.hold(ctx, log, name, asked, period, ttl, job)
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// hold runs job while the lease is renewed, and returns when it was lost
// or ctx ended (then releasing it). A watchdog stops the job two thirds of
// the TTL after the last renewal that was asked, however long a renewal
// under way takes: by then another instance may take the lease.
func (r *Runner) hold(ctx context.Context, log *slog.Logger, name string, acquired time.Time, period, ttl time.Duration, job func(context.Context)) {
	log.Info("took the lease: running the job here")
	if r.Held != nil {
		r.Held(name, true)
		defer r.Held(name, false)
	}
	jobCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); job(jobCtx) }()
	defer func() { stop(); <-done }()

	type renewal struct {
		asked time.Time
		held  bool
		err   error
	}
	renewals := make(chan renewal, 1)
	renewing := false
	// The renewal under way ends with the lease's time, or with ctx: its
	// goroutine never outlives hold by more than that.
	renewCtx, cancelRenewal := context.WithCancel(ctx)
	defer cancelRenewal()
	renewed := acquired
	tick := time.NewTicker(period)
	defer tick.Stop()
	watchdog := time.NewTimer(time.Until(renewed.Add(ttl * 2 / 3)))
	defer watchdog.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			<-done
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := r.Leases.ReleaseJobLease(rctx, name, r.Holder); err != nil {
				log.Warn("release the lease", "err", err)
			}
			return
		case <-done:
			// The job ended by itself (it should not): give the lease back
			// so that another instance runs it.
			log.Warn("the job of a lease ended; giving the lease back")
			if err := r.Leases.ReleaseJobLease(context.WithoutCancel(ctx), name, r.Holder); err != nil {
				log.Warn("release the lease", "err", err)
			}
			return
		case <-watchdog.C:
			log.Warn("could not renew the lease in time: stopping the job here")
			return
		case <-tick.C:
			if renewing {
				continue
			}
			renewing = true
			asked := time.Now()
			deadline := renewed.Add(ttl * 2 / 3)
			go func() {
				rctx, cancel := context.WithDeadline(renewCtx, deadline)
				defer cancel()
				held, err := r.Leases.AcquireJobLease(rctx, name, r.Holder, ttl)
				renewals <- renewal{asked, held, err}
			}()
		case rn := <-renewals:
			renewing = false
			switch {
			case rn.err == nil && rn.held:
				// It counts from when it was asked: the store's clock was
				// at least that far on.
				renewed = rn.asked
				watchdog.Reset(time.Until(renewed.Add(ttl * 2 / 3)))
			case rn.err == nil:
				log.Warn("lost the lease to another instance: stopping the job here")
				return
			default:
				log.Warn("renew the lease", "err", rn.err)
			}
		}
	}
}
