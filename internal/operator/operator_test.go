package operator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1 "github.com/berth-registry/berth/internal/api/config/v1"
	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/prune"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/store"
)

// volumes applies emptyDir and pvc storage, as a process serving local
// storage does, and refuses object storage; a claim named "fresh" is a
// volume it creates.
type volumes struct{}

// Provisions: Berth provisions emptyDirs and volumes, except those whose
// claim says the user made them.
func (volumes) Provisions(_ context.Context, s imageregistryv1.StorageConfig) (bool, error) {
	return s.EmptyDir != nil || (s.PVC != nil && !strings.HasPrefix(s.PVC.Claim, "users-")), nil
}

func (volumes) ApplyStorage(_ context.Context, want operator.DesiredStorage) (operator.AppliedStorage, error) {
	s := want.Config
	if s.EmptyDir == nil && s.PVC == nil {
		return operator.AppliedStorage{Config: imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}},
			Blobs: settings.Storage{ID: "emptydir:test"}}, fmt.Errorf("the %s storage driver is not built yet", s.StorageTypes()[0])
	}
	if s.PVC != nil {
		a := operator.AppliedStorage{Config: s, Blobs: settings.Storage{ID: "pvc:" + s.PVC.Claim}, Created: s.PVC.Claim == "fresh"}
		if s.PVC.Claim == "fresh" {
			// Switched to from the default volume, which holds blobs.
			a.Older = []settings.Storage{{ID: "pvc:image-registry-storage", Driver: memory.NewDriver()}}
			a.Pending = []operator.PendingStorage{{ID: "pvc:image-registry-storage", Name: "pvc volume image-registry-storage", Blobs: 2, Bytes: 3 << 20}}
		}
		return a, nil
	}
	// The emptyDir finds the fresh volume gone.
	return operator.AppliedStorage{Config: s, Blobs: settings.Storage{ID: "emptydir:test"},
		Older:   []settings.Storage{{ID: "pvc:fresh"}},
		Pending: []operator.PendingStorage{{ID: "pvc:fresh", Name: "pvc volume fresh", Blobs: 1, Bytes: 10, Err: errors.New("volume directory gone")}}}, nil
}

type fixture struct {
	t        *testing.T
	st       *store.Store
	settings *settings.Holder
	op       *operator.Operator
	level    slog.Level
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, operator.RouteOptions{})
}

// newFixtureWith is newFixture whose routes are exposed as routes say.
func newFixtureWith(t *testing.T, routes operator.RouteOptions) *fixture {
	t.Helper()
	return newFixtureOpts(t, func(o *operator.Options) { o.Routes = routes })
}

// newFixtureOpts is newFixture with its operator's options changed by opts.
func newFixtureOpts(t *testing.T, opts func(*operator.Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, settings: settings.NewHolder(settings.Defaults())}
	o := operator.Options{
		Store: st, Settings: f.settings, Storage: volumes{}, Logger: slog.New(slog.DiscardHandler),
		Bootstrap: imageregistryv1.ConfigSpec{ManagementState: "Managed", Replicas: 1, LogLevel: "Normal",
			Storage: imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{}}},
		SetLogLevel: func(l slog.Level) { f.level = l },
	}
	opts(&o)
	f.op = operator.New(o)
	return f
}

func (f *fixture) reconcile() {
	f.t.Helper()
	if err := f.op.Reconcile(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) config() (*imageregistryv1.Config, store.Object) {
	f.t.Helper()
	rec, err := f.st.GetObject(context.Background(), operator.ConfigKey)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := &imageregistryv1.Config{}
	if err := json.Unmarshal(rec.Body, cfg); err != nil {
		f.t.Fatal(err)
	}
	return cfg, rec
}

// write changes the spec as the API server does: generation +1.
// A write that meets the operator's is made again on what it wrote.
func (f *fixture) write(change func(*imageregistryv1.ConfigSpec)) {
	f.t.Helper()
	for range 10 {
		cfg, rec := f.config()
		change(&cfg.Spec)
		cfg.Generation++
		body, err := json.Marshal(cfg)
		if err != nil {
			f.t.Fatal(err)
		}
		rec.Body = body
		_, err = f.st.UpdateObject(context.Background(), rec, rec.ResourceVersion)
		if errors.Is(err, errdefs.ErrConflict) {
			continue
		}
		if err != nil {
			f.t.Fatal(err)
		}
		return
	}
	f.t.Fatal("the Config kept changing under the test's write")
}

func (f *fixture) condition(typ string) imageregistryv1.OperatorCondition {
	f.t.Helper()
	cfg, _ := f.config()
	for _, c := range cfg.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	f.t.Fatalf("no %s condition in %+v", typ, cfg.Status.Conditions)
	return imageregistryv1.OperatorCondition{}
}

func (f *fixture) expectCondition(typ, status, reason, messagePart string) {
	f.t.Helper()
	c := f.condition(typ)
	if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, messagePart) {
		f.t.Errorf("%s = %s/%s %q, want %s/%s containing %q", typ, c.Status, c.Reason, c.Message, status, reason, messagePart)
	}
}

// A registry without a Config creates one as the reference's operator
// does, fills in what it generates, and reports it ready.
func TestBootstrap(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	cfg, _ := f.config()
	if cfg.Spec.ManagementState != "Managed" || cfg.Spec.Replicas != 1 || len(cfg.Spec.HTTPSecret) != 128 {
		t.Errorf("bootstrap spec: %+v", cfg.Spec)
	}
	if cfg.Spec.Storage.PVC == nil || cfg.Spec.Storage.PVC.Claim != imageregistryv1.DefaultClaim || cfg.Spec.Storage.ManagementState != "Managed" {
		t.Errorf("storage not completed: %+v", cfg.Spec.Storage)
	}
	if cfg.Status.ObservedGeneration != cfg.Generation || cfg.Generation < 1 {
		t.Errorf("observedGeneration %d of generation %d", cfg.Status.ObservedGeneration, cfg.Generation)
	}
	if cfg.Status.Storage.PVC == nil || !cfg.Status.StorageManaged || cfg.Status.ReadyReplicas != 1 {
		t.Errorf("status storage: %+v", cfg.Status)
	}
	f.expectCondition("Available", "True", "Ready", "The registry is ready")
	f.expectCondition("Progressing", "False", "Ready", "")
	f.expectCondition("Degraded", "False", "", "")
	f.expectCondition("Removed", "False", "", "")
	f.expectCondition("StorageExists", "True", "PVC Exists", "")
	s := f.settings.Load()
	if s.Generation != cfg.Generation || s.Unavailable != "" || s.ReadOnly || len(s.HTTPSecret) != 64 {
		t.Errorf("settings: %+v", s)
	}
	// A second pass with nothing new writes nothing.
	_, before := f.config()
	f.reconcile()
	if _, after := f.config(); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("a pass with nothing new wrote the Config (%d → %d)", before.ResourceVersion, after.ResourceVersion)
	}
}

// Each field of the snapshot follows the spec; lastTransitionTime
// changes only when a condition's status does.
func TestSpecTakesEffect(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	since := f.condition("Available").LastTransitionTime
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.ReadOnly = true
		s.DisableRedirect = true
		s.LogLevel = "Debug"
		s.Requests.Write = imageregistryv1.RequestLimits{MaxRunning: 2, MaxInQueue: 5}
		s.Requests.Read.MaxWaitInQueue.Duration = time.Minute
		s.HTTPSecret = "not-hex"
		s.Proxy = imageregistryv1.ProxyConfig{HTTP: "http://proxy.test:3128", NoProxy: ".corp"}
	})
	f.reconcile()
	s := f.settings.Load()
	want := settings.Requests{Write: settings.Limits{MaxRunning: 2, MaxInQueue: 5}, Read: settings.Limits{MaxWait: time.Minute}}
	if !s.ReadOnly || !s.DisableRedirect || s.LogLevel != slog.LevelDebug || s.Requests != want || string(s.HTTPSecret) != "not-hex" {
		t.Errorf("settings after the change: %+v", s)
	}
	if f.level != slog.LevelDebug {
		t.Errorf("log level applied: %v", f.level)
	}
	if s.Proxy != (settings.Proxy{HTTP: "http://proxy.test:3128", NoProxy: ".corp"}) {
		t.Errorf("proxy: %+v", s.Proxy)
	}
	cfg, _ := f.config()
	if cfg.Status.ObservedGeneration != cfg.Generation || s.Generation != cfg.Generation {
		t.Errorf("observedGeneration %d, settings %d, generation %d", cfg.Status.ObservedGeneration, s.Generation, cfg.Generation)
	}
	if got := f.condition("Available").LastTransitionTime; !got.Equal(&since) {
		t.Errorf("Available stayed True but its lastTransitionTime moved: %v → %v", since, got)
	}
	for _, l := range []struct {
		name string
		want slog.Level
	}{{"Trace", operator.LevelTrace}, {"TraceAll", operator.LevelTraceAll}, {"Normal", slog.LevelInfo}} {
		f.write(func(s *imageregistryv1.ConfigSpec) { s.LogLevel = l.name })
		f.reconcile()
		if f.level != l.want || f.settings.Load().LogLevel != l.want {
			t.Errorf("logLevel %s → %v, want %v", l.name, f.level, l.want)
		}
	}
	// The deprecated logging field, with logLevel Normal.
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Logging = 1 })
	f.reconcile()
	if f.level != slog.LevelWarn {
		t.Errorf("logging 1 → %v, want warn", f.level)
	}
}

// Unmanaged stores changes without applying them; Removed takes /v2 out
// of service; Managed brings the registry back.
func TestManagementStates(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	applied := f.settings.Load()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Unmanaged"; s.ReadOnly = true })
	f.reconcile()
	if f.settings.Load() != applied {
		t.Error("an Unmanaged Config changed the settings")
	}
	f.expectCondition("Available", "True", "Unmanaged", "unmanaged mode")
	f.expectCondition("Progressing", "False", "Unmanaged", "unmanaged mode")
	if cfg, _ := f.config(); cfg.Status.ObservedGeneration == cfg.Generation {
		t.Error("an Unmanaged change was reported observed")
	}

	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Removed" })
	f.reconcile()
	if s := f.settings.Load(); !strings.Contains(s.Unavailable, "removed") || !s.ReadOnly {
		t.Errorf("Removed: %+v", s)
	}
	f.expectCondition("Removed", "True", "Removed", "The registry is removed")
	f.expectCondition("Available", "True", "Removed", "")
	f.expectCondition("Progressing", "False", "Removed", "All registry resources are removed")

	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Managed"; s.ReadOnly = false })
	f.reconcile()
	if s := f.settings.Load(); s.Unavailable != "" || s.ReadOnly {
		t.Errorf("back to Managed: %+v", s)
	}
	f.expectCondition("Removed", "False", "", "")
}

// No storage: the resource stays, Available is False with the
// reference's reason and message, and /v2 is out of service. Storage the
// process cannot serve is named in status, and the storage in effect
// stays.
func TestStorageStates(t *testing.T) {
	t.Setenv("REGISTRY_STORAGE_S3_ACCESSKEY", "env-access")
	f := newFixture(t)
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Storage = imageregistryv1.StorageConfig{} })
	f.reconcile()
	f.expectCondition("Available", "False", "StorageNotConfigured", "storage backend not configured")
	f.expectCondition("Degraded", "True", "StorageNotConfigured", "Error: storage backend not configured")
	if s := f.settings.Load(); s.Unavailable != "storage backend not configured" {
		t.Errorf("unavailable = %q", s.Unavailable)
	}
	if cfg, _ := f.config(); len(cfg.Spec.Storage.StorageTypes()) != 0 {
		t.Errorf("the operator filled in storage the user removed: %+v", cfg.Spec.Storage)
	}

	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{S3: &imageregistryv1.S3Storage{Bucket: "b"}}
	})
	f.reconcile()
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", "the S3 storage driver is not built yet")
	f.expectCondition("StorageExists", "False", "StorageNotApplied", "S3")
	if cfg, _ := f.config(); cfg.Status.Storage.EmptyDir == nil || cfg.Status.Storage.S3 != nil {
		t.Errorf("status.storage should be what is in effect: %+v", cfg.Status.Storage)
	}

	// A trusted-CA ConfigMap that is missing is named.
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Storage.S3.TrustedCA.Name = "s3-ca" })
	f.reconcile()
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", `configmap "openshift-config/s3-ca" named by spec.storage.s3.trustedCA does not exist`)

	// Credentials: the environment, overridden by the user secret, which
	// must hold the keys the reference requires; values never in status.
	if got := f.settings.Load().StorageCredentials["REGISTRY_STORAGE_S3_ACCESSKEY"]; got != "env-access" {
		t.Errorf("access key from the environment: %q", got)
	}
	putSecret := func(data map[string]string) {
		t.Helper()
		b := map[string][]byte{}
		for k, v := range data {
			b[k] = []byte(v)
		}
		body, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": imageregistryv1.UserSecretName, "namespace": imageregistryv1.Namespace}, "data": b})
		rec, err := f.st.GetObject(context.Background(), operator.UserSecretKey)
		if errors.Is(err, errdefs.ErrNotFound) {
			if err := f.st.CreateProject(context.Background(), store.Project{Name: imageregistryv1.Namespace}); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Fatal(err)
			}
			if _, err := f.st.CreateObject(context.Background(), store.Object{ObjectKey: operator.UserSecretKey, UID: "u1", Body: body}); err != nil {
				t.Fatal(err)
			}
			return
		}
		rec.Body = body
		if _, err := f.st.UpdateObject(context.Background(), rec, rec.ResourceVersion); err != nil {
			t.Fatal(err)
		}
	}
	putSecret(map[string]string{"REGISTRY_STORAGE_S3_ACCESSKEY": "secret-access-value"})
	f.reconcile()
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", `does not contain required key "REGISTRY_STORAGE_S3_SECRETKEY"`)
	// A secret that cannot be used leaves the credentials in effect as
	// they were: the storage is not rebuilt as no one.
	if got := f.settings.Load().StorageCredentials["REGISTRY_STORAGE_S3_ACCESSKEY"]; got != "env-access" {
		t.Errorf("credentials in effect after an unusable secret: access key %q, want the environment's still", got)
	}
	putSecret(map[string]string{"REGISTRY_STORAGE_S3_ACCESSKEY": "secret-access-value", "REGISTRY_STORAGE_S3_SECRETKEY": "secret-key-value"})
	f.reconcile()
	if c := f.settings.Load().StorageCredentials; c["REGISTRY_STORAGE_S3_ACCESSKEY"] != "secret-access-value" || c["REGISTRY_STORAGE_S3_SECRETKEY"] != "secret-key-value" {
		t.Errorf("credentials from the secret, applied with no change of the Config: %v", len(c))
	}
	if cfg, rec := f.config(); strings.Contains(string(rec.Body), "secret-access-value") || strings.Contains(string(rec.Body), "env-access") {
		t.Errorf("a credential reached the Config: %+v", cfg.Status)
	}

	// Two storage types written around the API's validation: refused with
	// the reference's message, the last good settings stay.
	before := f.settings.Load()
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}, PVC: &imageregistryv1.PVCStorage{}}
		s.ReadOnly = true
	})
	f.reconcile()
	f.expectCondition("Degraded", "True", "VerificationFailed", "exactly one storage type should be configured at the same time, got 2: [EmptyDir PVC]")
	if f.settings.Load() != before {
		t.Error("an invalid Config changed the settings")
	}
}

// A storage switch reaches the snapshot; a storage Berth created is
// reported with the reference's reason; a storage that cannot be applied,
// or none, leaves the one in effect.
func TestStorageSwitch(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	if id := f.settings.Load().Storage.ID; id != "pvc:image-registry-storage" {
		t.Fatalf("storage in effect = %q", id)
	}
	f.expectCondition("StorageExists", "True", "PVC Exists", "image-registry-storage")
	f.expectCondition("StorageMigrationPending", "False", "AllBlobsInEffect", "every blob is in the storage in effect")

	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: "fresh"}}
	})
	f.reconcile()
	f.expectCondition("StorageExists", "True", "PVC Created", "fresh")
	// The older storage is read from, and said to hold what it holds.
	f.expectCondition("StorageMigrationPending", "True", "OlderStoragesHoldBlobs", "2 blobs (3.0 MiB) are in storages the registry was switched away from")
	f.expectCondition("StorageMigrationPending", "True", "OlderStoragesHoldBlobs", "pvc volume image-registry-storage: 2 blobs, 3.0 MiB")
	f.expectCondition("Degraded", "False", "", "")
	if older := f.settings.Load().Older; len(older) != 1 || older[0].ID != "pvc:image-registry-storage" || older[0].Driver == nil {
		t.Errorf("older storages in the snapshot: %+v", older)
	}
	// What the storage needs cannot be read (a secret without its keys):
	// the storages in effect, older ones included, stay.
	if err := f.st.CreateProject(context.Background(), store.Project{Name: imageregistryv1.Namespace}); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatal(err)
	}
	secret, err := f.st.CreateObject(context.Background(), store.Object{ObjectKey: operator.UserSecretKey, UID: "u1",
		Body: []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"image-registry-private-configuration-user","namespace":"openshift-image-registry"},"data":{}}`)})
	if err != nil {
		t.Fatal(err)
	}
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{S3: &imageregistryv1.S3Storage{Bucket: "b", Region: "us-east-1"}}
	})
	f.reconcile()
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", "REGISTRY_STORAGE_S3_ACCESSKEY")
	f.expectCondition("StorageMigrationPending", "True", "OlderStoragesHoldBlobs", "pvc volume image-registry-storage: 2 blobs")
	if s := f.settings.Load(); s.Storage.ID != "pvc:fresh" || len(s.Older) != 1 {
		t.Errorf("an unresolved storage changed the storages in effect: %q, older %+v", s.Storage.ID, s.Older)
	}
	if _, err := f.st.DeleteObject(context.Background(), operator.UserSecretKey, secret.ResourceVersion, secret.UID); err != nil {
		t.Fatal(err)
	}
	if id := f.settings.Load().Storage.ID; id != "pvc:fresh" {
		t.Fatalf("storage in effect after the switch = %q", id)
	}
	if cfg, _ := f.config(); cfg.Status.Storage.PVC == nil || cfg.Status.Storage.PVC.Claim != "fresh" || cfg.Status.ObservedGeneration != cfg.Generation {
		t.Errorf("status after the switch: %+v", cfg.Status)
	}

	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}
	})
	f.reconcile()
	f.expectCondition("StorageExists", "True", "Creation Successful", "EmptyDir storage successfully created")
	// An older storage that cannot be opened: Degraded names it.
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", "the older storage pvc volume fresh holds 1 blobs and cannot be opened (its blobs are unavailable until it can): volume directory gone")
	if older := f.settings.Load().Older; len(older) != 1 || older[0].Driver != nil {
		t.Errorf("an older storage that cannot be opened, in the snapshot: %+v", older)
	}
	if id := f.settings.Load().Storage.ID; id != "emptydir:test" {
		t.Fatalf("storage in effect after the switch to emptyDir = %q", id)
	}

	f.write(func(s *imageregistryv1.ConfigSpec) { s.Storage = imageregistryv1.StorageConfig{} })
	f.reconcile()
	if id := f.settings.Load().Storage.ID; id != "emptydir:test" {
		t.Errorf("no storage configured: the snapshot lost the storage last in effect (%q)", id)
	}
}

// More instances than one need shared storage and a shared store: said
// in Degraded. Zero takes /v2 out of service.
func TestReplicas(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Replicas = 3 })
	f.reconcile()
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", "spec.replicas is 3: more than one instance needs shared storage")
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Replicas = 0 })
	f.reconcile()
	f.expectCondition("Available", "False", "NoReplicasAvailable", "scaled to zero")
	if s := f.settings.Load(); !strings.Contains(s.Unavailable, "zero replicas") {
		t.Errorf("replicas 0: %+v", s)
	}
}

// On a store instances share, replicas is the count of instances:
// Progressing while fewer are ready, Available once all are; emptyDir
// storage, each instance's own, is Degraded there.
func TestReplicasOnASharedStore(t *testing.T) {
	ready := 2
	f := newFixtureOpts(t, func(o *operator.Options) {
		o.SharedStore = true
		o.ReadyReplicas = func(context.Context) (int, error) { return ready, nil }
	})
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Replicas = 3 })
	f.reconcile()
	f.expectCondition("Progressing", "True", "DeploymentNotCompleted", "2 of 3 instances are ready")
	f.expectCondition("Degraded", "False", "", "")
	ready = 3
	f.reconcile()
	f.expectCondition("Progressing", "False", "Ready", "")
	f.expectCondition("Available", "True", "Ready", "")
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}
	})
	f.reconcile()
	f.expectCondition("Degraded", "True", "ConfigurationNotApplied", "instances that share the metadata store cannot read the blobs")
}

// Where instances share the store, only the one told to writes the
// status; the others apply the Config all the same.
func TestOneInstanceWritesTheStatus(t *testing.T) {
	writes := false
	f := newFixtureOpts(t, func(o *operator.Options) {
		o.SharedStore = true
		o.WritesStatus = func() bool { return writes }
	})
	f.reconcile()
	if cfg, _ := f.config(); len(cfg.Status.Conditions) != 0 {
		t.Fatalf("an instance not told to wrote the status: %+v", cfg.Status.Conditions)
	}
	if f.settings.Load().Storage.ID == "" {
		t.Fatal("an instance that writes no status did not apply the Config")
	}
	writes = true
	f.reconcile()
	f.expectCondition("Available", "True", "Ready", "")
}

// A deleted Config comes back with defaults at the next pass, with a new
// httpSecret; an emptied httpSecret is generated and written back.
func TestRecreateAndGenerate(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	old, rec := f.config()
	if _, err := f.st.DeleteObject(context.Background(), operator.ConfigKey, rec.ResourceVersion, rec.UID); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	fresh, _ := f.config()
	if fresh.UID == old.UID || fresh.Spec.HTTPSecret == old.Spec.HTTPSecret || len(fresh.Spec.HTTPSecret) != 128 {
		t.Errorf("recreated Config: uid %s → %s, secret changed %t", old.UID, fresh.UID, fresh.Spec.HTTPSecret != old.Spec.HTTPSecret)
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.HTTPSecret = "" })
	f.reconcile()
	if cfg, _ := f.config(); len(cfg.Spec.HTTPSecret) != 128 || cfg.Spec.HTTPSecret == fresh.Spec.HTTPSecret {
		t.Errorf("emptied httpSecret: %q", cfg.Spec.HTTPSecret)
	}
}

// Run follows the store's changes with no call to Reconcile.
func TestRunFollowsChanges(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.op.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return f.settings.Load().Generation > 0 })
	changed := f.settings.Changed()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ReadOnly = true })
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("a change of the Config did not reach the settings")
	}
	waitFor(t, func() bool { return f.settings.Load().ReadOnly })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(errors.New("condition not met within 10s"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The ClusterOperator is the union of the Config's conditions, as the
// reference derives it, and follows them.
func TestClusterOperator(t *testing.T) {
	f := newFixture(t)
	f.reconcile()
	co := func() configv1.ClusterOperator {
		t.Helper()
		rec, err := f.st.GetObject(context.Background(), operator.ClusterOperatorKey)
		if err != nil {
			t.Fatal(err)
		}
		var co configv1.ClusterOperator
		if err := json.Unmarshal(rec.Body, &co); err != nil {
			t.Fatal(err)
		}
		return co
	}
	find := func(c configv1.ClusterOperator, typ string) configv1.ClusterOperatorCondition {
		for _, cond := range c.Status.Conditions {
			if cond.Type == typ {
				return cond
			}
		}
		t.Fatalf("no %s in %+v", typ, c.Status.Conditions)
		return configv1.ClusterOperatorCondition{}
	}
	c := co()
	if a := find(c, "Available"); a.Status != "True" || a.Reason != "Ready" || a.Message != "Available: The registry is ready" {
		t.Errorf("Available: %+v", a)
	}
	if d := find(c, "Degraded"); d.Status != "False" || d.Reason != "AsExpected" {
		t.Errorf("Degraded: %+v", d)
	}
	if len(c.Status.Versions) != 1 || c.Status.Versions[0].Name != "operator" || c.Status.Versions[0].Version == "" {
		t.Errorf("versions: %+v", c.Status.Versions)
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Storage = imageregistryv1.StorageConfig{} })
	f.reconcile()
	c = co()
	if a := find(c, "Available"); a.Status != "False" || a.Reason != "StorageNotConfigured" || a.Message != "Available: storage backend not configured" {
		t.Errorf("Available without storage: %+v", a)
	}
	if d := find(c, "Degraded"); d.Status != "True" || d.Reason != "StorageNotConfigured" {
		t.Errorf("Degraded without storage: %+v", d)
	}

	// The ImagePruner's conditions take part, prefixed, as on the
	// reference: an invalid one degrades the operator.
	pc := &operator.ImagePrunerController{Store: f.st, Log: slog.New(slog.DiscardHandler), Pruner: &prune.Pruner{Store: f.st}}
	if err := pc.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	editPruner(t, f.st, func(p *imageregistryv1.ImagePruner) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} })
	if err := pc.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.reconcile()
	if d := find(co(), "Degraded"); d.Status != "True" || !strings.Contains(d.Reason, "ImagePrunerSyncError") ||
		!strings.Contains(d.Message, "ImagePrunerDegraded: Error: the ImagePruner is invalid: spec.nodeSelector") {
		t.Errorf("Degraded with an invalid ImagePruner: %+v", d)
	}
	found := false
	for _, r := range co().Status.RelatedObjects {
		found = found || r.Resource == "imagepruners"
	}
	if !found {
		t.Error("the ImagePruner is not among the related objects")
	}
}

func TestUnionOfConditions(t *testing.T) {
	at := func(sec int) metav1.Time { return metav1.NewTime(time.Unix(int64(sec), 0)) }
	got := operator.UnionConditions([]imageregistryv1.OperatorCondition{
		{Type: "Degraded", Status: "False", LastTransitionTime: at(10)},
		{Type: "ImagePrunerDegraded", Status: "True", Reason: "JobFailed", Message: "job failed\nbadly", LastTransitionTime: at(20)},
		{Type: "NodeCADaemonDegraded", Status: "Unknown", Reason: "AsExpected", LastTransitionTime: at(5)},
		{Type: "Progressing", Status: "Unknown", Reason: "Waiting"},
	})
	d := got[2]
	if d.Type != "Degraded" || d.Status != "True" || d.Reason != "ImagePrunerJobFailed" ||
		d.Message != "ImagePrunerDegraded: job failed\nImagePrunerDegraded: badly" || !d.LastTransitionTime.Equal(ptr(at(20))) {
		t.Errorf("Degraded union: %+v", d)
	}
	if p := got[1]; p.Status != "Unknown" || p.Reason != "Waiting" {
		t.Errorf("Progressing union: %+v", p)
	}
	if a := got[0]; a.Status != "True" || a.Reason != "AsExpected" {
		t.Errorf("Available with no input: %+v", a)
	}
}

func ptr[T any](v T) *T { return &v }

// operatorLogLevel sets the operator's own verbosity, apart from the
// registry's: Debug shows each pass even when the process logs at info.
func TestOperatorLogLevel(t *testing.T) {
	f := newFixture(t)
	var buf syncBuffer
	f.op = operator.New(operator.Options{
		Store: f.st, Settings: f.settings, Storage: volumes{},
		Logger:    slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Bootstrap: imageregistryv1.ConfigSpec{ManagementState: "Managed", Replicas: 1, Storage: imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}},
	})
	f.reconcile()
	if strings.Contains(buf.String(), "reconciled the registry Config") {
		t.Fatalf("a debug line at operatorLogLevel Normal:\n%s", buf.String())
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.OperatorLogLevel = "Debug" })
	f.reconcile()
	if !strings.Contains(buf.String(), "reconciled the registry Config") || !strings.Contains(buf.String(), "component=operator") {
		t.Errorf("no debug line at operatorLogLevel Debug:\n%s", buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A flood of unrelated writes costs a few passes a second, not one each.
func TestRunDebouncesWrites(t *testing.T) {
	f := newFixture(t)
	var passes atomic.Int64
	counting := &countingStore{Store: f.st, gets: &passes}
	f.op = operator.New(operator.Options{
		Store: counting, Settings: f.settings, Storage: volumes{}, Logger: slog.New(slog.DiscardHandler),
		Bootstrap: imageregistryv1.ConfigSpec{ManagementState: "Managed", Replicas: 1, Storage: imageregistryv1.StorageConfig{EmptyDir: &imageregistryv1.EmptyDirStorage{}}},
		Debounce:  200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.op.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return f.settings.Load().Generation > 0 })
	if err := f.st.CreateProject(context.Background(), store.Project{Name: "busy"}); err != nil {
		t.Fatal(err)
	}
	before := passes.Load()
	start := time.Now()
	for i := range 200 {
		body := []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm%d","namespace":"busy"}}`, i))
		if _, err := f.st.CreateObject(context.Background(), store.Object{ObjectKey: store.ObjectKey{Resource: "configmaps", Namespace: "busy", Name: fmt.Sprintf("cm%d", i)}, UID: fmt.Sprint(i), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	got := passes.Load() - before
	// At most one pass per debounce period, plus the one already running.
	if limit := int64(elapsed/(200*time.Millisecond)) + 2; got > limit {
		t.Errorf("%d passes for 200 writes in %v, want at most %d", got, elapsed, limit)
	}
}

// countingStore counts reads of the Config: one per pass.
type countingStore struct {
	*store.Store
	gets *atomic.Int64
}

func (c *countingStore) GetObject(ctx context.Context, k store.ObjectKey) (store.Object, error) {
	if k == operator.ConfigKey {
		c.gets.Add(1)
	}
	return c.Store.GetObject(ctx, k)
}

// removableVolumes also removes what it provisioned, counting calls.
type removableVolumes struct {
	volumes
	removed []imageregistryv1.StorageConfig
}

func (r *removableVolumes) RemoveStorage(_ context.Context, s imageregistryv1.StorageConfig) (string, error) {
	if s.PVC != nil && strings.HasPrefix(s.PVC.Claim, "replaced-") {
		return "", fmt.Errorf("pvc volume %s existed before Berth used it: %w", s.PVC.Claim, operator.ErrNotProvisioned)
	}
	r.removed = append(r.removed, s)
	return "pvc volume " + s.PVC.Claim + " (3 blobs)", nil
}

// newRemovableFixture is a fixture whose storage removes volumes, on the
// default claim.
func newRemovableFixture(t *testing.T) (*fixture, *removableVolumes) {
	f := newFixture(t)
	rv := &removableVolumes{}
	f.op = operator.New(operator.Options{
		Store: f.st, Settings: f.settings, Storage: rv, Logger: slog.New(slog.DiscardHandler),
		Bootstrap: imageregistryv1.ConfigSpec{ManagementState: "Managed", Replicas: 1, Storage: imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{}}},
	})
	return f, rv
}

// Removed removes the storage in status once, when it is Managed; status
// then says what went and shows no storage; Managed provisions afresh.
func TestRemovedRemovesManagedStorageOnce(t *testing.T) {
	f, rv := newRemovableFixture(t)
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Removed" })
	f.reconcile()
	f.reconcile()
	if len(rv.removed) != 1 || rv.removed[0].PVC == nil || rv.removed[0].PVC.Claim != imageregistryv1.DefaultClaim {
		t.Fatalf("removals: %+v", rv.removed)
	}
	f.expectCondition("StorageExists", "False", "Storage Removed", "removed pvc volume image-registry-storage (3 blobs)")
	if cfg, _ := f.config(); len(cfg.Status.Storage.StorageTypes()) != 0 || cfg.Status.StorageManaged {
		t.Errorf("status.storage after removal: %+v", cfg.Status.Storage)
	}
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Managed" })
	f.reconcile()
	f.expectCondition("StorageExists", "True", "PVC Exists", "")

	// Unmanaged storage is never removed.
	f.write(func(s *imageregistryv1.ConfigSpec) { s.Storage.ManagementState = "Unmanaged" })
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Removed" })
	f.reconcile()
	if len(rv.removed) != 1 {
		t.Errorf("Unmanaged storage was removed: %+v", rv.removed)
	}
	f.expectCondition("StorageExists", "True", "Storage Kept", "Unmanaged")
}

// What may be removed is what the spec says now: Unmanaged in the same
// write as Removed keeps the storage, though status last said Managed.
// A volume that was there before Berth is completed as Unmanaged, and one
// the storage says Berth did not make is kept whatever the spec says.
func TestRemovedKeepsWhatBerthDidNotProvision(t *testing.T) {
	f, rv := newRemovableFixture(t)
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.ManagementState = "Removed"
		s.Storage.ManagementState = "Unmanaged"
	})
	f.reconcile()
	if len(rv.removed) != 0 {
		t.Fatalf("removed with spec.storage.managementState Unmanaged: %+v", rv.removed)
	}
	f.expectCondition("StorageExists", "True", "Storage Kept", "Unmanaged")

	// A claim of the user's: completed as Unmanaged.
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.ManagementState = "Managed"
		s.Storage = imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: "users-disk"}}
	})
	f.reconcile()
	if cfg, _ := f.config(); cfg.Spec.Storage.ManagementState != "Unmanaged" || cfg.Status.StorageManaged {
		t.Errorf("a volume Berth did not make: spec %+v, storageManaged %v", cfg.Spec.Storage, cfg.Status.StorageManaged)
	}

	// Marked Managed by hand, a volume the storage knows it did not make
	// is kept, and status says why.
	f.write(func(s *imageregistryv1.ConfigSpec) {
		s.Storage = imageregistryv1.StorageConfig{PVC: &imageregistryv1.PVCStorage{Claim: "replaced-disk"}, ManagementState: "Managed"}
	})
	f.reconcile()
	f.write(func(s *imageregistryv1.ConfigSpec) { s.ManagementState = "Removed" })
	f.reconcile()
	if len(rv.removed) != 0 {
		t.Fatalf("removed a volume Berth did not make: %+v", rv.removed)
	}
	f.expectCondition("StorageExists", "True", "Storage Kept", "existed before Berth used it")
}
