// Package metrics holds the registry's Prometheus metrics on a registry of
// its own (not the process-wide default, so nothing a library registers
// leaks into the scrape and tests can run several servers side by side),
// the HTTP middleware and blob driver wrapper that feed them, and the
// endpoint that serves them at /extensions/v2/metrics.
//
// The names of the reference registry are kept (imageregistry_*), with the
// reference's summaries and labels, so that dashboards and alerts written
// for it read Berth; Berth's own metrics are prefixed berth_.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/buildinfo"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served, as on the reference registry.
const Path = "/extensions/v2/metrics"

// objectives are the quantiles of every summary, the reference's.
var objectives = map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001}

// Metrics is one server's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry

	inFlight     prometheus.Gauge
	requests     *prometheus.CounterVec
	duration     *prometheus.SummaryVec
	requestSize  prometheus.Summary
	responseSize prometheus.Summary
	bytesPushed  prometheus.Counter
	bytesPulled  prometheus.Counter

	storageDuration *prometheus.SummaryVec
	storageErrors   *prometheus.CounterVec
	storeCalls      *prometheus.HistogramVec

	limiterQueued   *prometheus.GaugeVec
	limiterRunning  *prometheus.GaugeVec
	limiterRejected *prometheus.CounterVec
	readOnly        prometheus.Gauge
	storageType     *prometheus.GaugeVec
	reconfigured    prometheus.Counter

	webhookDeliveries *prometheus.CounterVec
	webhookQueue      prometheus.Gauge
	webhookLost       prometheus.Counter

	jobLeases *prometheus.GaugeVec

	gcRuns        *prometheus.CounterVec
	gcDeleted     *prometheus.CounterVec
	gcBytesFreed  prometheus.Counter
	gcDuration    prometheus.Histogram
	gcQueue       *prometheus.GaugeVec
	gcLastSuccess prometheus.Gauge
}

// New returns the metrics of one server, with the Go runtime's and the
// process's.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imageregistry_http_in_flight_requests",
			Help: "A gauge of requests currently being served by the registry.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imageregistry_http_requests_total",
			Help: "A counter for requests to the registry.",
		}, []string{"code", "method"}),
		duration: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:       "imageregistry_http_request_duration_seconds",
			Help:       "A summary of latencies for requests to the registry, by method.",
			Objectives: objectives,
		}, []string{"method"}),
		requestSize: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:       "imageregistry_http_request_size_bytes",
			Help:       "A summary of request sizes (the bytes of their bodies that were read).",
			Objectives: objectives,
		}),
		responseSize: prometheus.NewSummary(prometheus.SummaryOpts{
			Name:       "imageregistry_http_response_size_bytes",
			Help:       "A summary of response sizes (the bytes of their bodies).",
			Objectives: objectives,
		}),
		bytesPushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_registry_bytes_pushed_total",
			Help: "Bytes of request bodies read by /v2 writes (blob uploads and manifests).",
		}),
		bytesPulled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_registry_bytes_pulled_total",
			Help: "Bytes of response bodies of successful /v2 reads (blobs, manifests, listings).",
		}),
		storageDuration: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:       "imageregistry_storage_duration_seconds",
			Help:       "A summary of latencies of blob storage driver operations.",
			Objectives: objectives,
		}, []string{"operation"}),
		storageErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imageregistry_storage_errors_total",
			Help: "A counter of errors of blob storage driver operations, by kind (code).",
		}, []string{"operation", "code"}),
		storeCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_store_call_duration_seconds",
			Help: "Latency of the metadata store calls the registry makes, by call.",
			// From a cached read (tens of µs) to a write queued behind
			// others' fsyncs.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"call"}),
		limiterQueued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_limiter_queued_requests",
			Help: "Requests waiting for a slot of the request limiter, by kind (read or write).",
		}, []string{"kind"}),
		limiterRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_limiter_running_requests",
			Help: "Requests holding a slot of the request limiter, by kind (read or write).",
		}, []string{"kind"}),
		limiterRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_limiter_rejected_requests_total",
			Help: "Requests the request limiter turned away (429), by kind (read or write).",
		}, []string{"kind"}),
		readOnly: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_registry_read_only",
			Help: "1 while the registry refuses writes (read-only mode), else 0.",
		}),
		// The reference operator's names.
		storageType: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "image_registry_storage_type",
			Help: "1 for the type of the storage in effect (EmptyDir, PVC, S3, …).",
		}, []string{"storage"}),
		reconfigured: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "image_registry_operator_storage_reconfigured_total",
			Help: "Times the storage in effect changed to another one.",
		}),
		webhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result: Delivered, Retrying (failed, to be retried) or Failed (given up).",
		}, []string{"result"}),
		webhookQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_webhook_queue_depth",
			Help: "Webhook deliveries waiting to be sent or retried.",
		}),
		webhookLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_webhook_events_lost_total",
			Help: "Events pruned from the log before webhooks were queued for them.",
		}),
		jobLeases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_job_lease_held",
			Help: "1 while this instance holds the lease of a background job (and runs it), else 0.",
		}, []string{"lease"}),
		gcRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_runs_total",
			Help: "Garbage collections run here, by result: success, error (some deletions failed; the next run retries them) or dry_run.",
		}, []string{"result"}),
		gcDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_gc_deleted_total",
			Help: "Objects garbage collection deleted, by artifact: manifest or blob.",
		}, []string{"artifact"}),
		gcBytesFreed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_gc_storage_deleted_bytes_total",
			Help: "Bytes of blobs garbage collection deleted from storage.",
		}),
		gcDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_gc_run_duration_seconds",
			Help:    "How long garbage collections took.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		gcQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "berth_gc_queue_depth",
			Help: "Unreferenced objects still within the grace period at the end of the last collection (what the next ones may delete), by artifact.",
		}, []string{"artifact"}),
		gcLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_gc_last_success_timestamp_seconds",
			Help: "When the last garbage collection that deleted all it took ended (Unix time; 0 before the first).",
		}),
	}
	commit, version, major, minor := buildInfo()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "imageregistry_build_info",
		Help:        "A metric with a constant '1' value labeled by major, minor, git commit & git version from which the image registry was built.",
		ConstLabels: prometheus.Labels{"gitCommit": commit, "gitVersion": version, "major": major, "minor": minor},
	})
	build.Set(1)
	m.reg.MustRegister(m.inFlight, m.requests, m.duration, m.requestSize, m.responseSize, m.bytesPushed, m.bytesPulled,
		m.storageDuration, m.storageErrors, m.storeCalls, m.limiterQueued, m.limiterRunning, m.limiterRejected, m.readOnly, m.storageType, m.reconfigured, build,
		m.webhookDeliveries, m.webhookQueue, m.webhookLost, m.jobLeases,
		m.gcRuns, m.gcDeleted, m.gcBytesFreed, m.gcDuration, m.gcQueue, m.gcLastSuccess,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The limiter's series exist from the start, at 0, so that dashboards
	// and alerts over them have something to read before it is wired.
	for _, kind := range []string{"read", "write"} {
		m.LimiterObserver(kind)
	}
	for _, result := range []string{"success", "error", "dry_run"} {
		m.gcRuns.WithLabelValues(result)
	}
	for _, artifact := range []string{"manifest", "blob"} {
		m.gcDeleted.WithLabelValues(artifact)
		m.gcQueue.WithLabelValues(artifact)
	}
	for _, result := range []string{"Delivered", "Retrying", "Failed"} {
		m.webhookDeliveries.WithLabelValues(result)
	}
	return m
}

// JobLeaseHeld records whether this instance holds the lease of job (and
// runs it).
func (m *Metrics) JobLeaseHeld(job string, held bool) {
	v := 0.0
	if held {
		v = 1
	}
	m.jobLeases.WithLabelValues(job).Set(v)
}

// GC is garbage collection's metrics.
func (m *Metrics) GC() GCMetrics { return GCMetrics{m} }

// GCMetrics records garbage collections (gc.Metrics).
type GCMetrics struct{ m *Metrics }

// Ran records a collection: its result, its duration, what it deleted
// and what it left within the grace period.
func (g GCMetrics) Ran(result string, took time.Duration, manifests, blobs int, bytes int64, pendingManifests, pendingBlobs int64) {
	g.m.gcRuns.WithLabelValues(result).Inc()
	if result == "dry_run" {
		return
	}
	g.m.gcDuration.Observe(took.Seconds())
	g.m.gcDeleted.WithLabelValues("manifest").Add(float64(manifests))
	g.m.gcDeleted.WithLabelValues("blob").Add(float64(blobs))
	g.m.gcBytesFreed.Add(float64(bytes))
	g.m.gcQueue.WithLabelValues("manifest").Set(float64(pendingManifests))
	g.m.gcQueue.WithLabelValues("blob").Set(float64(pendingBlobs))
	if result == "success" {
		g.m.gcLastSuccess.SetToCurrentTime()
	}
}

// Webhooks are the webhook dispatcher's counters.
func (m *Metrics) Webhooks() WebhookCounters { return WebhookCounters{m} }

// WebhookCounters counts webhook deliveries (webhook.Counters).
type WebhookCounters struct{ m *Metrics }

// Delivered counts an attempt by its result.
func (c WebhookCounters) Delivered(result string) {
	c.m.webhookDeliveries.WithLabelValues(result).Inc()
}

// QueueDepth sets how many deliveries wait.
func (c WebhookCounters) QueueDepth(n int64) { c.m.webhookQueue.Set(float64(n)) }

// Lost counts events pruned before they were queued.
func (c WebhookCounters) Lost(n int64) { c.m.webhookLost.Add(float64(n)) }

// Gatherer is what the metrics are read from (the endpoint, tests).
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the metrics in Prometheus' text format (or what the
// scraper negotiates). It checks no access: see Endpoint.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// LimiterMetrics are the series a request limiter of one kind feeds.
type LimiterMetrics struct {
	// Queued is the number of requests waiting for a slot; Running the
	// number holding one.
	Queued, Running prometheus.Gauge
	// Rejected counts requests turned away (queue full, waited too long,
	// client gone while waiting).
	Rejected prometheus.Counter
}

// LimiterObserver returns the series of the request limiter of kind,
// "read" (GET, HEAD, OPTIONS) or "write" (every other method), for the
// limiter to move.
func (m *Metrics) LimiterObserver(kind string) LimiterMetrics {
	return LimiterMetrics{
		Queued:   m.limiterQueued.WithLabelValues(kind),
		Running:  m.limiterRunning.WithLabelValues(kind),
		Rejected: m.limiterRejected.WithLabelValues(kind),
	}
}

// EmptyDirUsage serves the bytes the emptyDir storage holds and its
// limit, read from usage at each scrape.
func (m *Metrics) EmptyDirUsage(usage func() (used, limit int64)) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_emptydir_bytes",
			Help: "Bytes the emptyDir storage holds in memory (blobs and uploads).",
		}, func() float64 { used, _ := usage(); return float64(used) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_emptydir_limit_bytes",
			Help: "The most bytes the emptyDir storage may hold (berth serve --emptydir-size-limit); 0: no limit.",
		}, func() float64 { _, limit := usage(); return float64(limit) }),
	)
}

// SetReadOnly records whether the registry refuses writes (the operator's
// read-only mode sets it as the setting changes).
func (m *Metrics) SetReadOnly(readOnly bool) {
	if readOnly {
		m.readOnly.Set(1)
	} else {
		m.readOnly.Set(0)
	}
}

// SetStorage records the type of the storage in effect ("PVC",
// "EmptyDir", …; "" for none) and, when changed says it replaced another,
// counts the reconfiguration.
func (m *Metrics) SetStorage(storageType string, changed bool) {
	m.storageType.Reset()
	if storageType != "" {
		m.storageType.WithLabelValues(storageType).Set(1)
	}
	if changed {
		m.reconfigured.Inc()
	}
}

// ObserveStoreCall records how long a call of the metadata store took, by
// the call's name (LocateBlob, PutManifest, …).
func (m *Metrics) ObserveStoreCall(call string, d time.Duration) {
	m.storeCalls.WithLabelValues(call).Observe(d.Seconds())
}

// buildInfo names the build from what the Go toolchain recorded: the
// module version (a tag, or a pseudo-version holding the commit) and the
// VCS revision, "unknown" where the build recorded none (go build
// -buildvcs=false, a build outside a checkout).
func buildInfo() (commit, version, major, minor string) {
	commit, version = "unknown", "unknown"
	bi := buildinfo.Read()
	if bi.Version != "" {
		version = bi.Version
	}
	if bi.Revision != "" {
		commit = bi.ShortRevision()
	}
	if version == "unknown" && commit != "unknown" {
		version = "v0.0.0+" + commit
		if bi.Modified {
			version += "-dirty"
		}
	}
	major, minor = semverParts(version)
	return commit, version, major, minor
}

// semverParts returns the major and minor numbers of a version such as
// v1.2.3-rc.1+meta ("" when it is not one).
func semverParts(v string) (major, minor string) {
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return "", ""
	}
	major, rest, _ = strings.Cut(rest, ".")
	minor, _, _ = strings.Cut(rest, ".")
	minor, _, _ = strings.Cut(minor, "-")
	minor, _, _ = strings.Cut(minor, "+")
	if !isDigits(major) || !isDigits(minor) {
		return "", ""
	}
	return major, minor
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
