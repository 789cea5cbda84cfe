package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/prune"
	"github.com/berth-registry/berth/internal/store"
)

// ImagePrunerKey names the ImagePruner the registry honours.
var ImagePrunerKey = store.ObjectKey{Group: imageregistryv1.GroupName, Resource: imageregistryv1.ImagePrunerResource, Name: imageregistryv1.ConfigName}

// Pruner runs one image pruning (prune.Pruner).
type Pruner interface {
	Run(ctx context.Context, opts prune.Options) (prune.Report, error)
}

// ImagePrunerController runs the ImagePruner's schedule, where the
// reference's operator makes a CronJob: it creates the ImagePruner as
// that operator bootstraps it, prunes when the schedule says (on the
// instance holding its lease), and reports in its status.
type ImagePrunerController struct {
	Store  Store
	Pruner Pruner
	Log    *slog.Logger
	// Now is the clock (time.Now when nil); Poll how often the schedule
	// is looked at besides every change (30s when 0).
	Now  func() time.Time
	Poll time.Duration
}

// Run follows the ImagePruner until ctx ends.
func (c *ImagePrunerController) Run(ctx context.Context) {
	poll := c.Poll
	if poll == 0 {
		poll = 30 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		changed := c.Store.Changed()
		if err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.Log.Warn("image pruner", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
		}
	}
}

func (c *ImagePrunerController) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

// Pass makes one pass: read the ImagePruner (creating it when missing),
// prune if a scheduled time has come since the last run, write status.
func (c *ImagePrunerController) Pass(ctx context.Context) error {
	rec, err := c.Store.GetObject(ctx, ImagePrunerKey)
	if errors.Is(err, errdefs.ErrNotFound) {
		if rec, err = c.create(ctx); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("read the ImagePruner: %w", err)
	}
	p := &imageregistryv1.ImagePruner{}
	if err := json.Unmarshal(rec.Body, p); err != nil {
		return fmt.Errorf("decode the ImagePruner: %w", err)
	}
	status := p.Status
	status.ObservedGeneration = p.Generation
	now := c.now()
	schedule, keepRevisions, keepYounger, keepSucceeded, keepFailed := p.Spec.Effective()
	suspended := p.Spec.Suspend != nil && *p.Spec.Suspend
	problems := imageregistryv1.ValidateImagePruner(p)
	var due time.Time
	if len(problems) == 0 && !suspended {
		sched, err := imageregistryv1.ParseSchedule(schedule)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			// The first time after the last run's (or the pruner's
			// creation): a schedule missed while no instance ran is run
			// once, late, as a CronJob within its starting deadline.
			from := p.CreationTimestamp.Time
			if len(status.Runs) > 0 {
				from = status.Runs[0].Scheduled.Time
			}
			if next := sched.Next(from); !next.After(now) {
				due = next
			}
		}
	}
	if !due.IsZero() {
		run := c.prune(ctx, p, due, keepRevisions, keepYounger)
		status.Runs = keepRuns(append([]imageregistryv1.ImagePrunerRun{run}, status.Runs...), keepSucceeded, keepFailed)
	}
	status.Conditions = imagePrunerConditions(problems, suspended, status.Runs, p.Status.Conditions, now)
	return c.writeStatus(ctx, rec, p, status)
}

// prune runs one scheduled pruning.
func (c *ImagePrunerController) prune(ctx context.Context, p *imageregistryv1.ImagePruner, scheduled time.Time, keepRevisions int, keepYounger time.Duration) imageregistryv1.ImagePrunerRun {
	run := imageregistryv1.ImagePrunerRun{Scheduled: metav1.NewTime(scheduled), Started: metav1.NewTime(c.now().Truncate(time.Second))}
	rep, err := c.Pruner.Run(ctx, prune.Options{KeepTagRevisions: keepRevisions, KeepYoungerThan: keepYounger, Confirm: true})
	finished := metav1.NewTime(c.now().Truncate(time.Second))
	run.Finished, run.Revisions, run.Images = &finished, rep.Revisions, rep.Images
	switch {
	case err != nil:
		run.Message = "the pruning stopped: " + err.Error()
	case len(rep.Errors) > 0:
		run.Message = fmt.Sprintf("%d repositories could not be pruned; the first: %s", len(rep.Errors), rep.Errors[0])
	default:
		run.Succeeded = true
		run.Message = fmt.Sprintf("removed %d history entries and %d images in %d repositories", rep.Revisions, rep.Images, len(rep.Repositories))
	}
	attrs := []any{"scheduled", scheduled, "revisions", rep.Revisions, "images", rep.Images, "repositories", len(rep.Repositories)}
	if run.Succeeded {
		c.Log.Info("pruned images", attrs...)
	} else {
		c.Log.Warn("image pruning failed", append(attrs, "message", run.Message)...)
	}
	if p.Spec.LogLevel != "" && p.Spec.LogLevel != imageregistryv1.LogNormal {
		for _, r := range rep.Repositories {
			c.Log.Info("pruned images in a repository", "repository", r.Repository, "revisions", len(r.Revisions), "images", len(r.Images))
		}
	}
	return run
}

// keepRuns keeps the newest succeeded and failed runs, as many of each as
// the history limits say.
func keepRuns(runs []imageregistryv1.ImagePrunerRun, succeeded, failed int) []imageregistryv1.ImagePrunerRun {
	var out []imageregistryv1.ImagePrunerRun
	for _, r := range runs {
		if r.Succeeded && succeeded > 0 {
			out, succeeded = append(out, r), succeeded-1
		} else if !r.Succeeded && failed > 0 {
			out, failed = append(out, r), failed-1
		}
	}
	return out
}

// imagePrunerConditions are the reference's: Available (the schedule is
// in place), Scheduled, Failed (the last run) and Degraded.
func imagePrunerConditions(problems []string, suspended bool, runs []imageregistryv1.ImagePrunerRun, old []imageregistryv1.OperatorCondition, now time.Time) []imageregistryv1.OperatorCondition {
	cond := func(t, status, reason, message string) imageregistryv1.OperatorCondition {
		c := imageregistryv1.OperatorCondition{Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))}
		for _, o := range old {
			if o.Type == t && o.Status == status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	var out []imageregistryv1.OperatorCondition
	if len(problems) > 0 {
		msg := "Error: the ImagePruner is invalid: " + problems[0]
		return append(out,
			cond(imageregistryv1.ConditionAvailable, "False", "Error", "Pruner schedule does not exist: "+problems[0]),
			cond(imageregistryv1.ConditionScheduled, "False", "Error", "The pruner cannot be scheduled"),
			cond(imageregistryv1.ConditionFailed, "False", "Complete", "No pruning failed"),
			cond(imageregistryv1.ConditionDegraded, "True", "SyncError", msg))
	}
	out = append(out, cond(imageregistryv1.ConditionAvailable, "True", "AsExpected", "Pruner schedule has been created"))
	if suspended {
		out = append(out, cond(imageregistryv1.ConditionScheduled, "False", "Suspended", "The pruner job has been suspended"))
	} else {
		out = append(out, cond(imageregistryv1.ConditionScheduled, "True", "Scheduled", "The pruner job has been scheduled"))
	}
	if len(runs) > 0 && !runs[0].Succeeded {
		return append(out,
			cond(imageregistryv1.ConditionFailed, "True", "JobFailed", runs[0].Message),
			cond(imageregistryv1.ConditionDegraded, "True", "JobFailed", runs[0].Message))
	}
	return append(out,
		cond(imageregistryv1.ConditionFailed, "False", "Complete", "Pruner completed successfully"),
		cond(imageregistryv1.ConditionDegraded, "False", "AsExpected", ""))
}

// create stores the ImagePruner as the reference's operator bootstraps
// it.
func (c *ImagePrunerController) create(ctx context.Context) (store.Object, error) {
	f, three, keep := false, int32(imageregistryv1.DefaultJobsHistoryLimit), imageregistryv1.DefaultKeepTagRevisions
	p := &imageregistryv1.ImagePruner{Spec: imageregistryv1.ImagePrunerSpec{
		Suspend: &f, KeepTagRevisions: &keep, SuccessfulJobsHistoryLimit: &three, FailedJobsHistoryLimit: &three,
		IgnoreInvalidImageReferences: true,
	}}
	p.Name = imageregistryv1.ConfigName
	p.UID = typesUID()
	p.Generation = 1
	p.CreationTimestamp = metav1.NewTime(c.now().Truncate(time.Second))
	rec, err := encodePruner(p)
	if err != nil {
		return store.Object{}, err
	}
	created, err := c.Store.CreateObject(ctx, rec)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		return c.Store.GetObject(ctx, ImagePrunerKey)
	}
	if err != nil {
		return store.Object{}, fmt.Errorf("create the ImagePruner: %w", err)
	}
	c.Log.Info("created the ImagePruner with defaults", "name", p.Name)
	return created, nil
}

// writeStatus stores status unless it says what the stored one says.
func (c *ImagePrunerController) writeStatus(ctx context.Context, rec store.Object, p *imageregistryv1.ImagePruner, status imageregistryv1.ImagePrunerStatus) error {
	if normalizeJSON(status) == normalizeJSON(p.Status) {
		return nil
	}
	p.Status = status
	out, err := encodePruner(p)
	if err != nil {
		return err
	}
	if _, err := c.Store.UpdateObject(ctx, out, rec.ResourceVersion); err != nil {
		if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrNotFound) {
			// Changed meanwhile: the next pass writes (a run it made is
			// not lost: its time is not in the stored status, so the next
			// pass sees the schedule due and runs once more at most).
			return nil
		}
		return fmt.Errorf("write the ImagePruner's status: %w", err)
	}
	return nil
}

func encodePruner(p *imageregistryv1.ImagePruner) (store.Object, error) {
	p.APIVersion = imageregistryv1.GroupName + "/v1"
	p.Kind = imageregistryv1.ImagePrunerKind
	p.ResourceVersion = ""
	p.ManagedFields = nil
	body, err := json.Marshal(p)
	if err != nil {
		return store.Object{}, fmt.Errorf("encode the ImagePruner: %w", err)
	}
	return store.Object{ObjectKey: ImagePrunerKey, UID: string(p.UID), Created: p.CreationTimestamp.Time, Labels: p.Labels, Body: body}, nil
}
