package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/instance"
	"github.com/berth-registry/berth/internal/limiter"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/reqlog"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// bootstrapSpec is the Config a registry starts with when it has none:
// Managed, one instance, the storage `berth serve --storage` names
// (memory is an emptyDir, the filesystem the default volume), the log
// level of --log-level.
func bootstrapSpec(storageFlag string, level slog.Level) imageregistryv1.ConfigSpec {
	spec := imageregistryv1.ConfigSpec{
		ManagementState: imageregistryv1.Managed, LogLevel: imageregistryv1.LogNormal,
		OperatorLogLevel: imageregistryv1.LogNormal, Replicas: 1, RolloutStrategy: "RollingUpdate",
	}
	// --log-level as the reference's levels: debug and below is Debug, warn
	// and above the deprecated logging 1 (warn).
	switch {
	case level <= slog.LevelDebug:
		spec.LogLevel = imageregistryv1.LogDebug
	case level >= slog.LevelWarn:
		spec.Logging = 1
	}
	spec.Storage = storageOfDriver(storageFlag)
	return spec
}

func storageOfDriver(name string) imageregistryv1.StorageConfig {
	if name == "memory" {
		return imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}
	}
	return imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: imageregistryv1.DefaultClaim}}
}

func describeStorage(s imageregistryv1.StorageConfig) string {
	switch {
	case s.PVC != nil:
		return "pvc volume " + s.PVC.Claim
	case s.EmptyDir != nil:
		return "emptyDir"
	case s.S3 != nil:
		return "s3 bucket " + s.S3.Bucket
	case s.GCS != nil:
		return "gcs bucket " + s.GCS.Bucket
	case s.Azure != nil:
		return "azure container " + s.Azure.Container
	case s.Swift != nil:
		return "swift container " + s.Swift.Container
	}
	return strings.ToLower(strings.Join(s.StorageTypes(), ","))
}

// newLimiter is the request limiter of spec.requests, in front of
// everything but health probes, the metrics scrape and requests that
// stay open by design (watches, followed logs).
func newLimiter(m *metrics.Metrics) *limiter.Limiter {
	return limiter.New(rejectRequest, exemptFromLimits, limiterMetrics{
		limiter.Read: m.LimiterObserver(string(limiter.Read)), limiter.Write: m.LimiterObserver(string(limiter.Write)),
	})
}

// limiterMetrics feeds the limiter's counts to its metrics.
type limiterMetrics map[limiter.Kind]metrics.LimiterMetrics

func (lm limiterMetrics) Running(k limiter.Kind, delta int) { lm[k].Running.Add(float64(delta)) }
func (lm limiterMetrics) Queued(k limiter.Kind, delta int)  { lm[k].Queued.Add(float64(delta)) }
func (lm limiterMetrics) Rejected(k limiter.Kind)           { lm[k].Rejected.Inc() }

// followSettings keeps the metrics that mirror a setting (read-only) in
// step with the snapshot in effect.
func followSettings(ctx context.Context, current *settings.Holder, m *metrics.Metrics, meta *store.Store) {
	previous := ""
	for {
		changed := current.Changed()
		s := current.Load()
		m.SetReadOnly(s.ReadOnly)
		meta.SetTagHistoryLimit(s.TagHistoryLimit)
		if id := s.Storage.ID; id != previous {
			m.SetStorage(storageTypeOf(id), previous != "" && id != "")
			previous = id
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// exemptFromLimits names the requests the limiter lets through: health
// probes and the metrics scrape. A watch and a followed pod log take a
// read slot like any read and give it back once they stream
// (limiter.Detach), which no query parameter can claim on its own.
func exemptFromLimits(r *http.Request) bool {
	switch r.URL.Path {
	case "/", "/healthz", "/readyz", "/extensions/v2/metrics":
		return true
	}
	return false
}

// rejectRequest refuses a request the limiter turned away. The limits
// themselves are not told: the limiter runs before authentication, and
// they are the administrator's business (the log at debug, the metrics).
func rejectRequest(w http.ResponseWriter, r *http.Request, kind limiter.Kind, l settings.Limits) {
	msg := fmt.Sprintf("too many requests: the registry's %s limit is reached; retry later", kind)
	if e := reqlog.FromContext(r.Context()); e.Debug() {
		e.Decide(fmt.Sprintf("refused by the %s limit (maxRunning %d, maxInQueue %d, maxWaitInQueue %s)",
			kind, l.MaxRunning, l.MaxInQueue, l.MaxWait))
	}
	if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
		registry.WriteTooManyRequests(w, r, msg)
		return
	}
	w.Header().Set("Retry-After", "1")
	for _, p := range apiserver.Paths {
		if r.URL.Path == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p)) {
			apiserver.WriteStatus(w, http.StatusTooManyRequests, "TooManyRequests", msg)
			return
		}
	}
	http.Error(w, msg, http.StatusTooManyRequests)
}

// readyInstances counts the instances whose heartbeat says they serve:
// the Config's status.readyReplicas.
func readyInstances(ctx context.Context, meta *store.Store) (int, error) {
	rows, err := meta.Instances(ctx)
	if err != nil {
		return 0, err
	}
	now, ready := time.Now(), 0
	for _, in := range rows {
		if in.ReadyAt(now, instance.StaleAfter) {
			ready++
		}
	}
	return ready, nil
}

// storageTypeOf is the reference's name of the type of storage id.
func storageTypeOf(id string) string {
	kind, _, _ := strings.Cut(id, ":")
	switch kind {
	case "pvc":
		return "PVC"
	case "emptydir":
		return "EmptyDir"
	case "s3", "gcs":
		return strings.ToUpper(kind)
	case "azure", "swift":
		return strings.ToUpper(kind[:1]) + kind[1:]
	}
	return kind
}
