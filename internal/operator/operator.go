// Package operator reconciles the registry's Config
// (configs.imageregistry.operator.openshift.io/cluster): it watches the
// store's event sequence, validates the Config, builds the runtime
// settings snapshot from it and swaps it in, and writes back a status
// that says what is in effect. Nothing else reads the Config object.
package operator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/logging"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// Store is what the operator needs of the metadata store.
type Store interface {
	GetObject(ctx context.Context, k store.ObjectKey) (store.Object, error)
	CreateObject(ctx context.Context, o store.Object) (store.Object, error)
	UpdateObject(ctx context.Context, o store.Object, expect int64) (store.Object, error)
	ListObjects(ctx context.Context, q store.ObjectQuery) ([]store.Object, bool, int64, error)
	DeleteObject(ctx context.Context, k store.ObjectKey, expect int64, uid string) (store.Object, error)
	Changed() <-chan struct{}
}

// Storage applies the spec's storage section: it returns the storage now
// in effect, or why the spec's could not be put in effect (and the
// previous storage, which stays in effect). It is called at every pass, so
// applying the storage already in effect must be cheap.
type Storage interface {
	ApplyStorage(ctx context.Context, want DesiredStorage) (AppliedStorage, error)
}

// DesiredStorage is what the spec asks of the storage, with what it names
// elsewhere resolved: a changed credential or CA bundle is a changed
// storage, applied live.
type DesiredStorage struct {
	Config imageregistryv1.StorageConfig
	// Credentials are the user secret's storage keys over the server's
	// environment.
	Credentials map[string]string
	// TrustedCA is the PEM bundle spec.storage.s3.trustedCA names, or nil.
	TrustedCA []byte
	// Secrets are the values of the Secrets the storage names, by field
	// (storage.SecretCloudFrontKey).
	Secrets map[string][]byte
	// Resolve resolves what another storage configuration names (an older
	// storage's, to open it again); nil resolves nothing.
	Resolve func(ctx context.Context, s imageregistryv1.StorageConfig) (DesiredStorage, error)
}

// AppliedStorage is the storage in effect.
type AppliedStorage struct {
	// Config is what status.storage shows.
	Config imageregistryv1.StorageConfig
	// Blobs is the storage the settings snapshot gives requests.
	Blobs settings.Storage
	// Created says that putting it in effect created it (a volume that
	// did not exist): StorageExists says "PVC Created" rather than "PVC
	// Exists", as the reference's operator does after it provisions one.
	Created bool
	// Conditions are what the driver found and did when it was built (a
	// bucket found, or created with its access block and lifecycle
	// rule), in the reference's condition types.
	Conditions []storage.Condition
	// Redirects says where blob GETs are redirected to, "" for a storage
	// that streams them.
	Redirects string
	// Older are the storages switched away from that still hold blobs,
	// read from until their blobs are migrated (a Driver nil: it could
	// not be opened), and Pending what each holds.
	Older   []settings.Storage
	Pending []PendingStorage
}

// PendingStorage is an older storage still holding blobs.
type PendingStorage struct {
	ID string
	// Name says what it is to a person.
	Name         string
	Blobs, Bytes int64
	// Err is why it could not be opened; nil when it is read from.
	Err error
	// Note says how it is read when not as its configuration says (with
	// the settings it opened with before).
	Note string
}

// Options configure an Operator.
type Options struct {
	Store    Store
	Settings *settings.Holder
	Storage  Storage
	Logger   *slog.Logger
	// Bootstrap is the spec a missing Config is created with (the storage
	// the server was started with); the operator adds a fresh httpSecret.
	Bootstrap imageregistryv1.ConfigSpec
	// ReadyReplicas counts the instances that serve (1 until instances
	// report heartbeats).
	ReadyReplicas func(ctx context.Context) (int, error)
	// WritesStatus says whether this instance writes the Config's status
	// and the ClusterOperator (nil: it does). Every instance applies the
	// Config; where several share the store, one writes what it observes
	// (the holder of a lease), so the status does not flip between the
	// views of each.
	WritesStatus func() bool
	// SharedStore says whether several instances can share the metadata
	// store (PostgreSQL); SQLite serves one.
	SharedStore bool
	// SetLogLevel applies spec.logLevel.
	SetLogLevel func(slog.Level)
	// Routes say how spec.defaultRoute and spec.routes are exposed.
	Routes RouteOptions
	// Resync is how often the operator reconciles with nothing changed
	// (instances come and go without an event); 0: 10 s.
	Resync time.Duration
	// Debounce is the least time between two passes that a change
	// triggers; 0: 250 ms.
	Debounce time.Duration
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Operator is the reconciler.
type Operator struct {
	opts Options
	log  *slog.Logger

	// level is spec.operatorLogLevel: the operator's own verbosity.
	level slog.LevelVar
	// mu makes passes one at a time (Run's and a caller's).
	mu sync.Mutex
	// secrets are the route secrets as last parsed (guarded by mu).
	secrets map[store.ObjectKey]parsedSecret
}

// New returns an operator; Run starts it.
func New(opts Options) *Operator {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Resync == 0 {
		opts.Resync = 10 * time.Second
	}
	if opts.Debounce == 0 {
		opts.Debounce = 250 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReadyReplicas == nil {
		opts.ReadyReplicas = func(context.Context) (int, error) { return 1, nil }
	}
	o := &Operator{opts: opts, secrets: map[store.ObjectKey]parsedSecret{}}
	o.log = slog.New(logging.WithLevel(opts.Logger.Handler(), &o.level)).With("component", "operator")
	return o
}

// ConfigKey is where the Config is stored.
var ConfigKey = store.ObjectKey{Group: imageregistryv1.GroupName, Resource: "configs", Name: imageregistryv1.ConfigName}

// Run reconciles at every committed change and every Resync until ctx
// ends. The first reconcile happens before Run returns control to the
// loop, so a server that calls Start serves with the Config's settings.
func (o *Operator) Run(ctx context.Context) {
	ticker := time.NewTicker(o.opts.Resync)
	defer ticker.Stop()
	for {
		changed := o.opts.Store.Changed()
		if err := o.Reconcile(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("reconcile the registry Config", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			// Any commit wakes the operator (a user's ConfigMap as much as
			// the Config): passes are spaced by Debounce, so a flood of
			// writes costs a few passes a second, and the changes that
			// arrive meanwhile are seen by the next.
			select {
			case <-ctx.Done():
				return
			case <-time.After(o.opts.Debounce):
			}
		case <-ticker.C:
		}
	}
}

// Reconcile makes one pass: read the Config (creating it when missing),
// apply it, write its status.
func (o *Operator) Reconcile(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	// Filling in the spec writes it; the pass then goes on with what it
	// wrote, so the settings are in effect when Reconcile returns.
	for range 3 {
		rec, err := o.opts.Store.GetObject(ctx, ConfigKey)
		if errors.Is(err, errdefs.ErrNotFound) {
			// As the reference's operator does: a deleted Config comes back
			// with defaults at once; the settings in effect stay until then.
			if rec, err = o.create(ctx); err != nil {
				return err
			}
			o.log.Info("created the registry Config with defaults", "name", imageregistryv1.ConfigName)
		} else if err != nil {
			return fmt.Errorf("read the registry Config: %w", err)
		}
		cfg, err := decode(rec)
		if err != nil {
			return err
		}
		wrote, err := o.completeSpec(ctx, rec, cfg)
		if err != nil {
			return err
		}
		if wrote {
			continue
		}
		o.level.Set(LogLevel(imageregistryv1.ConfigSpec{LogLevel: cfg.Spec.OperatorLogLevel}))
		status := o.apply(ctx, cfg)
		o.log.Debug("reconciled the registry Config", "generation", cfg.Generation, "resourceVersion", rec.ResourceVersion,
			"conditions", conditionSummary(status.Conditions))
		if o.opts.WritesStatus != nil && !o.opts.WritesStatus() {
			return nil
		}
		if err := o.writeStatus(ctx, rec, cfg, status); err != nil {
			return err
		}
		return o.writeClusterOperator(ctx, status.Conditions)
	}
	return errors.New("the registry Config kept changing while it was completed; retrying at the next change")
}

// create stores a Config with the bootstrap spec.
func (o *Operator) create(ctx context.Context) (store.Object, error) {
	cfg := &imageregistryv1.Config{Spec: o.opts.Bootstrap}
	cfg.Name = imageregistryv1.ConfigName
	cfg.UID = typesUID()
	cfg.Generation = 1
	cfg.CreationTimestamp = metav1.NewTime(o.opts.Now().UTC().Truncate(time.Second))
	cfg.Spec.HTTPSecret = newHTTPSecret()
	rec, err := encode(cfg)
	if err != nil {
		return store.Object{}, err
	}
	created, err := o.opts.Store.CreateObject(ctx, rec)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		return o.opts.Store.GetObject(ctx, ConfigKey)
	}
	if err != nil {
		return store.Object{}, fmt.Errorf("create the registry Config: %w", err)
	}
	return created, nil
}

// completeSpec writes back what the operator fills in, as the
// reference's does: a generated httpSecret, the default claim of a pvc
// storage, the storage's managementState, and the storage of a Config
// that an earlier Berth created without one. It reports whether it wrote.
func (o *Operator) completeSpec(ctx context.Context, rec store.Object, cfg *imageregistryv1.Config) (bool, error) {
	if len(imageregistryv1.Validate(cfg)) > 0 {
		return false, nil // nothing is written into an invalid spec
	}
	spec := cfg.Spec
	var filled []string
	if spec.HTTPSecret == "" {
		spec.HTTPSecret = newHTTPSecret()
		filled = append(filled, "httpSecret")
	}
	if len(spec.Storage.StorageTypes()) == 0 && neverReconciled(cfg) {
		// A Config from before the operator: its storage is the one the
		// server runs.
		spec.Storage = o.opts.Bootstrap.Storage
		filled = append(filled, "storage")
	}
	if field := nameObjectStore(&spec.Storage); field != "" {
		// As the reference: a bucket or container named for the registry,
		// which Berth creates, so it is Managed.
		if spec.Storage.ManagementState == "" {
			spec.Storage.ManagementState = imageregistryv1.Managed
		}
		filled = append(filled, field)
	}
	if spec.Storage.PVC != nil && spec.Storage.PVC.Claim == "" {
		pvc := *spec.Storage.PVC
		pvc.Claim = imageregistryv1.DefaultClaim
		spec.Storage.PVC = &pvc
		filled = append(filled, "storage.pvc.claim")
	}
	if spec.Storage.ManagementState == "" && len(spec.Storage.StorageTypes()) == 1 {
		// As the reference: storage Berth provisions (an emptyDir, a volume
		// it creates) is Managed; storage that was there before (a
		// directory Berth did not make, object storage) is the user's.
		spec.Storage.ManagementState = imageregistryv1.Unmanaged
		if p, ok := o.opts.Storage.(StorageProvisioner); ok {
			provisions, err := p.Provisions(ctx, spec.Storage)
			if err != nil {
				return false, fmt.Errorf("complete storage.managementState: %w", err)
			}
			if provisions {
				spec.Storage.ManagementState = imageregistryv1.Managed
			}
		}
		filled = append(filled, "storage.managementState")
	}
	if len(filled) == 0 {
		return false, nil
	}
	cfg.Spec = spec
	cfg.Generation++
	out, err := encode(cfg)
	if err != nil {
		return false, err
	}
	if _, err := o.opts.Store.UpdateObject(ctx, out, rec.ResourceVersion); err != nil {
		if errors.Is(err, errdefs.ErrConflict) {
			return true, nil // someone wrote first: the next pass sees it
		}
		return false, fmt.Errorf("complete the registry Config (%s): %w", strings.Join(filled, ", "), err)
	}
	o.log.Info("completed the registry Config", "fields", filled)
	return true, nil
}

func neverReconciled(cfg *imageregistryv1.Config) bool {
	return cfg.Status.ObservedGeneration == 0 && len(cfg.Status.Conditions) == 0
}

// writeStatus stores status unless it says what the stored one says;
// conditions keep their lastTransitionTime while their status stands.
func (o *Operator) writeStatus(ctx context.Context, rec store.Object, cfg *imageregistryv1.Config, status imageregistryv1.ConfigStatus) error {
	now := metav1.NewTime(o.opts.Now().UTC().Truncate(time.Second))
	for i := range status.Conditions {
		c := &status.Conditions[i]
		c.LastTransitionTime = now
		for _, old := range cfg.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	// Compared as stored (JSON: empty and nil slices, time precision alike).
	if normalizeJSON(status) == normalizeJSON(cfg.Status) {
		return nil
	}
	cfg.Status = status
	out, err := encode(cfg)
	if err != nil {
		return err
	}
	if _, err := o.opts.Store.UpdateObject(ctx, out, rec.ResourceVersion); err != nil {
		if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrNotFound) {
			return nil // changed or deleted meanwhile: the next pass writes
		}
		return fmt.Errorf("write the registry Config's status: %w", err)
	}
	return nil
}

func encode(cfg *imageregistryv1.Config) (store.Object, error) {
	cfg.APIVersion = imageregistryv1.GroupName + "/v1"
	cfg.Kind = "Config"
	cfg.ResourceVersion = ""
	cfg.ManagedFields = nil
	body, err := json.Marshal(cfg)
	if err != nil {
		return store.Object{}, fmt.Errorf("encode the registry Config: %w", err)
	}
	return store.Object{ObjectKey: ConfigKey, UID: string(cfg.UID), Created: cfg.CreationTimestamp.Time, Labels: cfg.Labels, Body: body}, nil
}

func decode(rec store.Object) (*imageregistryv1.Config, error) {
	cfg := &imageregistryv1.Config{}
	if err := json.Unmarshal(rec.Body, cfg); err != nil {
		return nil, fmt.Errorf("decode the registry Config: %w", err)
	}
	cfg.ResourceVersion = strconv.FormatInt(rec.ResourceVersion, 10)
	return cfg, nil
}

func newHTTPSecret() string {
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// conditionSummary is "Type=Status/Reason" of each condition, for the
// debug log.
func conditionSummary(conds []imageregistryv1.OperatorCondition) string {
	parts := make([]string, 0, len(conds))
	for _, c := range conds {
		parts = append(parts, c.Type+"="+c.Status+"/"+c.Reason)
	}
	return strings.Join(parts, " ")
}

// nameObjectStore names the bucket or container of an object store the
// spec names none for, and says which field it filled ("" for none).
// Azure's account is the Config's: Berth creates no storage accounts.
func nameObjectStore(s *imageregistryv1.StorageConfig) string {
	switch {
	case s.S3 != nil && s.S3.Bucket == "":
		c := *s.S3
		c.Bucket = generatedBucket(c.Region, "us-east-1")
		s.S3 = &c
		return "storage.s3.bucket"
	case s.GCS != nil && s.GCS.Bucket == "":
		c := *s.GCS
		c.Bucket = generatedBucket(c.Region, "us")
		s.GCS = &c
		return "storage.gcs.bucket"
	case s.Azure != nil && s.Azure.Container == "":
		c := *s.Azure
		c.Container = generatedContainer()
		s.Azure = &c
		return "storage.azure.container"
	case s.Swift != nil && s.Swift.Container == "":
		c := *s.Swift
		c.Container = generatedContainer()
		s.Swift = &c
		return "storage.swift.container"
	}
	return ""
}

// generatedContainer names an Azure or Swift container for a Config that
// names none: berth-<random>-image-registry (the reference's pattern,
// ^[0-9a-z]+(-[0-9a-z]+)*$, 3 to 63 characters).
func generatedContainer() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "berth-" + hex.EncodeToString(b) + "-image-registry"
}

// generatedBucket names a bucket for a Config that names none, in the
// reference's shape <infrastructure>-image-registry-<region> (the
// provider's default region when the Config names none): Berth has
// no infrastructure name, so a random one stands in (bucket names are
// global, and two installations must not share one). At most 62
// characters, lower case, never ending in '-'.
func generatedBucket(region, defaultRegion string) string {
	if region == "" {
		region = defaultRegion
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := strings.ToLower("berth-" + hex.EncodeToString(b) + "-image-registry-" + region)
	if len(name) > 62 {
		name = name[:62]
	}
	if strings.HasSuffix(name, "-") {
		name = name[:len(name)-1] + "s"
	}
	return name
}
