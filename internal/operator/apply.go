package operator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/types"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storagemigration"
)

// Levels below slog's Debug for the reference's finer log levels.
const (
	LevelTrace    = slog.LevelDebug - 4
	LevelTraceAll = slog.LevelDebug - 8
)

// LogLevel is the slog level of a spec: the reference's mapping, with
// Trace and TraceAll below Debug.
func LogLevel(spec imageregistryv1.ConfigSpec) slog.Level {
	switch spec.LogLevel {
	case imageregistryv1.LogTrace:
		return LevelTrace
	case imageregistryv1.LogTraceAll:
		return LevelTraceAll
	}
	switch spec.LogLevelName() {
	case "warn":
		return slog.LevelWarn
	case "debug":
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// apply puts cfg in effect as far as it can and returns the status that
// says how far.
func (o *Operator) apply(ctx context.Context, cfg *imageregistryv1.Config) imageregistryv1.ConfigStatus {
	spec := cfg.Spec
	cur := o.opts.Settings.Load()
	status := imageregistryv1.ConfigStatus{
		ObservedGeneration: cfg.Generation,
		Storage:            cfg.Status.Storage,
		StorageManaged:     cfg.Status.StorageManaged,
	}
	ready, err := o.opts.ReadyReplicas(ctx)
	if err != nil {
		o.log.Warn("count ready instances", "err", err)
	}
	status.ReadyReplicas = int32(ready)

	if spec.ManagementState == imageregistryv1.Unmanaged {
		// Changes are stored and not applied: the snapshot stays.
		const msg = "The registry configuration is set to unmanaged mode"
		status.ObservedGeneration = cfg.Status.ObservedGeneration
		status.Conditions = []imageregistryv1.OperatorCondition{
			cond(imageregistryv1.ConditionAvailable, "True", "Unmanaged", msg),
			cond(imageregistryv1.ConditionProgressing, "False", "Unmanaged", msg),
			cond(imageregistryv1.ConditionDegraded, "False", "Unmanaged", msg),
			cond(imageregistryv1.ConditionRemoved, "False", "", ""),
		}
		return status
	}
	if problems := imageregistryv1.Validate(cfg); len(problems) > 0 {
		// Stored before a rule existed, or written around the API: the
		// last good settings stay in effect.
		msg := "Error: unable to complete resource: " + strings.Join(problems, "; ")
		status.ObservedGeneration = cfg.Status.ObservedGeneration
		status.Conditions = []imageregistryv1.OperatorCondition{
			availableNow(cur),
			cond(imageregistryv1.ConditionProgressing, "False", "Error", "Unable to apply resources: "+strings.Join(problems, "; ")),
			cond(imageregistryv1.ConditionDegraded, "True", "VerificationFailed", msg),
			cond(imageregistryv1.ConditionRemoved, "False", "", ""),
		}
		return status
	}

	next := &settings.Settings{
		Generation:      cfg.Generation,
		ReadOnly:        spec.ReadOnly,
		Replicas:        int(spec.Replicas),
		LogLevel:        LogLevel(spec),
		DisableRedirect: spec.DisableRedirect,
		Proxy:           settings.Proxy{HTTP: spec.Proxy.HTTP, HTTPS: spec.Proxy.HTTPS, NoProxy: spec.Proxy.NoProxy},
		Requests: settings.Requests{
			Read:  limits(spec.Requests.Read),
			Write: limits(spec.Requests.Write),
		},
		TagHistoryLimit: int(spec.ImageStreams.TagHistoryLimit),
		// A copy: the snapshot is never changed, whatever becomes of cfg.
		WebhookDestinations: slices.Clone(spec.Webhooks.AllowedDestinations),
		ImportDestinations:  slices.Clone(spec.ImageStreams.AllowedImportDestinations),
	}
	// A generated secret is hex; one a user chose is used as written.
	secret, err := hex.DecodeString(spec.HTTPSecret)
	if err != nil {
		secret = []byte(spec.HTTPSecret)
	}
	next.HTTPSecret = secret

	var degraded []string
	storageCond := imageregistryv1.OperatorCondition{}
	var storageMore []imageregistryv1.OperatorCondition
	storageConfigured := len(spec.Storage.StorageTypes()) > 0
	switch {
	case spec.ManagementState == imageregistryv1.Removed:
		next.Unavailable = "the registry is removed (spec.managementState of the registry Config is Removed)"
	case !storageConfigured:
		next.Unavailable = "storage backend not configured"
	}
	// Without a storage configured /v2 is out of service, but the storage
	// last in effect stays in the snapshot for what still reads blobs
	// (the API's image configs).
	next.Storage = cur.Storage
	next.Older = cur.Older
	want := DesiredStorage{Config: spec.Storage, Resolve: o.resolveStorage}
	// What the storage needs but could not be read (the user secret, the
	// trusted-CA ConfigMap) leaves the storage in effect as it is: built
	// without them it would fail, or reach its backend as no one.
	unresolved := false
	if storageConfigured {
		creds, err := o.storageCredentials(ctx, spec.Storage)
		if err != nil {
			degraded = append(degraded, "Error: "+err.Error())
			unresolved, creds = true, cur.StorageCredentials
		}
		next.StorageCredentials, want.Credentials = creds, creds
		ca, err := o.trustedCA(ctx, spec.Storage)
		if err != nil {
			degraded = append(degraded, "Error: "+err.Error())
			unresolved = true
		}
		want.TrustedCA = ca
		secrets, err := o.storageSecrets(ctx, spec.Storage)
		if err != nil {
			degraded = append(degraded, "Error: "+err.Error())
			unresolved = true
		}
		want.Secrets = secrets
	}
	if spec.ManagementState == imageregistryv1.Removed {
		// As the reference's operator: the storage recorded in status is
		// removed once, when Berth provisioned it (Managed), never when the
		// user did; status.storage is then empty, and a return to Managed
		// provisions it afresh.
		status.Storage, status.StorageManaged = cfg.Status.Storage, cfg.Status.StorageManaged
		storageCond = cond(imageregistryv1.ConditionStorageExists, "True", "Storage Kept", "the registry is removed; its storage is kept")
		switch remover, ok := o.opts.Storage.(StorageRemover); {
		case len(cfg.Status.Storage.StorageTypes()) == 0:
			storageCond = cond(imageregistryv1.ConditionStorageExists, "False", "Storage Removed", "the storage was removed with the registry")
			if c := findCondition(cfg.Status.Conditions, imageregistryv1.ConditionStorageExists); c.Reason == "Storage Removed" {
				storageCond.Message = c.Message
			}
		case spec.Storage.ManagementState != imageregistryv1.Managed || cfg.Status.Storage.ManagementState != imageregistryv1.Managed:
			// The spec says what may be removed now, as on the reference;
			// status, what was Managed when it was last applied.
			storageCond.Message = "the registry is removed; its storage is Unmanaged (not provisioned by Berth), so it is kept"
		case ok:
			what, err := remover.RemoveStorage(ctx, cfg.Status.Storage)
			if errors.Is(err, ErrNotProvisioned) {
				storageCond.Message = "the registry is removed; its storage is kept: " + err.Error()
				break
			}
			if err != nil {
				degraded = append(degraded, fmt.Sprintf("Error: unable to remove storage: %v", err))
				storageCond = cond(imageregistryv1.ConditionStorageExists, "Unknown", "Removal Failed", err.Error())
				break
			}
			o.log.Info("removed the registry's storage with the registry", "removed", what)
			status.Storage, status.StorageManaged = imageregistryv1.StorageConfig{}, false
			storageCond = cond(imageregistryv1.ConditionStorageExists, "False", "Storage Removed", "removed "+what)
		}
	} else if storageConfigured && unresolved {
		status.Storage, status.StorageManaged = cfg.Status.Storage, cfg.Status.StorageManaged
		storageCond = findCondition(cfg.Status.Conditions, imageregistryv1.ConditionStorageExists)
		if storageCond.Type == "" {
			storageCond = cond(imageregistryv1.ConditionStorageExists, "Unknown", "StorageNotApplied", "what the storage needs could not be read (see Degraded)")
		}
		if c := findCondition(cfg.Status.Conditions, imageregistryv1.ConditionStorageMigrationPending); c.Type != "" {
			storageMore = append(storageMore, c)
		}
	} else if storageConfigured {
		inEffect, err := o.opts.Storage.ApplyStorage(ctx, want)
		status.Storage = inEffect.Config
		status.StorageManaged = inEffect.Config.ManagementState == imageregistryv1.Managed
		next.Storage = inEffect.Blobs
		next.Older = inEffect.Older
		pending, trouble := migrationPending(inEffect.Pending)
		storageMore = append(storageMore, pending)
		degraded = append(degraded, trouble...)
		if err != nil {
			degraded = append(degraded, fmt.Sprintf("Error: unable to sync storage configuration: %v", err))
			storageCond = cond(imageregistryv1.ConditionStorageExists, "False", "StorageNotApplied", err.Error())
		} else {
			var more []imageregistryv1.OperatorCondition
			storageCond, more = storageConditions(inEffect)
			storageMore = append(more, storageMore...)
			if c := redirectCondition(inEffect, spec.DisableRedirect); c.Type != "" {
				storageMore = append(storageMore, c)
			}
			if err := o.storageHealth(ctx); err != nil {
				// In effect but not answering (a bucket unreachable, a
				// volume gone read-only): said at every pass until it
				// answers again.
				storageCond = cond(imageregistryv1.ConditionStorageExists, "Unknown", "Storage Unreachable", err.Error())
				degraded = append(degraded, "Error: the storage in effect does not answer: "+err.Error())
			}
		}
	} else {
		status.Storage = imageregistryv1.StorageConfig{}
		status.StorageManaged = false
	}
	if o.opts.SharedStore && status.Storage.EmptyDir != nil {
		degraded = append(degraded, "spec.storage is emptyDir, each instance's own memory: instances that share the metadata store cannot read the blobs another holds; use object storage or a shared volume (pvc)")
	}
	if spec.Replicas > 1 && !o.opts.SharedStore {
		degraded = append(degraded, fmt.Sprintf("spec.replicas is %d: more than one instance needs shared storage (object storage) and the PostgreSQL store; this registry runs one instance on %s storage and SQLite", spec.Replicas, storageName(status.Storage)))
	}
	if spec.Replicas == 0 && next.Unavailable == "" {
		next.Unavailable = "the registry is scaled to zero replicas (spec.replicas of the registry Config is 0)"
	}
	routes := o.resolveRoutes(ctx, spec)
	next.Routes = servedRoutes(routes)
	o.swap(next)
	// A route that cannot be served leaves the others and the rest of the
	// spec in effect; Degraded names it.
	routeTrouble := routeProblems(routes)
	if err := o.publishRoutes(ctx, routes); err != nil {
		routeTrouble = append(routeTrouble, fmt.Sprintf("unable to publish the routes: %v", err))
	}
	degradedReason := "ConfigurationNotApplied"
	if len(degraded) == 0 && len(routeTrouble) > 0 {
		degradedReason = "RouteDegraded"
	}
	degraded = append(degraded, routeTrouble...)

	var conds []imageregistryv1.OperatorCondition
	switch {
	case spec.ManagementState == imageregistryv1.Removed:
		degradedCond := cond(imageregistryv1.ConditionDegraded, "False", "Removed", "The registry is removed")
		if len(degraded) > 0 {
			degradedCond = cond(imageregistryv1.ConditionDegraded, "True", "RemoveFailed", strings.Join(degraded, "; "))
		}
		conds = []imageregistryv1.OperatorCondition{
			cond(imageregistryv1.ConditionAvailable, "True", "Removed", "The registry is removed"),
			cond(imageregistryv1.ConditionProgressing, "False", "Removed", "All registry resources are removed"),
			degradedCond,
			cond(imageregistryv1.ConditionRemoved, "True", "Removed", "The registry is removed"),
		}
	case !storageConfigured:
		conds = []imageregistryv1.OperatorCondition{
			cond(imageregistryv1.ConditionAvailable, "False", "StorageNotConfigured", "storage backend not configured"),
			cond(imageregistryv1.ConditionProgressing, "False", "Error", "Unable to apply resources: storage backend not configured"),
			cond(imageregistryv1.ConditionDegraded, "True", "StorageNotConfigured", "Error: storage backend not configured"),
			cond(imageregistryv1.ConditionRemoved, "False", "", ""),
		}
	default:
		conds = []imageregistryv1.OperatorCondition{availability(spec, ready, next)}
		if int32(ready) < spec.Replicas && len(degraded) == 0 {
			conds = append(conds, cond(imageregistryv1.ConditionProgressing, "True", "DeploymentNotCompleted",
				fmt.Sprintf("%d of %d instances are ready", ready, spec.Replicas)))
		} else if len(degraded) > 0 {
			conds = append(conds, cond(imageregistryv1.ConditionProgressing, "False", "Error", "Unable to apply resources: "+strings.Join(degraded, "; ")))
		} else {
			conds = append(conds, cond(imageregistryv1.ConditionProgressing, "False", "Ready", "The registry is ready"))
		}
		if len(degraded) > 0 {
			conds = append(conds, cond(imageregistryv1.ConditionDegraded, "True", degradedReason, strings.Join(degraded, "; ")))
		} else {
			conds = append(conds, cond(imageregistryv1.ConditionDegraded, "False", "", ""))
		}
		conds = append(conds, cond(imageregistryv1.ConditionRemoved, "False", "", ""))
	}
	if storageCond.Type != "" {
		conds = append(conds, storageCond)
	}
	conds = append(conds, storageMore...)
	status.Conditions = conds
	return status
}

// resolveStorage resolves what the storage configuration s names: its
// credentials, CA bundle and secrets (an older storage opened again).
func (o *Operator) resolveStorage(ctx context.Context, s imageregistryv1.StorageConfig) (DesiredStorage, error) {
	want := DesiredStorage{Config: s}
	var err error
	if want.Credentials, err = o.storageCredentials(ctx, s); err != nil {
		return want, err
	}
	if want.TrustedCA, err = o.trustedCA(ctx, s); err != nil {
		return want, err
	}
	if want.Secrets, err = o.storageSecrets(ctx, s); err != nil {
		return want, err
	}
	return want, nil
}

// migrationPending is the StorageMigrationPending condition of the older
// storages still holding blobs, and what Degraded says of those that
// cannot be opened (their blobs are unavailable until they can).
func migrationPending(pending []PendingStorage) (imageregistryv1.OperatorCondition, []string) {
	if len(pending) == 0 {
		return cond(imageregistryv1.ConditionStorageMigrationPending, "False", "AllBlobsInEffect",
			"every blob is in the storage in effect"), nil
	}
	var blobs, bytes int64
	var each, trouble []string
	for _, p := range pending {
		blobs += p.Blobs
		bytes += p.Bytes
		line := fmt.Sprintf("%s: %d blobs, %s", p.Name, p.Blobs, storagemigration.Size(p.Bytes))
		if p.Note != "" {
			line += " (" + p.Note + ")"
		}
		each = append(each, line)
		if p.Err != nil {
			trouble = append(trouble, fmt.Sprintf("Error: the older storage %s holds %d blobs and cannot be opened (its blobs are unavailable until it can): %v", p.Name, p.Blobs, p.Err))
		}
	}
	return cond(imageregistryv1.ConditionStorageMigrationPending, "True", "OlderStoragesHoldBlobs",
		fmt.Sprintf("%d blobs (%s) are in storages the registry was switched away from, and are read from there until berth adm migrate-storage moves them: %s",
			blobs, storagemigration.Size(bytes), strings.Join(each, "; "))), trouble
}

// swap puts next in effect unless it is what is in effect.
func (o *Operator) swap(next *settings.Settings) {
	cur := o.opts.Settings.Load()
	if fingerprint(cur) == fingerprint(next) {
		return
	}
	if o.opts.SetLogLevel != nil && cur.LogLevel != next.LogLevel {
		o.opts.SetLogLevel(next.LogLevel)
	}
	o.opts.Settings.Store(next)
	hosts := make([]string, len(next.Routes))
	for i, r := range next.Routes {
		hosts[i] = r.Name + "=" + r.Host
	}
	o.log.Info("registry settings in effect", "generation", next.Generation, "storage", next.Storage.ID, "readOnly", next.ReadOnly,
		"logLevel", next.LogLevel, "unavailable", next.Unavailable,
		"read", fmt.Sprintf("%+v", next.Requests.Read), "write", fmt.Sprintf("%+v", next.Requests.Write),
		"routes", hosts, "tagHistoryLimit", next.TagHistoryLimit, "webhookDestinations", next.WebhookDestinations)
}

// fingerprint compares snapshots; the secret is compared, never logged.
// A storage is known by its ID: one ID, one driver, for the process's life.
func fingerprint(s *settings.Settings) string {
	return fmt.Sprintf("%d|%d|%q|%t|%d|%+v|%x|%t|%q|%s|%q|%d|%q|%q", s.Generation, s.Replicas, s.Unavailable, s.ReadOnly, s.LogLevel, s.Requests, s.HTTPSecret, s.DisableRedirect, s.Proxy,
		routesFingerprint(s.Routes), s.Storage.ID, s.TagHistoryLimit, s.WebhookDestinations, s.ImportDestinations) + "|" + s.Storage.Version + "|" + olderFingerprint(s.Older) + "|" + credentialsDigest(s.StorageCredentials)
}

// olderFingerprint stands for the older storages of a snapshot: which,
// whether each could be opened, and with what settings.
func olderFingerprint(older []settings.Storage) string {
	parts := make([]string, len(older))
	for i, o := range older {
		parts[i] = fmt.Sprintf("%s=%t/%s", o.ID, o.Driver != nil, o.Version)
	}
	return strings.Join(parts, ",")
}

func limits(l imageregistryv1.RequestLimits) settings.Limits {
	return settings.Limits{MaxRunning: int(l.MaxRunning), MaxInQueue: int(l.MaxInQueue), MaxWait: l.MaxWaitInQueue.Duration}
}

func availability(spec imageregistryv1.ConfigSpec, ready int, s *settings.Settings) imageregistryv1.OperatorCondition {
	switch {
	case s.Unavailable != "":
		return cond(imageregistryv1.ConditionAvailable, "False", "NoReplicasAvailable", s.Unavailable)
	case ready == 0:
		return cond(imageregistryv1.ConditionAvailable, "False", "NoReplicasAvailable", "The deployment does not have available replicas")
	case int32(ready) != spec.Replicas:
		return cond(imageregistryv1.ConditionAvailable, "True", "MinimumAvailability", "The registry has minimum availability")
	}
	return cond(imageregistryv1.ConditionAvailable, "True", "Ready", "The registry is ready")
}

// availableNow is the Available condition of the settings in effect, for
// a Config that could not be applied.
func availableNow(s *settings.Settings) imageregistryv1.OperatorCondition {
	if s.Unavailable != "" {
		return cond(imageregistryv1.ConditionAvailable, "False", "NoReplicasAvailable", s.Unavailable)
	}
	return cond(imageregistryv1.ConditionAvailable, "True", "Ready", "The registry is ready with the last valid configuration")
}

// storageConditions are StorageExists and the driver's other conditions
// of the storage in effect.
func storageConditions(a AppliedStorage) (exists imageregistryv1.OperatorCondition, more []imageregistryv1.OperatorCondition) {
	exists = storageExists(a)
	for _, c := range a.Conditions {
		oc := cond(c.Type, c.Status, c.Reason, c.Message)
		if c.Type == imageregistryv1.ConditionStorageExists {
			exists = oc
			continue
		}
		more = append(more, oc)
	}
	return exists, more
}

func storageExists(a AppliedStorage) imageregistryv1.OperatorCondition {
	s := a.Config
	switch {
	case s.EmptyDir != nil:
		return cond(imageregistryv1.ConditionStorageExists, "True", "Creation Successful", "EmptyDir storage successfully created")
	case s.PVC != nil && a.Created:
		return cond(imageregistryv1.ConditionStorageExists, "True", "PVC Created", fmt.Sprintf("volume %s was created and is in use", s.PVC.Claim))
	case s.PVC != nil:
		return cond(imageregistryv1.ConditionStorageExists, "True", "PVC Exists", fmt.Sprintf("volume %s is in use", s.PVC.Claim))
	}
	return cond(imageregistryv1.ConditionStorageExists, "True", "Storage Exists", "")
}

func storageName(s imageregistryv1.StorageConfig) string {
	if names := s.StorageTypes(); len(names) > 0 {
		return names[0]
	}
	return "no"
}

func cond(typ, status, reason, message string) imageregistryv1.OperatorCondition {
	return imageregistryv1.OperatorCondition{Type: typ, Status: status, Reason: reason, Message: message}
}

func typesUID() types.UID { return types.UID(uuid.NewString()) }

// StorageRemover is the optional capability of a Storage to remove what
// it provisioned, for a registry set to Removed; it describes what it
// removed.
type StorageRemover interface {
	RemoveStorage(ctx context.Context, spec imageregistryv1.StorageConfig) (string, error)
}

// ErrNotProvisioned is what RemoveStorage fails with for storage Berth
// did not provision: it is kept.
var ErrNotProvisioned = errors.New("not provisioned by Berth, so it is kept")

// StorageProvisioner is a Storage that tells whether Berth provisions the
// storage a spec names (so its managementState is Managed when the spec
// leaves it empty). Without it, storage is Unmanaged.
type StorageProvisioner interface {
	Provisions(ctx context.Context, spec imageregistryv1.StorageConfig) (bool, error)
}

func findCondition(conds []imageregistryv1.OperatorCondition, typ string) imageregistryv1.OperatorCondition {
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	return imageregistryv1.OperatorCondition{}
}

// StorageHealth is a Storage that can tell whether the storage in effect
// answers (/healthz asks the same).
type StorageHealth interface {
	Health(ctx context.Context) error
}

// storageHealthTimeout bounds the operator's check of the storage.
const storageHealthTimeout = 5 * time.Second

func (o *Operator) storageHealth(ctx context.Context) error {
	hc, ok := o.opts.Storage.(StorageHealth)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, storageHealthTimeout)
	defer cancel()
	return hc.Health(ctx)
}

// ConditionBlobRedirects says whether blob GETs are redirected to the
// storage, and where (Berth's: the reference's status does not say).
const ConditionBlobRedirects = "BlobRedirects"

// redirectCondition is BlobRedirects for a storage that can redirect;
// none for one that streams.
func redirectCondition(a AppliedStorage, disabled bool) imageregistryv1.OperatorCondition {
	switch {
	case a.Redirects == "":
		return imageregistryv1.OperatorCondition{}
	case disabled:
		return cond(ConditionBlobRedirects, "False", "RedirectDisabled",
			"spec.disableRedirect is set: blobs are streamed through the registry (the storage could redirect to "+a.Redirects+")")
	}
	return cond(ConditionBlobRedirects, "True", "Redirecting", "blob GETs redirect to "+a.Redirects+"; HEADs never do")
}
