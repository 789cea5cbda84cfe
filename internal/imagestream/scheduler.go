package imagestream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/time/rate"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// Scheduled imports (the reference's scheduled image import controller).
// Tags whose spec says importPolicy.scheduled are imported again from
// their DockerImage source about once per interval. Streams are spread
// over Buckets buckets by a stable hash of their name, and one bucket is
// visited every interval/Buckets, so the checks spread evenly instead of
// all falling due at once. A token bucket caps the imports per minute; a
// pass that runs out of tokens stops, and the bucket's next pass starts
// where it stopped.
//
// Each tag goes through Service.ImportTag, which keeps the rules: an
// unchanged upstream digest adds no history, a new one moves the tag, a
// failure keeps the tag's image and is recorded as its ImportSuccess
// condition.
//
// One instance runs it today: the SQLite store belongs to one process
// (the data directory's lock), so no lease is taken. A store shared by
// several instances needs one, so that a tag is not imported by every
// instance (issue 15 adds leases).

// Buckets is how many buckets scheduled streams are spread over (the
// reference's default).
const Buckets = 4

// Scheduler defaults: the reference's scheduledImageImportMinimumIntervalSeconds
// and maxScheduledImageImportsPerMinute.
const (
	DefaultScheduledInterval  = 15 * time.Minute
	DefaultScheduledPerMinute = 60
)

// scheduledImportTimeout bounds one scheduled import of one tag.
const scheduledImportTimeout = 2 * time.Minute

// specPage is how many spec objects one list call reads.
const specPage = 500

// SpecLister lists the stored spec objects (the *store.Store does).
type SpecLister interface {
	ListObjects(ctx context.Context, q store.ObjectQuery) ([]store.Object, bool, int64, error)
}

// Scheduler imports scheduled tags again, bucket by bucket. Its fields
// are set before Run or Pass is first called; Run and Pass must not run
// at the same time.
type Scheduler struct {
	// Service imports (it must have an importer: SetImporter).
	Service *Service
	// Specs lists the streams' spec objects.
	Specs SpecLister
	// Interval is how often each scheduled stream is checked (0: 15 min).
	Interval time.Duration
	// PerMinute caps the imports: a token bucket of PerMinute per minute
	// with a burst of twice that, as the reference's
	// maxScheduledImageImportsPerMinute (0: 60; negative: no cap).
	PerMinute int
	// Log receives what happened (nil: slog.Default()).
	Log *slog.Logger
	// Settings, when set, is the registry's live settings: each pass runs
	// with the snapshot in effect when it starts, as a request does (the
	// destinations imports may reach, the storage configs go to).
	Settings interface{ Load() *settings.Settings }
	// Now is the clock of the token bucket (nil: time.Now).
	Now func() time.Time

	limiterOnce sync.Once
	limiter     *rate.Limiter // nil: no cap

	mu sync.Mutex
	// resume is, per bucket, the first tag the next pass imports: where
	// the last pass ran out of tokens (zero: from the start).
	resume [Buckets]candidateKey
}

// candidateKey orders a bucket's tags: by stream, then tag name.
type candidateKey struct {
	namespace, stream, tag string
}

func (k candidateKey) less(o candidateKey) bool {
	if k.namespace != o.namespace {
		return k.namespace < o.namespace
	}
	if k.stream != o.stream {
		return k.stream < o.stream
	}
	return k.tag < o.tag
}

// candidate is a tag to import.
type candidate struct {
	candidateKey
	from string
	opts ImportOptions
}

// Bucket is the bucket of stream name of project: a stable hash of
// "project/name" modulo Buckets.
func Bucket(project, name string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(project + "/" + name))
	return int(h.Sum32() % Buckets)
}

func (s *Scheduler) interval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return DefaultScheduledInterval
}

func (s *Scheduler) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Scheduler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Scheduler) perMinute() int {
	if s.PerMinute == 0 {
		return DefaultScheduledPerMinute
	}
	return s.PerMinute
}

// allow takes one import's token, false when there is none left.
func (s *Scheduler) allow() bool {
	s.limiterOnce.Do(func() {
		if n := s.perMinute(); n > 0 {
			s.limiter = rate.NewLimiter(rate.Limit(float64(n)/60), 2*n)
		}
	})
	return s.limiter == nil || s.limiter.AllowN(s.now(), 1)
}

// Run visits one bucket every Interval/Buckets, in turn, until ctx ends;
// the first visit is one step after the start.
func (s *Scheduler) Run(ctx context.Context) {
	step := s.interval() / Buckets
	s.log().Info("scheduled imports", "interval", s.interval(), "bucket_every", step)
	t := time.NewTicker(step)
	defer t.Stop()
	for bucket := 0; ; bucket = (bucket + 1) % Buckets {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx := ctx
		if s.Settings != nil {
			pctx = settings.With(ctx, s.Settings.Load())
		}
		n, err := s.Pass(pctx, bucket)
		if err != nil && ctx.Err() == nil {
			s.log().Warn("scheduled imports", "bucket", bucket, "err", err)
		}
		if n > 0 {
			s.log().Debug("scheduled imports", "bucket", bucket, "imported", n)
		}
	}
}

// Pass imports the scheduled tags of the streams in bucket once, up to
// the tokens left, and returns how many imports succeeded (whether the
// image changed or not). An import's failure is recorded on its tag and
// logged, not returned; the error is a listing that failed, or an
// importer that is missing. Nothing is held across the imports: the
// spec objects are listed first (each page in its own read), then the
// tags imported one by one.
func (s *Scheduler) Pass(ctx context.Context, bucket int) (imported int, err error) {
	if bucket < 0 || bucket >= Buckets {
		return 0, fmt.Errorf("bucket %d: there are %d: %w", bucket, Buckets, errdefs.ErrInvalidArgument)
	}
	if s.Service == nil || s.Service.importer == nil {
		return 0, ErrImportNeeded
	}
	cands, err := s.candidates(ctx, bucket)
	if err != nil {
		return 0, err
	}
	// Start where the last pass of the bucket ran out of tokens, so that
	// a bucket with more tags than tokens does not starve its last ones.
	s.mu.Lock()
	from := s.resume[bucket]
	s.mu.Unlock()
	if start := slices.IndexFunc(cands, func(c candidate) bool { return !c.less(from) }); start > 0 {
		cands = slices.Concat(cands[start:], cands[:start])
	}
	next := candidateKey{}
	for i, c := range cands {
		if ctx.Err() != nil {
			return imported, ctx.Err()
		}
		if !s.allow() {
			next = c.candidateKey
			s.log().Info("scheduled imports: the rate limit is reached; the rest of the bucket waits for its next pass",
				"bucket", bucket, "left", len(cands)-i, "per_minute", s.perMinute())
			break
		}
		if s.importOne(ctx, c) {
			imported++
		}
	}
	s.mu.Lock()
	s.resume[bucket] = next
	s.mu.Unlock()
	return imported, nil
}

// candidates are the scheduled tags of the streams in bucket, in order.
func (s *Scheduler) candidates(ctx context.Context, bucket int) ([]candidate, error) {
	var out []candidate
	q := store.ObjectQuery{Group: imagev1.GroupName, Resource: "imagestreams", Limit: specPage}
	for {
		objs, more, _, err := s.Specs.ListObjects(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list the image streams: %w", err)
		}
		for _, o := range objs {
			if Bucket(o.Namespace, o.Name) != bucket {
				continue
			}
			var is imagev1.ImageStream
			if err := json.Unmarshal(o.Body, &is); err != nil {
				s.log().Warn("scheduled imports: an unreadable image stream spec", "namespace", o.Namespace, "name", o.Name, "err", err)
				continue
			}
			var tags []candidate
			for _, t := range is.Spec.Tags {
				if t.From == nil || t.From.Kind != imagev1.KindDockerImage || t.Reference || !t.ImportPolicy.Scheduled {
					continue
				}
				tags = append(tags, candidate{
					candidateKey: candidateKey{namespace: o.Namespace, stream: o.Name, tag: t.Name},
					from:         t.From.Name,
					// Who wrote the spec is not known here: the
					// cluster's list of registries imports may reach
					// applies, whoever that was.
					opts: ImportOptions{Insecure: t.ImportPolicy.Insecure, PreserveOriginal: t.ImportPolicy.ImportMode == "PreserveOriginal",
						CheckImportList: true},
				})
			}
			slices.SortFunc(tags, func(a, b candidate) int {
				if a.tag < b.tag {
					return -1
				}
				if a.tag > b.tag {
					return 1
				}
				return 0
			})
			out = append(out, tags...)
		}
		if !more || len(objs) == 0 {
			return out, nil
		}
		last := objs[len(objs)-1]
		q.After = store.ObjectCursor{Namespace: last.Namespace, Name: last.Name}
	}
}

// importOne imports one tag under its own deadline and reports success.
func (s *Scheduler) importOne(ctx context.Context, c candidate) bool {
	log := s.log().With("namespace", c.namespace, "stream", c.stream, "tag", c.tag, "from", c.from)
	if s.pinnedAndCurrent(ctx, c) {
		log.Debug("scheduled import skipped: the tag is pinned by digest and has that image")
		return false
	}
	ictx, cancel := context.WithTimeout(ctx, scheduledImportTimeout)
	f, err := s.Service.ImportTag(ictx, c.namespace, c.stream, c.tag, c.from, c.opts)
	timedOut := errors.Is(ictx.Err(), context.DeadlineExceeded)
	cancel()
	var ie *ImportError
	switch {
	case err == nil:
		log.Debug("scheduled import", "image", f.Top())
		return true
	case ctx.Err() != nil:
		return false // stopping: nothing to say about the tag
	case errors.As(err, &ie):
		log.Debug("scheduled import failed", "reason", ie.Reason, "err", ie.Message)
	case timedOut:
		// The deadline also ended the recording of the failure; record it
		// under the caller's context, as ImportTag records the others.
		msg := fmt.Sprintf("the import from %s took more than %s", c.from, scheduledImportTimeout)
		if cerr := s.Service.tags.SetTagCondition(ctx, c.namespace+"/"+c.stream, c.tag, store.TagCondition{
			Type: store.ConditionImportSuccess, Status: "False", Reason: "InternalError", Message: msg}); cerr != nil {
			log.Warn("scheduled import timed out; recording it failed", "err", cerr)
		} else {
			log.Debug("scheduled import failed", "reason", "InternalError", "err", msg)
		}
	default:
		log.Warn("scheduled import", "err", err)
	}
	return false
}

// pinnedAndCurrent says whether the tag's source names an image by
// digest that the tag already points at: nothing upstream can change it
// (the reference skips those too).
func (s *Scheduler) pinnedAndCurrent(ctx context.Context, c candidate) bool {
	ref, err := name.ParseReference(c.from, name.Insecure)
	if err != nil {
		return false
	}
	d, ok := ref.(name.Digest)
	if !ok {
		return false
	}
	history, err := s.Service.tags.TagHistory(ctx, c.namespace+"/"+c.stream, c.tag)
	return err == nil && len(history) > 0 && string(history[0].Digest) == d.DigestStr()
}
