package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storagemigration"
	"github.com/berth-registry/berth/internal/store"
)

// volumesDir holds the named volumes (pvc claims other than the default
// one, whose volume is the data directory's own blob store, DATA/storage).
const volumesDir = "volumes"

// blobStorages puts spec.storage of the registry Config in effect: it
// builds the blob storage a spec names through the driver table, keeps
// every storage it built for the life of the process (switching back to
// an emptyDir finds its blobs; a request still using a storage switched
// away from keeps working), and says which one is in effect. It is the
// operator's storage applier and the registry's lookup of storages by ID.
//
// A storage is never closed or removed on a switch, and nothing is moved
// then: the older storages that still hold blobs are opened again from
// their records and read from, until berth adm migrate-storage moves
// their blobs (storageMigrations).
type blobStorages struct {
	dataDir string
	drivers storage.Registry
	// memoryMode: the process keeps its metadata in memory (--storage
	// memory), so blobs on a volume would outlive the rows that make them
	// visible; it serves its emptyDir only.
	memoryMode bool
	// emptyDirID names this process's emptyDir: its bytes die with the
	// process, so the next one must not find blobs recorded under it.
	emptyDirID string
	sessions   storageRecords
	log        *slog.Logger
	// emptyDirLimit caps the bytes the emptyDir holds (0: none).
	emptyDirLimit int64

	// wrap, when set, wraps every driver built (the metrics' timing).
	wrap func(storage.Driver) storage.Driver

	mu    sync.Mutex
	built map[string]storage.Driver
	// raw are the drivers of built before wrap: what only the driver
	// itself answers (an emptyDir's usage, its Close).
	raw map[string]storage.Driver
	// gates admit commits into each storage built; removal closes one.
	gates map[string]*settings.Gate
	// fingerprints are the settings each storage's driver was built with.
	fingerprints map[string]string
	// client is the outbound HTTP client drivers reach their backends
	// with (nil: http.DefaultClient).
	client  *http.Client
	current operator.AppliedStorage
	// counts are what older storages hold, as last counted.
	counts olderCounts
	// openFailures are the older storages that last failed to open.
	openFailures map[string]openFailure
	// recoverAtStart removes a storage's leftovers (sessions without a
	// record) when it is first used: only where this process alone writes
	// to it.
	recoverAtStart bool
	// recovered are the storages whose leftovers were removed, when they
	// were first built to be written to.
	recovered map[string]bool
	// openTimeout bounds opening an older storage (0: olderOpenTimeout).
	openTimeout time.Duration
	// effect is s.current.Blobs as last published, read without s.mu.
	effect atomic.Pointer[settings.Storage]
}

// storageRecords is what the store keeps about storages: the upload
// sessions it records, in any storage; the storages put in effect, and
// what each holds; a storage that was removed, forgotten; and which volumes Berth created (settings named
// provisionedPrefix+ID), the only ones it ever removes.
type storageRecords interface {
	UploadIDs(ctx context.Context) (map[string]bool, error)
	ForgetStorage(ctx context.Context, storage string) (int64, error)
	RecordStorage(ctx context.Context, id string, config []byte) error
	OlderStorages(ctx context.Context, current string) ([]store.RecordedStorage, error)
	Setting(ctx context.Context, name string) (string, error)
	InitSetting(ctx context.Context, name, value string) (string, error)
	DeleteSetting(ctx context.Context, name string) error
}

// provisionedPrefix names the setting that records that Berth created a
// volume: "storage.provisioned:pvc:<claim>", valued with when.
const provisionedPrefix = "storage.provisioned:"

func newBlobStorages(dataDir string, drivers storage.Registry, memoryMode bool, sessions storageRecords, log *slog.Logger) *blobStorages {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return &blobStorages{
		dataDir: dataDir, drivers: drivers, memoryMode: memoryMode, sessions: sessions, log: log,
		emptyDirID:   "emptydir:" + hex.EncodeToString(b),
		built:        map[string]storage.Driver{},
		raw:          map[string]storage.Driver{},
		gates:        map[string]*settings.Gate{},
		fingerprints: map[string]string{},
		openFailures: map[string]openFailure{},
		recovered:    map[string]bool{}, recoverAtStart: true,
	}
}

// ApplyStorage implements operator.Storage: it puts the spec's storage in
// effect, and opens the older storages that still hold blobs.
func (s *blobStorages) ApplyStorage(ctx context.Context, want operator.DesiredStorage) (operator.AppliedStorage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	applied, err := s.applyLocked(ctx, want)
	// The boot storage (before the operator) has nothing resolved to open
	// older storages with: the operator's first pass opens them.
	if applied.Blobs.ID != "" && want.Resolve != nil {
		applied.Older, applied.Pending = s.olderLocked(ctx, applied.Blobs.ID, want.Resolve)
	}
	return applied, err
}

func (s *blobStorages) applyLocked(ctx context.Context, want operator.DesiredStorage) (operator.AppliedStorage, error) {
	spec := want.Config
	id, name, opts, root, err := s.locate(spec)
	if err != nil {
		return s.current, err
	}
	opts.Credentials, opts.TrustedCA, opts.Secrets = want.Credentials, want.TrustedCA, want.Secrets
	opts.HTTPClient = s.client
	config := storageConfigOf(spec)
	if id == s.current.Blobs.ID && fingerprint(name, opts) == s.fingerprints[id] {
		// Already in effect (every pass of the operator asks): only the
		// managementState shown may have changed.
		s.current.Config = config
		return s.current, nil
	}
	created := false
	if root != "" {
		// Mkdir, not a Stat before the driver's MkdirAll: only a directory
		// this call made counts as Berth's.
		if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
			return s.current, fmt.Errorf("%s: %w", describeStorage(spec), err)
		}
		switch err := os.Mkdir(root, 0o700); {
		case err == nil:
			created = true
		case !errors.Is(err, fs.ErrExist):
			return s.current, fmt.Errorf("%s: %w", describeStorage(spec), err)
		}
	}
	d, err := s.open(ctx, id, name, opts)
	if err != nil {
		return s.current, fmt.Errorf("%s: %w", describeStorage(spec), err)
	}
	if created {
		if err := s.recordProvisioned(ctx, id, root); err != nil {
			return s.current, fmt.Errorf("record %s as provisioned: %w", describeStorage(spec), err)
		}
	}
	if p, ok := s.raw[id].(storage.Provisioner); ok && p.ProvisionToken() != "" {
		// The driver created its backend: the token it left there is
		// what lets a Removed registry remove it, and nothing else.
		if err := s.recordToken(ctx, id, p.ProvisionToken()); err != nil {
			return s.current, fmt.Errorf("record %s as provisioned: %w", describeStorage(spec), err)
		}
	}
	// Recorded before it takes writes: whatever it comes to hold can be
	// read again after a switch away (an emptyDir by this process only).
	if err := s.recordStorage(ctx, id, config); err != nil {
		return s.current, err
	}
	previous := s.current.Blobs.ID
	s.current = operator.AppliedStorage{Config: config, Blobs: settings.Storage{ID: id, Driver: d, Writes: s.gates[id], Version: s.fingerprints[id]}, Created: created}
	s.publish()
	if r, ok := s.raw[id].(storage.Reporter); ok {
		s.current.Conditions = r.Conditions()
	}
	if r, ok := s.raw[id].(storage.RedirectDescriber); ok {
		s.current.Redirects = r.DescribeRedirects()
	}
	switch {
	case previous == id:
		s.log.Info("blob storage rebuilt with new settings (credentials, CA, or settings that do not move its bytes)", "storage", id)
	case previous != "":
		s.log.Info("blob storage switched: new blobs go to the new storage; blobs in the old one stay there and are read from there until berth adm migrate-storage moves them",
			"from", previous, "to", id, "created", created)
	}
	return s.current, nil
}

// recordStorage records storage id with the configuration that opens it
// again: its section of the spec, without managementState (which says who
// provisioned it, not where it is).
func (s *blobStorages) recordStorage(ctx context.Context, id string, config imageregistryv1.StorageConfig) error {
	config.ManagementState = ""
	b, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("record storage %s: %w", id, err)
	}
	return s.sessions.RecordStorage(ctx, id, b)
}

// olderLocked opens the storages other than current that still hold blobs
// and says what each holds; an emptyDir of an earlier process is
// forgotten (its bytes died with it).
//
// What each holds is counted through an index, but on a large registry
// just switched that is a second of work, and a pass follows every
// commit: counts are kept for countsTTL unless the storage in effect
// changed or a migration ended (recount). A storage this process built
// is read from even when it was counted empty: a request begun before a
// switch may commit into it meanwhile. At each count, the older storages
// that are open are asked whether they still answer (a bucket deleted
// meanwhile is unavailable, not a source of errors).
func (s *blobStorages) olderLocked(ctx context.Context, current string, resolve func(context.Context, imageregistryv1.StorageConfig) (operator.DesiredStorage, error)) ([]settings.Storage, []operator.PendingStorage) {
	counted := false
	if s.counts.current != current || s.counts.stale || time.Since(s.counts.at) > countsTTL {
		recorded, err := s.sessions.OlderStorages(ctx, current)
		if err != nil {
			// The last answer stands until the store answers again.
			s.log.Warn("list the storages holding blobs", "err", err)
			return s.current.Older, s.current.Pending
		}
		s.counts = olderCounts{current: current, at: time.Now(), recorded: recorded, unhealthy: map[string]error{}}
		counted = true
	}
	// Those that can be read first: a blob in two older storages is read
	// from one that opened. (A migration pairs pending and older by ID.)
	var readable, unreadable []settings.Storage
	var pending []operator.PendingStorage
	for _, r := range s.counts.recorded {
		_, built := s.built[r.ID]
		switch {
		case strings.HasPrefix(r.ID, "emptydir:") && r.ID != s.emptyDirID:
			if r.Blobs == 0 {
				continue
			}
			n, err := s.sessions.ForgetStorage(ctx, r.ID)
			if err != nil {
				s.log.Warn("forget the emptyDir of an earlier process", "storage", r.ID, "err", err)
			} else {
				s.log.Info("forgot the blobs of an earlier process's emptyDir: its bytes died with it", "storage", r.ID, "blobs", n)
				s.counts.stale = true
			}
			continue
		case r.Blobs == 0 && built:
			// Read from, not listed: it held nothing when counted.
			readable = append(readable, settings.Storage{ID: r.ID, Driver: s.built[r.ID], Writes: s.gates[r.ID], Version: s.fingerprints[r.ID]})
			continue
		case r.Blobs == 0:
			continue
		}
		d, name, note, err := s.openOlderLocked(ctx, r, resolve)
		if err == nil && counted {
			s.counts.unhealthy[r.ID] = s.checkOlder(ctx, d)
		}
		if herr := s.counts.unhealthy[r.ID]; err == nil && herr != nil {
			d, err = nil, fmt.Errorf("it does not answer: %w", herr)
		}
		if err != nil {
			s.log.Warn("an older storage holding blobs cannot be read; its blobs are unavailable", "storage", r.ID, "blobs", r.Blobs, "err", err)
		}
		st := settings.Storage{ID: r.ID, Driver: d, Writes: s.gates[r.ID], Version: s.fingerprints[r.ID]}
		if d != nil {
			readable = append(readable, st)
		} else {
			unreadable = append(unreadable, st)
		}
		pending = append(pending, operator.PendingStorage{ID: r.ID, Name: name, Blobs: r.Blobs, Bytes: r.Bytes, Err: err, Note: note})
	}
	older := append(readable, unreadable...)
	s.current.Older, s.current.Pending = older, pending
	return older, pending
}

// checkOlder asks an open older storage whether it still answers, within
// a bound; nil for one that cannot be asked.
func (s *blobStorages) checkOlder(ctx context.Context, d storage.Driver) error {
	hc, ok := d.(storage.HealthChecker)
	if !ok {
		return nil
	}
	hctx, cancel := context.WithTimeout(ctx, min(s.openTimeoutOf(), 5*time.Second))
	defer cancel()
	return hc.Health(hctx)
}

// countsTTL is how long what older storages hold is counted for.
const countsTTL = 30 * time.Second

// olderCounts are the older storages as last counted.
type olderCounts struct {
	current  string
	at       time.Time
	stale    bool
	recorded []store.RecordedStorage
	// unhealthy are the older storages that did not answer when counted.
	unhealthy map[string]error
}

// recount makes the next pass count what older storages hold (a
// migration moved blobs).
func (s *blobStorages) recount() {
	s.mu.Lock()
	s.counts.stale = true
	s.mu.Unlock()
}

// olderOpenTimeout bounds the opening of an older storage: one whose
// backend does not answer must not hold the operator's pass (and the
// server's start) for longer.
const olderOpenTimeout = 15 * time.Second

// openTimeoutOf is the bound on opening an older storage (a test's, or
// olderOpenTimeout).
func (s *blobStorages) openTimeoutOf() time.Duration {
	if s.openTimeout > 0 {
		return s.openTimeout
	}
	return olderOpenTimeout
}

// olderRetry is how long an older storage that could not be opened with
// some settings is not tried again with the same ones.
const olderRetry = time.Minute

// openFailure is an older storage's last failure to open.
type openFailure struct {
	fingerprint string
	at          time.Time
	err         error
}

// openOlderLocked opens the older storage r with its recorded
// configuration, and names it; the driver is nil when it cannot be
// opened. A storage that opened before and now does not with what its
// configuration resolves to (the user secret changed to another
// account's keys) goes on being read with the driver that opened, and
// note says so.
func (s *blobStorages) openOlderLocked(ctx context.Context, r store.RecordedStorage, resolve func(context.Context, imageregistryv1.StorageConfig) (operator.DesiredStorage, error)) (d storage.Driver, name, note string, err error) {
	if r.ID == s.emptyDirID {
		d, ok := s.built[r.ID]
		if !ok {
			return nil, "emptyDir", "", errors.New("this process's emptyDir was never built")
		}
		return d, "emptyDir", "", nil
	}
	var spec imageregistryv1.StorageConfig
	switch {
	case len(r.Config) > 0:
		if err := json.Unmarshal(r.Config, &spec); err != nil {
			return nil, r.ID, "", fmt.Errorf("decode its recorded configuration: %w", err)
		}
	case strings.HasPrefix(r.ID, "pvc:"):
		// Volumes in effect before storages were recorded: the claim is
		// all there is to know.
		spec.PVC = &imageregistryv1.PVCStorage{Claim: strings.TrimPrefix(r.ID, "pvc:")}
	default:
		return nil, r.ID, "", errors.New("it was in effect before Berth recorded how to open storages: put it in effect once more to record it, then switch back")
	}
	name = describeStorage(spec)
	id, driver, opts, root, err := s.locate(spec)
	if err != nil {
		return nil, name, "", err
	}
	if id != r.ID {
		return nil, name, "", fmt.Errorf("its recorded configuration names another storage (%s)", id)
	}
	if root != "" {
		// An older volume is read, never made: a missing directory means
		// its blobs are gone, which must not look like an empty volume.
		if _, err := os.Stat(root); err != nil {
			return nil, name, "", err
		}
	}
	// Built before: what to fall back on.
	before, built := s.built[id]
	fallback := func(err error) (storage.Driver, string, string, error) {
		if built && !errors.Is(err, errdefs.ErrNotFound) {
			return before, name, "read with the settings it opened with before: " + err.Error(), nil
		}
		return nil, name, "", err
	}
	if resolve != nil {
		want, err := resolve(ctx, spec)
		if err != nil {
			return fallback(err)
		}
		opts.Credentials, opts.TrustedCA, opts.Secrets = want.Credentials, want.TrustedCA, want.Secrets
	}
	opts.HTTPClient = s.client
	opts.Existing = true
	fp := fingerprint(driver, opts)
	if f, ok := s.openFailures[id]; ok && f.fingerprint == fp && time.Since(f.at) < olderRetry {
		return fallback(f.err)
	}
	octx, cancel := context.WithTimeout(ctx, s.openTimeoutOf())
	defer cancel()
	d, err = s.openToRead(octx, id, driver, opts)
	if err != nil {
		s.openFailures[id] = openFailure{fingerprint: fp, at: time.Now(), err: err}
		return fallback(err)
	}
	delete(s.openFailures, id)
	return d, name, "", nil
}

// locate maps a spec to its storage: ID, driver, driver options, and the
// directory a volume lives in ("" for none).
func (s *blobStorages) locate(spec imageregistryv1.StorageConfig) (id, driver string, opts storage.Options, root string, err error) {
	opts = storage.Options{DataDir: s.dataDir}
	switch {
	case spec.EmptyDir != nil:
		opts.SizeLimit = s.emptyDirLimit
		return s.emptyDirID, "memory", opts, "", nil
	case spec.PVC != nil:
		if s.memoryMode {
			return "", "", opts, "", fmt.Errorf("this registry runs with --storage memory: its metadata lives in memory and dies with the process, so blobs on %s would outlive the records that make them visible; it serves emptyDir storage only (restart with --storage filesystem to use a volume)", describeStorage(spec))
		}
		claim := spec.PVC.Claim
		if claim == "" {
			claim = imageregistryv1.DefaultClaim
		}
		if claim == imageregistryv1.DefaultClaim {
			// The data directory's blob store: installations from before
			// volumes could be named keep their blobs.
			return "pvc:" + claim, "filesystem", opts, filepath.Join(s.dataDir, "storage"), nil
		}
		// The API refuses a claim that is not a DNS subdomain; this guards
		// the path against a Config written around it.
		if claim != filepath.Base(claim) || strings.ContainsAny(claim, `/\`) || strings.HasPrefix(claim, ".") {
			return "", "", opts, "", fmt.Errorf("volume claim %q is not a valid name", claim)
		}
		opts.Root = filepath.Join(s.dataDir, volumesDir, claim)
		return "pvc:" + claim, "filesystem", opts, opts.Root, nil
	}
	names := spec.StorageTypes()
	if len(names) == 0 {
		return "", "", opts, "", errors.New("no storage configured")
	}
	id, name, section := objectStorage(spec)
	if _, ok := s.drivers[name]; !ok || id == "" {
		return "", "", opts, "", fmt.Errorf("the %s storage driver is not built yet; the registry keeps serving from %s", names[0], describeStorage(s.current.Config))
	}
	settings, err := json.Marshal(section)
	if err != nil {
		return "", "", opts, "", fmt.Errorf("%s settings: %w", name, err)
	}
	opts.Settings = settings
	return id, name, opts, "", nil
}

// objectStorage names the object storage spec configures: its ID, which
// is where its bytes are (so that settings which do not move them, a chunk
// size or credentials, keep the blobs recorded there, and two places never
// share one), the driver of that name in the driver table, and the spec's
// section of it.
func objectStorage(spec imageregistryv1.StorageConfig) (id, driver string, section any) {
	switch {
	case spec.S3 != nil:
		// Bucket names are unique within one AWS partition only.
		where := "aws-partition:" + awsPartition(spec.S3.Region)
		if spec.S3.RegionEndpoint != "" {
			where = normalEndpoint(spec.S3.RegionEndpoint)
		}
		return storageID("s3", where, spec.S3.Bucket), "s3", spec.S3
	case spec.GCS != nil:
		return storageID("gcs", spec.GCS.Bucket), "gcs", spec.GCS
	case spec.Azure != nil:
		return storageID("azure", spec.Azure.CloudName, spec.Azure.AccountName, spec.Azure.Container), "azure", spec.Azure
	case spec.Swift != nil:
		// A container belongs to a project (tenant) in a region.
		sw := spec.Swift
		return storageID("swift", normalEndpoint(sw.AuthURL), sw.Domain+"|"+sw.DomainID, sw.Tenant+"|"+sw.TenantID, sw.RegionName, sw.Container), "swift", sw
	}
	return "", "", nil
}

// storageID joins kind and the parts that locate a storage, each escaped,
// so that no two different lists of parts give one ID.
func storageID(kind string, parts ...string) string {
	escaped := make([]string, len(parts))
	for i, p := range parts {
		escaped[i] = url.PathEscape(p)
	}
	return kind + ":" + strings.Join(escaped, "/")
}

// awsPartition is the AWS partition of a region: bucket names are unique
// within one.
func awsPartition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

// normalEndpoint is an endpoint URL as one ID names it whatever way it was
// written: scheme and host lower case, no default port, no trailing slash.
func normalEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if (u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80") {
		u.Host = u.Hostname()
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.User = nil
	return u.String()
}

// open returns the storage id, building it the first time, and again
// when its settings changed (new credentials, say: the same bytes, reached
// another way; requests in flight finish with the driver they have). A
// storage built for the first time has its driver's leftovers removed
// (uploads no session records: a crash mid-request) before anything
// writes to it, which is safe only because nothing can be using a driver
// not built until now.
func (s *blobStorages) open(ctx context.Context, id, name string, opts storage.Options) (storage.Driver, error) {
	return s.build(ctx, id, name, opts, true)
}

// openToRead is open for an older storage, read from and never written
// to: its leftovers are not removed (that is for when it is in effect
// again), which would make opening it take as long as they are many.
func (s *blobStorages) openToRead(ctx context.Context, id, name string, opts storage.Options) (storage.Driver, error) {
	return s.build(ctx, id, name, opts, false)
}

func (s *blobStorages) build(ctx context.Context, id, name string, opts storage.Options, recover bool) (storage.Driver, error) {
	fp := fingerprint(name, opts)
	old, rebuilt := s.built[id]
	if rebuilt && s.fingerprints[id] == fp {
		return old, nil
	}
	raw, err := s.drivers.New(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	d := s.wrapped(raw)
	if rec, ok := d.(storage.Recoverer); ok && recover && s.recoverAtStart && !s.recovered[id] {
		live, err := s.sessions.UploadIDs(ctx)
		if err != nil {
			return nil, err
		}
		if err := rec.Recover(ctx, func(id string) bool { return live[id] }); err != nil {
			return nil, fmt.Errorf("recover storage %s: %w", id, err)
		}
	}
	if recover {
		// Recovered, or nothing to recover from (no Recoverer).
		s.recovered[id] = true
	}
	s.install(id, fp, raw, d)
	return d, nil
}

// wrapped is raw as requests use it: wrapped by wrap, when set.
func (s *blobStorages) wrapped(raw storage.Driver) storage.Driver {
	if s.wrap == nil {
		return raw
	}
	return s.wrap(raw)
}

// install makes d (raw, wrapped) the driver of storage id, built with the
// settings of fingerprint fp.
func (s *blobStorages) install(id, fp string, raw, d storage.Driver) {
	s.built[id], s.raw[id], s.fingerprints[id] = d, raw, fp
	delete(s.openFailures, id)
	if s.gates[id] == nil {
		s.gates[id] = &settings.Gate{}
	}
}

// fingerprint identifies the settings a driver is built with: the same
// storage (the same bytes) with other settings is built anew. Credentials
// count by a hash, never as themselves.
func fingerprint(name string, opts storage.Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%s\x00", name, opts.DataDir, opts.Root, opts.SizeLimit, opts.Settings)
	keys := slices.Sorted(maps.Keys(opts.Credentials))
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, opts.Credentials[k])
	}
	for _, k := range slices.Sorted(maps.Keys(opts.Secrets)) {
		fmt.Fprintf(h, "%s=%x\x00", k, sha256.Sum256(opts.Secrets[k]))
	}
	h.Write(opts.TrustedCA)
	return hex.EncodeToString(h.Sum(nil))
}

// Provisions implements operator.StorageProvisioner: whether Berth
// provisions the storage spec names, so that its managementState is
// Managed. An emptyDir is always Berth's; a volume is when Berth created
// its directory, or will (it does not exist yet); anything else (a
// directory that was there before Berth used it, object storage) is the
// user's.
func (s *blobStorages) Provisions(ctx context.Context, spec imageregistryv1.StorageConfig) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.EmptyDir != nil {
		return true, nil
	}
	if spec.PVC == nil {
		return false, nil
	}
	id, _, _, root, err := s.locate(spec)
	if err != nil {
		return false, err
	}
	return s.provisionedLocked(ctx, id, root)
}

// provisionMarker is the file in a volume Berth made that holds the token
// recorded for it: a name in the store is not enough, since the directory
// it named may have been replaced by someone else's since.
const provisionMarker = ".berth-volume"

// recordProvisioned marks root, just made for storage id, as Berth's: a
// random token in its marker file and in the store.
func (s *blobStorages) recordProvisioned(ctx context.Context, id, root string) error {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(root, provisionMarker), []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	return s.recordToken(ctx, id, token)
}

// recordToken records token as the proof that Berth made storage id.
func (s *blobStorages) recordToken(ctx context.Context, id, token string) error {
	if err := s.sessions.DeleteSetting(ctx, provisionedPrefix+id); err != nil {
		return err
	}
	_, err := s.sessions.InitSetting(ctx, provisionedPrefix+id, token)
	return err
}

// provisionedLocked tells whether the volume of storage id at root is
// Berth's: it does not exist yet (Berth will make it), or it is a
// directory whose marker holds the token the store recorded when Berth
// made it.
func (s *blobStorages) provisionedLocked(ctx context.Context, id, root string) (bool, error) {
	fi, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, nil
	}
	token, err := s.sessions.Setting(ctx, provisionedPrefix+id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	marker, err := os.ReadFile(filepath.Join(root, provisionMarker))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(string(marker))), []byte(token)) == 1, nil
}

// sized is a driver that keeps its bytes in memory, under a limit.
type sized interface {
	Usage() (used, limit int64)
}

// EmptyDirUsage reports the bytes this process's emptyDir holds and its
// limit (0: none); all zero while it has not been built.
func (s *blobStorages) EmptyDirUsage() (used, limit int64) {
	s.mu.Lock()
	d, ok := s.raw[s.emptyDirID].(sized)
	s.mu.Unlock()
	if !ok {
		return 0, s.emptyDirLimit
	}
	return d.Usage()
}

// Built implements registry.Storages: the driver of storage id if this
// process built it.
func (s *blobStorages) Built(id string) (storage.Driver, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.built[id]
	return d, ok
}

// gcStorages are the storages garbage collection deletes bytes from:
// every one this process opened (the storage in effect, older ones still
// read), by ID, and the ID of the one in effect.
func (s *blobStorages) gcStorages() (string, map[string]storage.Deleter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	open := make(map[string]storage.Deleter, len(s.built)+len(s.current.Older))
	for id, d := range s.built {
		open[id] = d
	}
	for _, o := range s.current.Older {
		if o.Driver != nil {
			open[o.ID] = o.Driver
		}
	}
	return s.current.Blobs.ID, open
}

// inEffect is the storage in effect.
func (s *blobStorages) inEffect() settings.Storage {
	if st := s.effect.Load(); st != nil {
		return *st
	}
	return settings.Storage{}
}

// publish makes the storage of s.current what inEffect answers (called
// with s.mu held, after every change of it): /healthz and the metrics
// read it without waiting for a pass that is opening storages.
func (s *blobStorages) publish() {
	b := s.current.Blobs
	s.effect.Store(&b)
}

// storageConfigOf is the one storage section a spec names, for
// status.storage.
func storageConfigOf(spec imageregistryv1.StorageConfig) imageregistryv1.StorageConfig {
	out := imageregistryv1.StorageConfig{ManagementState: spec.ManagementState}
	switch {
	case spec.EmptyDir != nil:
		out.EmptyDir = &imageregistryv1.EmptyDirStorage{}
	case spec.PVC != nil:
		pvc := *spec.PVC
		if pvc.Claim == "" {
			pvc.Claim = imageregistryv1.DefaultClaim
		}
		out.PVC = &pvc
	default:
		out.S3, out.GCS, out.Azure, out.Swift = spec.S3, spec.GCS, spec.Azure, spec.Swift
	}
	return out
}

// apiBlobs is what the management API reads of blobs: an image's config
// from the storage of the request's snapshot, and the bytes of upload
// sessions a deleted project ended, discarded wherever they are.
type apiBlobs struct{ storages *blobStorages }

func (a apiBlobs) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	snap := settings.From(ctx)
	st := snap.Storage
	if st.Driver == nil {
		st = a.storages.inEffect()
	}
	r, err := st.Driver.Open(ctx, dgst, offset, length)
	if !errors.Is(err, errdefs.ErrNotFound) {
		return r, err
	}
	// Not migrated yet: in an older storage that still holds blobs.
	for _, o := range snap.Older {
		if o.Driver == nil {
			continue
		}
		if r, oerr := o.Driver.Open(ctx, dgst, offset, length); oerr == nil {
			return r, nil
		}
	}
	return nil, err
}

// AbortUpload discards the bytes of upload u, which ended with its
// project, in its storage. Bytes in a volume this process has not built
// are removed when it next is; an emptyDir of an earlier process took
// them with it.
func (a apiBlobs) AbortUpload(ctx context.Context, u store.EndedUpload) error {
	d, ok := a.storages.Built(u.Storage)
	if !ok {
		return nil
	}
	if err := d.Abort(ctx, storage.Upload{ID: u.ID, State: u.DriverState}); err != nil {
		return fmt.Errorf("storage %s: %w", u.Storage, err)
	}
	return nil
}

type uploadExpiry interface {
	ExpireUploads(ctx context.Context, before time.Time) ([]store.EndedUpload, error)
}

// expireUploads ends sessions untouched for ttl and discards their bytes
// in their own storage. Bytes in a storage this process has not built are
// left: a volume removes them when it is next used (its recovery), an
// emptyDir of an earlier process had them die with it.
func expireUploads(ctx context.Context, meta uploadExpiry, storages *blobStorages, ttl time.Duration, log *slog.Logger) {
	ended, err := meta.ExpireUploads(ctx, time.Now().Add(-ttl))
	if err != nil {
		log.Warn("expire upload sessions", "err", err)
		return
	}
	left := map[string]int{}
	for _, u := range ended {
		d, ok := storages.Built(u.Storage)
		if !ok {
			left[u.Storage]++
			continue
		}
		if err := d.Abort(ctx, storage.Upload{ID: u.ID, State: u.DriverState}); err != nil {
			log.Warn("remove expired upload", "id", u.ID, "storage", u.Storage, "err", err)
		}
	}
	if len(ended) > 0 {
		log.Info("expired upload sessions", "count", len(ended))
	}
	for id, n := range left {
		log.Info("expired upload sessions' bytes left in a storage this process does not use (a volume removes them when it is next used)",
			"storage", id, "count", n)
	}
}

// Health implements storage.HealthChecker for /healthz: the storage in
// effect, when its driver can tell.
func (s *blobStorages) Health(ctx context.Context) error {
	if hc, ok := s.inEffect().Driver.(storage.HealthChecker); ok {
		return hc.Health(ctx)
	}
	return nil
}

// RemoveStorage implements operator.StorageRemover: the storage's records
// go (no blob counts as present there, its sessions end) and then its
// bytes: a volume's directory, an emptyDir's memory. Requests in flight on
// it fail; /v2 is out of service while the registry is Removed anyway.
func (s *blobStorages) RemoveStorage(ctx context.Context, spec imageregistryv1.StorageConfig) (string, error) {
	if spec.EmptyDir == nil && spec.PVC == nil {
		return s.destroy(ctx, spec)
	}
	root, id, blobs, err := s.forget(ctx, spec)
	if err != nil {
		return "", err
	}
	if root == "" {
		return fmt.Sprintf("%s (%d blobs)", describeStorage(spec), blobs), nil
	}
	// The bytes go outside the lock: /healthz and the metrics ask for the
	// storage in effect meanwhile.
	if err := os.RemoveAll(root); err != nil {
		return "", fmt.Errorf("remove %s: %w", root, err)
	}
	if err := s.sessions.DeleteSetting(ctx, provisionedPrefix+id); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s (%s, %d blobs)", describeStorage(spec), root, blobs), nil
}

// destroy removes object storage Berth created (its driver left a token
// in it, recorded in the store when it did): commits stop, the driver
// removes Berth's objects and the bucket, and only then does the store
// forget the storage. A failure keeps everything as it was, commits
// admitted again, for the next pass to retry.
func (s *blobStorages) destroy(ctx context.Context, spec imageregistryv1.StorageConfig) (string, error) {
	s.mu.Lock()
	id, _, _, _, err := s.locate(spec)
	if err != nil {
		s.mu.Unlock()
		return "", err
	}
	destroyer, ok := s.raw[id].(storage.Destroyer)
	gate := s.gates[id]
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%s is not in use by this instance, or its driver cannot remove it: %w", describeStorage(spec), operator.ErrNotProvisioned)
	}
	token, err := s.sessions.Setting(ctx, provisionedPrefix+id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return "", fmt.Errorf("%s was not created by Berth: %w", describeStorage(spec), operator.ErrNotProvisioned)
	}
	if err != nil {
		return "", err
	}
	gate.Close()
	done, err := destroyer.Destroy(ctx, token)
	if err != nil {
		s.mu.Lock()
		s.gates[id] = &settings.Gate{}
		if s.current.Blobs.ID == id {
			// Rebuilt with the new gate at the next apply.
			s.current = operator.AppliedStorage{}
			s.publish()
		}
		s.mu.Unlock()
		if errors.Is(err, storage.ErrNotProvisioned) {
			return "", fmt.Errorf("%s: %v: %w", describeStorage(spec), err, operator.ErrNotProvisioned)
		}
		return "", fmt.Errorf("remove %s: %w", describeStorage(spec), err)
	}
	s.mu.Lock()
	blobs, err := s.sessions.ForgetStorage(ctx, id)
	if err == nil {
		delete(s.built, id)
		delete(s.raw, id)
		delete(s.gates, id)
	} else {
		// Retried at the next pass (the driver says the bucket is gone);
		// meanwhile commits are admitted again, as after a failed destroy.
		s.gates[id] = &settings.Gate{}
	}
	if s.current.Blobs.ID == id {
		s.current = operator.AppliedStorage{}
		s.publish()
	}
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	if err := s.sessions.DeleteSetting(ctx, provisionedPrefix+id); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s (%d blobs; %s)", describeStorage(spec), blobs, done), nil
}

// forget takes the volume or emptyDir spec names out of service if Berth
// provisioned it: its commits in flight finish and no more start, the
// store forgets its blobs and sessions (how many blobs it returns), and an
// emptyDir's memory is released. It returns the volume's directory, for
// the caller to remove ("" for an emptyDir).
func (s *blobStorages) forget(ctx context.Context, spec imageregistryv1.StorageConfig) (root, id string, blobs int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _, _, root, err = s.locate(spec)
	if err != nil {
		return "", "", 0, err
	}
	if root != "" {
		if provisioned, err := s.provisionedLocked(ctx, id, root); err != nil {
			return "", "", 0, err
		} else if !provisioned {
			return "", "", 0, fmt.Errorf("%s (%s) existed before Berth used it, or is no longer the directory Berth made: %w", describeStorage(spec), root, operator.ErrNotProvisioned)
		}
	}
	if g := s.gates[id]; g != nil {
		g.Close()
	}
	if blobs, err = s.sessions.ForgetStorage(ctx, id); err != nil {
		return "", "", 0, err
	}
	raw := s.raw[id]
	delete(s.built, id)
	delete(s.raw, id)
	delete(s.gates, id)
	if c, ok := raw.(io.Closer); ok {
		// An emptyDir's memory goes now, not when its last reference does.
		if err := c.Close(); err != nil {
			return "", "", 0, fmt.Errorf("remove %s: %w", describeStorage(spec), err)
		}
	}
	if s.current.Blobs.ID == id {
		s.current = operator.AppliedStorage{}
		s.publish()
	}
	return root, id, blobs, nil
}

// storageMigrations runs berth adm migrate-storage for the management
// API: one at a time in this process, from the older storages the last
// pass of the operator opened into the storage in effect, and then a pass
// of the operator, so that status says at once what is left.
type storageMigrations struct {
	storages  *blobStorages
	records   storagemigration.Records
	reconcile func(context.Context) error
	log       *slog.Logger
	running   sync.Mutex
}

// MigrateStorage implements apiserver.StorageMigrator.
func (m *storageMigrations) MigrateStorage(ctx context.Context, dryRun bool, progress func(storagemigration.Progress)) (storagemigration.Report, error) {
	if !m.running.TryLock() {
		return storagemigration.Report{}, &apiserver.StatusError{Code: http.StatusConflict, Reason: "Conflict",
			Message: "a storage migration is already running; wait for it to end"}
	}
	defer m.running.Unlock()
	if m.reconcile != nil {
		// What the store holds now, not at the last pass: a storage
		// switched to a moment ago is the target, and blobs committed
		// into an older storage since it was counted are moved too.
		m.storages.recount()
		if err := m.reconcile(ctx); err != nil {
			return storagemigration.Report{}, err
		}
	}
	to, from := m.storages.migration()
	if strings.HasPrefix(to.ID, "emptydir:") {
		// Memory: blobs moved there from durable storage would die with
		// the process, and a large older storage would not fit.
		return storagemigration.Report{}, &apiserver.StatusError{Code: http.StatusConflict, Reason: "Conflict",
			Message: "the storage in effect is an emptyDir (this process's memory): migrating would move blobs out of durable storage into memory that dies with the process; put a volume or object storage in effect first"}
	}
	mig := &storagemigration.Migrator{Records: m.records, Log: m.log,
		InEffect: func() string { return m.storages.inEffect().ID }}
	m.log.InfoContext(ctx, "storage migration started", "to", to.ID, "from", len(from), "dryRun", dryRun)
	rep, err := mig.Run(ctx, to, from, dryRun, progress)
	m.log.InfoContext(ctx, "storage migration ended", "to", to.ID, "failures", int64(len(rep.Failures))+rep.MoreFailures, "err", err)
	m.storages.recount()
	if m.reconcile != nil && !dryRun {
		if rerr := m.reconcile(context.WithoutCancel(ctx)); rerr != nil {
			m.log.WarnContext(ctx, "apply the registry Config after a storage migration", "err", rerr)
		}
	}
	return rep, err
}

// migration is the storage in effect and the older storages, as the last
// pass of the operator found them.
func (s *blobStorages) migration() (settings.Storage, []storagemigration.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := make(map[string]settings.Storage, len(s.current.Older))
	for _, o := range s.current.Older {
		byID[o.ID] = o
	}
	from := make([]storagemigration.Source, 0, len(s.current.Pending))
	for _, p := range s.current.Pending {
		from = append(from, storagemigration.Source{Storage: byID[p.ID], Name: p.Name, Blobs: p.Blobs, Bytes: p.Bytes})
	}
	return s.current.Blobs, from
}
