// Package server assembles Berth from its parts (metadata store, blob
// driver, registry) and runs the HTTP(S) listener until its context ends.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/console"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/imagestream"
	"github.com/berth-registry/berth/internal/instance"
	"github.com/berth-registry/berth/internal/lease"
	"github.com/berth-registry/berth/internal/logging"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/outbound"
	"github.com/berth-registry/berth/internal/pki"
	"github.com/berth-registry/berth/internal/prune"
	"github.com/berth-registry/berth/internal/quota"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage/drivers"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/upstream"
	"github.com/berth-registry/berth/internal/webhook"
	"golang.org/x/time/rate"
)

// Config is what `berth serve` is told.
type Config struct {
	Listen  string
	DataDir string
	Storage string // a name in drivers.Builtin()
	// Store names the metadata store: "" is SQLite in DataDir
	// (metadata.db); postgres://… is PostgreSQL, which several instances
	// may share (each with this DataDir, on a shared volume, or its own).
	Store        string
	InsecureHTTP bool
	// TLSHosts are names and addresses the serving certificate covers
	// beyond localhost, loopback and the host name.
	TLSHosts []string
	// BaseDomain names the hosts of the registry Config's routes that
	// give none (default-route-openshift-image-registry.<BaseDomain>);
	// "": the default route is localhost (docs/OPERATOR.md).
	BaseDomain string
	// AllowSparse accepts manifests whose layers or children are absent.
	AllowSparse bool
	// MaxManifestBytes caps manifest PUTs (0: the registry's default).
	MaxManifestBytes int64
	// ShutdownTimeout bounds how long in-flight requests may finish after
	// a stop signal.
	ShutdownTimeout time.Duration
	// UploadTTL is how long an untouched upload session lives.
	UploadTTL time.Duration
	// ShutdownDelay keeps serving after a stop signal, /readyz answering
	// 503, before the listener closes and the grace period starts, so
	// that load balancers probing /readyz stop sending requests first.
	ShutdownDelay time.Duration
	// Logger is where Run logs; it adds instance.id to every record.
	Logger *slog.Logger
	// LogLevel is the level Logger's handlers read at each record: whoever
	// holds it changes what is logged at once, without a restart (the
	// operator will set it from the registry Config's logLevel). nil: the
	// level cannot change while running.
	LogLevel *slog.LevelVar
	// LogRing holds the recent lines Logger wrote (the CLI tees Logger's
	// output into it beside stderr); the management API serves them as
	// this instance's pod log. nil: that log is empty.
	LogRing *logging.Ring
	// DebugListen, when set, serves net/http/pprof on a separate listener
	// (keep it on loopback).
	DebugListen string
	// Ready, when set, receives the bound address once serving starts.
	Ready chan<- net.Addr

	// AdminPassword is the password of the administrator created on first
	// start; "" generates one into DataDir/admin-password.
	AdminPassword string
	// Htpasswd is an htpasswd file of users who may log in ("": only the
	// administrator and tokens).
	Htpasswd string
	// LoginAttempts failed logins within LoginWindow lock a user name (and
	// 4× as many a client address) out for LoginLockout, doubling with
	// each lockout in a row.
	LoginAttempts int
	LoginWindow   time.Duration
	LoginLockout  time.Duration
	// RegistryTokenTTL is the life of a token the registry's token endpoint
	// issues for a user name and password.
	RegistryTokenTTL time.Duration
	// BodyTimeout and BodyMinRate pace request bodies: each BodyTimeout a
	// body must deliver BodyMinRate bytes per second of it, or the
	// connection is cut (an upload session keeps what arrived). A negative
	// BodyTimeout turns pacing off.
	BodyTimeout time.Duration
	BodyMinRate int64
	// MaxUploadsPerUser and MaxUploadsPerProject cap open upload sessions
	// (0: no cap).
	MaxUploadsPerUser    int
	MaxUploadsPerProject int
	// MaxImagesBulkImported caps the tags a repository import takes (the
	// reference's maxImagesBulkImportedPerRepository; 0: 50, -1: none).
	MaxImagesBulkImported int
	// ScheduledImportInterval is how often tags with a scheduled import
	// are imported again (0: 15 minutes).
	ScheduledImportInterval time.Duration
	// LogLevelGiven says the level was asked for explicitly (--log-level):
	// it is the Config's first logLevel, and a Config that says otherwise
	// is named in a warning.
	LogLevelGiven bool
	// SecretKeyFiles hold the keys that encrypt Secrets at rest (32 bytes
	// each; the first encrypts, all decrypt). None: DataDir's
	// secret-encryption.key, created on first start.
	SecretKeyFiles []string
	// SecretKey, when set, is the key itself (32 bytes), given in the
	// environment; it wins over SecretKeyFiles.
	SecretKey []byte
	// MetricsSecret, when set, reads the metrics at /extensions/v2/metrics
	// in place of a user's credentials: as the password of Basic
	// credentials (any user name) or as a bearer token. Users granted get
	// on registry/metrics may read them either way.
	MetricsSecret string
	// JobLeaseTTL is how long a background job's lease outlives its
	// holder's last renewal: another instance takes over a dead one's job
	// after about this long (0: lease.DefaultTTL).
	JobLeaseTTL time.Duration
	// GCInterval is how often garbage collection runs in the background,
	// under a lease (0: hourly; negative: never, berth adm gc only).
	GCInterval time.Duration
	// AuditRetention is how long rows of the audit log are kept (90
	// days when 0).
	AuditRetention time.Duration
	// GCGrace is how long an unreferenced blob or manifest is kept after
	// it was last pushed, linked or uploaded (0: gc.DefaultGrace, a day).
	GCGrace time.Duration
	// EmptyDirSizeLimit caps the bytes an emptyDir storage holds in
	// memory: an upload past it fails with 507. 0: half the machine's
	// memory (1 GiB where that is unknown); negative: no cap.
	EmptyDirSizeLimit int64
}

// defaultEmptyDirSizeLimit is half the machine's memory, or 1 GiB where
// that is unknown.
func defaultEmptyDirSizeLimit() int64 {
	if m := physicalMemory(); m > 0 {
		return m / 2
	}
	return 1 << 30
}

func (cfg *Config) setDefaults() {
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.UploadTTL == 0 {
		cfg.UploadTTL = 24 * time.Hour
	}
	if cfg.LoginAttempts == 0 {
		cfg.LoginAttempts = 5
	}
	if cfg.LoginWindow == 0 {
		cfg.LoginWindow = 5 * time.Minute
	}
	if cfg.LoginLockout == 0 {
		cfg.LoginLockout = time.Minute
	}
	if cfg.RegistryTokenTTL == 0 {
		cfg.RegistryTokenTTL = time.Hour
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = 30 * time.Second
	}
	if cfg.BodyMinRate == 0 {
		cfg.BodyMinRate = 1024
	}
	if cfg.EmptyDirSizeLimit == 0 {
		cfg.EmptyDirSizeLimit = defaultEmptyDirSizeLimit()
	}
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	self := instance.New()
	log = slog.New(logging.WithTrailer(log.Handler(), slog.String("instance.id", self.ID)))
	cfg.setDefaults()
	cfg.BaseDomain = strings.ToLower(strings.TrimSuffix(cfg.BaseDomain, "."))
	if err := checkBaseDomain(cfg.BaseDomain); err != nil {
		return err
	}
	if cfg.AuditRetention < 0 {
		return fmt.Errorf("--audit-retention %s: must not be negative", cfg.AuditRetention)
	}
	if cfg.AuditRetention == 0 {
		cfg.AuditRetention = 90 * 24 * time.Hour
	}
	if cfg.GCGrace < 0 {
		return fmt.Errorf("--gc-grace %s: must not be negative (berth adm gc --grace 0s runs one collection without one)", cfg.GCGrace)
	}
	if err := metrics.CheckSecret(cfg.MetricsSecret); err != nil {
		return err
	}
	if cfg.Storage != "filesystem" && cfg.Storage != "memory" {
		return fmt.Errorf("unknown storage %q: filesystem (the registry Config starts with the default volume) or memory (an emptyDir, with metadata in memory too)", cfg.Storage)
	}
	if strings.HasPrefix(cfg.Store, "sqlite:") {
		return fmt.Errorf("--store %s: SQLite is the default store, in the data directory (--data); --store names a PostgreSQL database", cfg.Store)
	}
	shared := cfg.Store != "" && store.Shared(cfg.Store)
	if shared && cfg.Storage == "memory" {
		return fmt.Errorf("--storage memory keeps blobs in this process's memory: instances sharing --store %s could not read them; use filesystem on a shared volume, or object storage", store.Redact(cfg.Store))
	}
	if err := os.MkdirAll(cfg.DataDir, privateDir); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	// With a store of its own, a process has the data directory to
	// itself; instances that share a store may share the directory (a
	// shared volume), and take turns at creating what the first start
	// puts in it (keys, the CA, the admin password).
	unlock, err := LockDataDir(cfg.DataDir, shared)
	if err != nil {
		return err
	}
	defer unlock()
	endSetup, err := lockSetup(cfg.DataDir, shared)
	if err != nil {
		return err
	}
	defer func() { endSetup() }()
	tightenInside, err := makeDataDirPrivate(cfg.DataDir, log)
	if err != nil {
		return err
	}
	tightenCtx, stopTightening := context.WithCancel(ctx)
	tightened := make(chan struct{})
	go func() { defer close(tightened); tightenInside(tightenCtx) }()
	defer func() { stopTightening(); <-tightened }()
	keys, err := loadSecretKeys(cfg.DataDir, cfg.SecretKeyFiles, cfg.SecretKey)
	if err != nil {
		return err
	}
	metaDir := cfg.DataDir
	storeOpts := []store.Option{store.WithSecretKeys(keys.keys...)}
	if cfg.Storage == "memory" {
		// emptyDir semantics: metadata must not outlive the blobs it
		// describes, so it need not reach the disk either.
		tmp, err := os.MkdirTemp("", "berth-memory-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		metaDir = tmp
		storeOpts = append(storeOpts, store.Ephemeral())
	}
	var meta *store.Store
	if cfg.Store == "" {
		meta, err = store.OpenSQLite(ctx, filepath.Join(metaDir, "metadata.db"), storeOpts...)
	} else {
		meta, err = store.Open(ctx, cfg.Store, append(storeOpts, store.WaitForDatabase(2*time.Minute), store.WithLogger(log))...)
	}
	if err != nil {
		return err
	}
	defer meta.Close()
	meta.SetLimitsPolicy(quota.Policy())
	// A shared store's data directory may be any; SQLite's is where the
	// store is (memory storage's store is new at each start).
	if shared {
		if err := checkStoreID(ctx, meta, cfg.DataDir); err != nil {
			return err
		}
	}
	if err := encryptSecrets(ctx, meta, keys, log); err != nil {
		return err
	}
	// The storage --storage names serves until the operator applies the
	// Config's (and goes on serving if the Config is Unmanaged or invalid).
	// The server's metrics; blob drivers, the request limiter and
	// read-only mode feed theirs.
	m := metrics.New()
	storages := newBlobStorages(cfg.DataDir, drivers.Builtin(), cfg.Storage == "memory", meta, log)
	// Other instances write to a shared storage: their sessions in flight
	// are not leftovers (the janitor expires what dead ones left).
	storages.recoverAtStart = !shared
	storages.emptyDirLimit = max(cfg.EmptyDirSizeLimit, 0)
	storages.wrap = m.Driver
	m.EmptyDirUsage(storages.EmptyDirUsage)
	boot, err := storages.ApplyStorage(ctx, operator.DesiredStorage{Config: bootstrapSpec(cfg.Storage, slog.LevelInfo).Storage})
	if err != nil {
		return fmt.Errorf("blob storage: %w", err)
	}

	if err := bootstrap(ctx, meta, cfg.DataDir, cfg.AdminPassword, log); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := apiserver.EnsureClusterObjects(ctx, meta, log); err != nil {
		return err
	}
	// A store of one process (the data directory's lock): rows found at
	// start are of processes that died without removing theirs. A shared
	// store keeps the others' until the janitor's rule forgets them.
	if !shared {
		if n, err := meta.DeleteStaleInstances(ctx, time.Now()); err != nil {
			return err
		} else if n > 0 {
			log.Info("forgot the instances of earlier runs", "count", n)
		}
	}
	// The listener and the CA come first: the operator names the port in
	// the routes' hosts and issues their certificates.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	serving := false
	defer func() {
		if !serving {
			ln.Close()
		}
	}()
	var certs *pki.Source
	routeOpts := operator.RouteOptions{BaseDomain: cfg.BaseDomain, Port: ln.Addr().(*net.TCPAddr).Port,
		CAHosts: append(pki.DefaultHosts(), cfg.TLSHosts...)}
	pkiDir := filepath.Join(cfg.DataDir, "pki")
	if !cfg.InsecureHTTP {
		if certs, err = pki.NewSource(pkiDir, append(pki.DefaultHosts(), cfg.TLSHosts...)); err != nil {
			return fmt.Errorf("prepare TLS: %w", err)
		}
		routeOpts.CA = certs
	}
	endSetup()
	// The operator puts the registry Config in effect before the first
	// request, then follows its changes.
	current := settings.NewHolder(&settings.Settings{Storage: boot.Blobs})
	// Object storage reaches its backend through the Config's proxy, live.
	storages.client = outbound.Client(current)
	startLevel := slog.LevelInfo
	var setLevel func(slog.Level)
	if cfg.LogLevel != nil {
		startLevel, setLevel = cfg.LogLevel.Level(), cfg.LogLevel.Set
	}
	// One instance at a time writes the Config's status (the holder of
	// the operator-status lease, below); before any holds it, this one does.
	var writesStatus atomic.Bool
	writesStatus.Store(!shared)
	op := operator.New(operator.Options{
		Store: meta, Settings: current, Storage: storages, Logger: log,
		Bootstrap: bootstrapSpec(cfg.Storage, startLevel), SetLogLevel: setLevel, Routes: routeOpts,
		ReadyReplicas: func(ctx context.Context) (int, error) { return readyInstances(ctx, meta) },
		SharedStore:   shared,
		WritesStatus:  writesStatus.Load,
	})
	if err := op.Reconcile(ctx); err != nil {
		return fmt.Errorf("apply the registry Config: %w", err)
	}
	if inEffect := current.Load().LogLevel; cfg.LogLevelGiven && inEffect != startLevel {
		log.Warn("--log-level is the registry Config's first logLevel only; the Config says otherwise and wins: change it there",
			"flag", startLevel, "config", inEffect,
			"patch", `berth patch configs.imageregistry.operator.openshift.io/cluster --type merge -p '{"spec":{"logLevel":"Debug"}}'`)
	}
	// After a crash: expired sessions go, in their own storage. (Leftovers
	// no session records went when each storage was built.)
	expireUploads(ctx, meta, storages, cfg.UploadTTL, log)
	stopping := make(chan struct{})
	probes := newHealth(meta, storages, log)
	// Pulls are noted in memory and appended as events in batches
	// (webhooks' pull events), by the goroutine started below.
	pulls := meta.NewPullLog(time.Minute)
	// Every outbound call (imports, pull-through, webhooks) goes through
	// the proxy the settings name.
	outboundClient := outbound.Client(current)
	// Nothing is deleted while the registry is read-only.
	readOnly := func() bool { return current.Load().ReadOnly }
	collector := &gc.Collector{Store: meta, Storages: storages.gcStorages, Grace: cfg.GCGrace, Log: log, Metrics: m.GC(), ReadOnly: readOnly}
	pruner := &prune.Pruner{Store: meta, ReadOnly: readOnly}
	mux, streams, err := newHandler(cfg, meta, storages, userNameHashKey(keys.keys[0]), log, stopping, self.Name, m, op.Reconcile, pulls, outboundClient,
		adminActions{collector: collector, pruner: pruner})
	if err != nil {
		return err
	}
	probes.routes(mux)

	srv := &http.Server{
		Handler: accessLog(log, current.Middleware(newLimiter(m).Middleware(
			paceBodies(newBodyPace(cfg.BodyTimeout, cfg.BodyMinRate), m.Instrument(generationMemo(meta, mux)))))),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          stdlog.New(serverErrors{log}, "", 0),
		// Requests do not derive from ctx: a stop signal lets Shutdown
		// drain them instead of cancelling them.
	}
	// Shutdown waits for requests; watches would hold it for the whole
	// grace period, so they are told to end.
	srv.RegisterOnShutdown(func() { close(stopping) })

	scheme := "http"
	if certs != nil {
		srv.TLSConfig = &tls.Config{GetCertificate: routeCertificates(current, certs.GetCertificate), MinVersion: tls.VersionTLS12}
		ln = tlsListener(ln, srv.TLSConfig)
		scheme = "https"
		log.Info("TLS enabled; clients trust the CA", "ca", filepath.Join(pkiDir, pki.CAFile))
	}
	// The listener queues connections from here on: the instance serves,
	// and its row says so before anyone is told the address.
	probes.serving.Store(true)
	beats := &instance.Heartbeater{
		Store: meta, Self: self, Listen: shownAddr(cfg.Listen, ln.Addr()), Log: log,
		Ready: func() bool { return probes.ready(context.Background()) },
	}
	if err := beats.Beat(ctx); err != nil {
		ln.Close()
		return fmt.Errorf("record this instance: %w", err)
	}
	defer func() {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := beats.Remove(rmCtx); err != nil {
			log.Warn("remove this instance's heartbeat row", "err", err)
		}
	}()
	beatCtx, stopBeats := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() { defer close(beating); beats.Run(beatCtx) }()
	defer func() { stopBeats(); <-beating }()

	log.Info("listening on " + shownAddr(cfg.Listen, ln.Addr()))
	servingAttrs := []any{"url", scheme + "://" + ln.Addr().String(), "storage", storages.inEffect().ID, "data", cfg.DataDir, "pod", self.Name}
	if cfg.LogLevel != nil {
		servingAttrs = append(servingAttrs, "log_level", strings.ToLower(cfg.LogLevel.Level().String()))
	}
	log.Info("berth serving", servingAttrs...)
	if cfg.Ready != nil {
		cfg.Ready <- ln.Addr()
	}

	var wg sync.WaitGroup
	janitorCtx, stopJanitor := context.WithCancel(ctx)
	defer func() { stopJanitor(); wg.Wait() }()
	wg.Go(func() { op.Run(janitorCtx) })
	wg.Go(func() { followSettings(janitorCtx, current, m, meta) })
	wg.Go(func() {
		pulls.Run(janitorCtx, 10*time.Second, func(err error) { log.Warn("record pulls", "err", err) })
	})
	dispatcher := &webhook.Dispatcher{
		Queue: meta, Hooks: storedHooks{meta}, Log: log, Counters: m.Webhooks(),
		Sender: (&webhookSenders{settings: current, client: outboundClient, log: log}).current,
		Source: scheme + "://" + eventHost(shownAddr(cfg.Listen, ln.Addr())),
	}
	// Background jobs run on one instance at a time, the holder of the
	// job's lease in the store (one process: always this one).
	jobs := &lease.Runner{Leases: meta, Holder: self.ID, TTL: cfg.JobLeaseTTL, Log: log, Held: m.JobLeaseHeld}
	for _, job := range []string{"webhook-delivery", "scheduled-import", "janitor", "operator-status", "gc", "image-pruner"} {
		m.JobLeaseHeld(job, false)
	}
	wg.Go(func() {
		jobs.Run(janitorCtx, "operator-status", func(ctx context.Context) {
			writesStatus.Store(true)
			defer writesStatus.Store(false)
			if err := op.Reconcile(ctx); err != nil && ctx.Err() == nil {
				log.Warn("write the registry Config's status", "err", err)
			}
			<-ctx.Done()
		})
	})
	wg.Go(func() { jobs.Run(janitorCtx, "webhook-delivery", dispatcher.Run) })
	// Scheduled imports: tags imported with importPolicy.scheduled are
	// imported again about every ScheduledImportInterval.
	scheduler := &imagestream.Scheduler{Service: streams, Specs: meta, Interval: cfg.ScheduledImportInterval, Log: log, Settings: current}
	wg.Go(func() { jobs.Run(janitorCtx, "scheduled-import", scheduler.Run) })
	wg.Go(func() {
		jobs.Run(janitorCtx, "janitor", func(ctx context.Context) {
			every(ctx, time.Hour, func(ctx context.Context) {
				expireUploads(ctx, meta, storages, cfg.UploadTTL, log)
				expireTokens(ctx, meta, log)
				pruneEvents(ctx, meta, log)
				pruneAudit(ctx, meta, cfg.AuditRetention, log)
				forgetInstances(ctx, meta, log)
				forgetLoginFailures(ctx, meta, cfg.LoginWindow, log)
			})
		})
	})
	// The ImagePruner's schedule (the reference's CronJob).
	imagePruner := &operator.ImagePrunerController{Store: meta, Pruner: pruner, Log: log}
	wg.Go(func() { jobs.Run(janitorCtx, "image-pruner", imagePruner.Run) })
	wg.Go(func() {
		jobs.Run(janitorCtx, "gc", func(ctx context.Context) {
			// Blobs a collection took and left (it died, here or on
			// another instance; its deletion timed out) wait for uploads
			// of them: they are finished within minutes, whether or not
			// collections are scheduled.
			var resuming sync.WaitGroup
			defer resuming.Wait()
			resuming.Go(func() {
				every(ctx, time.Minute, func(ctx context.Context) {
					if err := collector.Resume(ctx); err != nil && ctx.Err() == nil {
						log.Warn("finish garbage collection", "err", err)
					}
				})
			})
			if cfg.GCInterval < 0 {
				<-ctx.Done()
				return
			}
			every(ctx, cmp.Or(cfg.GCInterval, time.Hour), func(ctx context.Context) {
				if collector.ReadOnly() {
					return
				}
				if _, err := collector.Run(ctx, gc.Options{}); err != nil && ctx.Err() == nil && !errors.Is(err, gc.ErrRunning) {
					log.Warn("garbage collection", "err", err)
				}
			})
		})
	})
	if cfg.DebugListen != "" {
		debug, err := startDebug(cfg.DebugListen, log)
		if err != nil {
			return err
		}
		defer debug.Close()
	}

	serving = true // Shutdown closes the listener from here on
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }() // ends when Shutdown closes the listener
	sdNotify("READY=1", log)
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Not ready from now on: /readyz answers 503 and the row says so.
	sdNotify("STOPPING=1", log)
	probes.stopping.Store(true)
	stopBeats()
	<-beating
	markCtx, cancelMark := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := beats.Stopping(markCtx); err != nil {
		log.Warn("mark this instance as stopping", "err", err)
	}
	cancelMark()
	log.Info("shutting down", "grace", cfg.ShutdownTimeout, "delay", cfg.ShutdownDelay)
	if cfg.ShutdownDelay > 0 {
		// Load balancers see /readyz fail while requests are still served.
		drain := time.NewTimer(cfg.ShutdownDelay)
		select {
		case <-drain.C:
		case err := <-serveErr:
			drain.Stop()
			return fmt.Errorf("serve: %w", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("requests still running at the end of the grace period were cut", "err", err)
		srv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shownAddr is the address to name in logs and the instance's row: the
// one configured, unless it asked for any port (then the one bound).
func shownAddr(listen string, bound net.Addr) string {
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "0" && port != "" {
		return listen
	}
	return bound.String()
}

// eventHost is how webhook events name this registry: the listen
// address, with this machine's name for a wildcard or missing host
// (":5000" names no host a receiver could use).
func eventHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil && name != "" {
			host = name
		}
	}
	return net.JoinHostPort(host, port)
}

// podLogs is the ring as the API server reads it (a nil ring: no log).
func podLogs(ring *logging.Ring) apiserver.PodLogs {
	if ring == nil {
		return nil
	}
	return ring
}

// startDebug serves the runtime profiler on its own listener.
func startDebug(addr string, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends when the caller closes srv
	log.Info("profiler serving", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return srv, nil
}

// newHandler assembles the HTTP surface: authentication in front of the
// registry and the management API, the token endpoint and the metrics.
// adminActions are the administrative actions the API runs (nil: not
// served).
type adminActions struct {
	collector *gc.Collector
	pruner    *prune.Pruner
}

func newHandler(cfg Config, meta *store.Store, storages *blobStorages, nameHashKey []byte, log *slog.Logger, stopping <-chan struct{}, podName string, m *metrics.Metrics, reconcile func(context.Context) error, pulls registry.Pulls, outboundClient *http.Client, admin adminActions) (*http.ServeMux, *imagestream.Service, error) {
	identity, err := identityProviders(meta, cfg.Htpasswd)
	if err != nil {
		return nil, nil, err
	}
	// Instances that share the store count failed logins together.
	var sharedFailures auth.SharedFailures
	if meta.Shared() {
		sharedFailures = meta
	}
	authn := &auth.Authenticator{
		Tokens: timedAccess{meta}, Groups: timedAccess{meta}, Identity: identity, NameHashKey: nameHashKey,
		Users:      &auth.Throttle{Limit: cfg.LoginAttempts, Window: cfg.LoginWindow, Lockout: cfg.LoginLockout, Shared: sharedFailures, Scope: "user"},
		Clients:    &auth.Throttle{Limit: 4 * cfg.LoginAttempts, Window: cfg.LoginWindow, Lockout: cfg.LoginLockout, Shared: sharedFailures, Scope: "client"},
		Generation: meta.AccessGenerationAt,
		Logger:     log,
		Annotate:   func(ctx context.Context, id auth.Identity) context.Context { return store.WithActor(ctx, id.User.Name) },
		// A user an identity provider vouched for becomes a User object on
		// first login, as on the reference platform.
		OnLogin: func(ctx context.Context, user string) {
			if err := meta.CreateUser(ctx, store.User{Name: user}); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
				log.Warn("record user", "user", user, "err", err)
			}
		},
	}
	authz := auth.NewRBAC(timedAccess{meta})
	authz.Generation = meta.AccessGenerationAt
	issuer := &auth.Issuer{Tokens: meta}

	streams := imagestream.New(meta)
	if outboundClient != nil {
		images := clusterImages{meta}
		streams.SetImporter(&imagestream.Importer{
			Upstreams: &upstream.Access{Client: outboundClient, Secrets: images.Secrets, Trust: images.Trust, Policy: images.Policy,
				Destinations: importDestinations},
			// Pulls wait for no rate: the upstream's own limits apply.
			PullThrough: &upstream.Access{Client: outboundClient, Secrets: images.Secrets, Trust: images.Trust, Policy: images.Policy,
				Destinations: importDestinations, Limiter: rate.NewLimiter(rate.Inf, 0)},
			Blobs:   importBlobs{storages: storages, meta: meta},
			MaxBulk: cfg.MaxImagesBulkImported,
		})
	}
	reg := registry.New(registry.Options{
		// Every request's snapshot names its storage; the one in effect now
		// serves a handler used without the settings middleware (tests).
		Metadata: meta, Blobs: storages.inEffect().Driver, StorageID: storages.inEffect().ID, Storages: storages, Logger: log,
		AllowSparse: cfg.AllowSparse, MaxManifestBytes: cfg.MaxManifestBytes,
		Authorizer: authz, Projects: meta, TokenRealm: auth.TokenPath,
		UploadLimits: store.UploadLimits{PerUser: cfg.MaxUploadsPerUser, PerProject: cfg.MaxUploadsPerProject},
		StoreTimes:   m.ObserveStoreCall,
		Pulls:        pulls,
		Upstreams:    streams,
		Proxy:        streams,
	})
	apiOpts := apiserver.Options{
		ImageStreams: streams,
		Store:        meta, Authorizer: authz, Authenticator: authn, Issuer: issuer, Logger: log, Blobs: apiBlobs{storages},
		Stopping: stopping, PodName: podName, PodLogs: podLogs(cfg.LogRing),
		StorageMigrator: &storageMigrations{storages: storages, records: meta, reconcile: reconcile, log: log},
	}
	// Set only when there is one: a nil pointer in an interface is not
	// "not served".
	if admin.collector != nil {
		apiOpts.GarbageCollector = admin.collector
	}
	if admin.pruner != nil {
		apiOpts.ImagePruner = admin.pruner
	}
	api := apiserver.New(apiOpts)
	mux := http.NewServeMux()
	mux.Handle("/v2/", authn.Middleware(reg, reg.WriteAuthError))
	mux.Handle("/v2", authn.Middleware(reg, reg.WriteAuthError))
	mux.Handle(auth.TokenPath, &auth.TokenEndpoint{Authenticator: authn, Issuer: issuer, TTL: cfg.RegistryTokenTTL, Logger: log})
	for _, prefix := range apiserver.Paths {
		mux.Handle(prefix, authn.Middleware(api, apiserver.WriteAuthError))
	}
	// The OAuth token endpoint reads credentials from its form (and an
	// OAuth client's own Basic credentials, which are no user's password).
	mux.Handle("/oauth/", api)
	mux.Handle("GET "+metrics.Path, m.Endpoint(metrics.Access{Secret: cfg.MetricsSecret, Authn: authn, Authz: authz, Logger: log}))
	// The web console calls the handlers above in process, as the user
	// signed in to it: it has no API or authorizer of its own.
	web, err := console.New(console.Options{Backend: mux, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	mux.Handle(console.Prefix, web)
	mux.Handle("GET /console", http.RedirectHandler(console.Prefix, http.StatusSeeOther))
	return mux, streams, nil
}

// serverErrors is net/http's error log: warnings, except the handshakes
// that a plain-HTTP client started on the TLS port, which were answered
// with a hint (a client's mistake, not the server's trouble: debug).
type serverErrors struct{ log *slog.Logger }

func (e serverErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, errPlainHTTP.Error()) {
		level = slog.LevelDebug
	}
	e.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// generationMemo gives each request a memo of the store's cache
// generations: a store shared by instances reads them once per request.
// A store of one process keeps them in memory, and needs none.
func generationMemo(meta *store.Store, next http.Handler) http.Handler {
	if !meta.Shared() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(store.WithGenerationMemo(r.Context())))
	})
}
