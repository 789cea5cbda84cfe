package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Limits are what a project's quota objects allow its pushes. The store
// enforces them where content enters a project, inside the transaction
// that adds it; what they mean as API objects is the policy's
// (SetLimitsPolicy).
type Limits struct {
	// ImageStreams bounds the project's repositories.
	ImageStreams Limit
	// Storage bounds the bytes of the blobs and manifests the project's
	// repositories link, each digest counted once however many link it.
	Storage Limit
	// ImageSize bounds one image: the blobs its manifest references.
	ImageSize Limit
}

// Limit is one bound and the object that sets it; By "" is no bound.
type Limit struct {
	Max int64
	// By names the object for messages: `resourcequota "q"`.
	By string
	// Resource is the name the object gives the bound
	// ("openshift.io/imagestreams").
	Resource string
}

func (l Limit) set() bool { return l.By != "" }

// Tighter returns the lower of two bounds: where several objects bound the
// same thing, each must hold.
func (l Limit) Tighter(o Limit) Limit {
	if !l.set() || (o.set() && o.Max < l.Max) {
		return o
	}
	return l
}

// LimitsPolicy says which objects of a project bound its pushes, and
// what they allow.
type LimitsPolicy struct {
	Group     string
	Resources []string
	Decide    func(objects []Object) (Limits, error)
}

// SetLimitsPolicy makes the store enforce p from now on; without one,
// nothing is bounded.
func (s *Store) SetLimitsPolicy(p LimitsPolicy) { s.limits.Store(&p) }

// QuotaExceededError refuses a write that would take a project beyond a
// bound: Requested on top of Used goes over Max (Requested -1: Used has
// reached Max, and nothing more fits).
type QuotaExceededError struct {
	Limit
	Requested, Used int64
	// Bytes: the figures are sizes.
	Bytes bool
}

func (e *QuotaExceededError) Error() string {
	f := func(n int64) string { return strconv.FormatInt(n, 10) }
	if e.Bytes {
		f = FormatBytes
	}
	if e.Requested < 0 {
		return fmt.Sprintf("exceeded %s, used: %s=%s, limited: %s=%s: the project is full",
			e.By, e.Resource, f(e.Used), e.Resource, f(e.Max))
	}
	return fmt.Sprintf("exceeded %s, requested: %s=%s, used: %s=%s, limited: %s=%s",
		e.By, e.Resource, f(e.Requested), e.Resource, f(e.Used), e.Resource, f(e.Max))
}

func (e *QuotaExceededError) Unwrap() error { return errdefs.ErrQuotaExceeded }

// ImageTooLargeError refuses an image bigger than a limit range allows.
type ImageTooLargeError struct {
	Limit
	Digest digest.Digest
	Size   int64
}

func (e *ImageTooLargeError) Error() string {
	return fmt.Sprintf("image %s of size %s exceeds the maximum of %s: %s=%s",
		e.Digest, FormatBytes(e.Size), e.By, e.Resource, FormatBytes(e.Max))
}

func (e *ImageTooLargeError) Unwrap() error { return errdefs.ErrQuotaExceeded }

// FormatBytes writes n as a Kubernetes quantity: with the largest binary
// suffix that divides it exactly ("5Mi"), else as a plain number, so the
// figure is exact either way.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// Usage is what a project holds, as its quota counts it.
type Usage struct {
	ImageStreams int64
	StorageBytes int64
}

// ProjectUsage returns what project holds now.
func (s *Store) ProjectUsage(ctx context.Context, project string) (Usage, error) {
	streams, err := projectStreams(ctx, s.read, project)
	if err != nil {
		return Usage{}, err
	}
	bytes, err := projectStorage(ctx, s.read, project)
	return Usage{ImageStreams: streams, StorageBytes: bytes}, err
}

// projectStreams is the number of project's repositories.
func projectStreams(ctx context.Context, q querier, project string) (int64, error) {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM repositories WHERE project = ?`, project).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the image streams of %s: %w", project, err)
	}
	return n, nil
}

// projectStorage is the bytes of the distinct blobs and manifests the
// repositories of project link: a sum over its rows of project_contents,
// which triggers keep as links come and go.
func projectStorage(ctx context.Context, q querier, project string) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM project_contents WHERE project = ?`, project).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sum the storage of %s: %w", project, err)
	}
	return n, nil
}

// limitsOf reads project's limits in tx, once per transaction. When any
// is set, tx holds the project's quota lock from then on: the writes that
// count what the project holds and add to it take turns, so two pushes
// cannot each fit alone and overrun together.
func (s *Store) limitsOf(ctx context.Context, tx *sql.Tx, project string) (Limits, error) {
	p := s.limits.Load()
	if p == nil {
		return Limits{}, nil
	}
	e := s.effectsOf(tx)
	if l, ok := e.limits[project]; ok {
		return l, nil
	}
	args := []any{p.Group, project}
	for _, r := range p.Resources {
		args = append(args, r)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+objectColumns+` FROM objects
WHERE api_group = ? AND namespace = ? AND resource IN (`+placeholders(len(p.Resources))+`)`, args...)
	if err != nil {
		return Limits{}, fmt.Errorf("read the quotas of %s: %w", project, err)
	}
	objs, err := scanObjects(rows)
	if err != nil {
		return Limits{}, fmt.Errorf("read the quotas of %s: %w", project, err)
	}
	var l Limits
	if len(objs) > 0 {
		if l, err = p.Decide(objs); err != nil {
			return Limits{}, fmt.Errorf("the quotas of %s: %w", project, err)
		}
	}
	if (l.ImageStreams.set() || l.Storage.set()) && s.dialect.advisoryLock != "" {
		if _, err := tx.ExecContext(ctx, s.dialect.advisoryLock, "quota:"+project); err != nil {
			return Limits{}, fmt.Errorf("lock the quota of %s: %w", project, err)
		}
	}
	if e.limits == nil {
		e.limits = map[string]Limits{}
	}
	e.limits[project] = l
	return l, nil
}

// checkStreamQuota refuses the repository tx just created in project when
// the project now holds more than its quota allows.
func (s *Store) checkStreamQuota(ctx context.Context, tx *sql.Tx, project string) error {
	l, err := s.limitsOf(ctx, tx, project)
	if err != nil || !l.ImageStreams.set() {
		return err
	}
	n, err := projectStreams(ctx, tx, project)
	if err != nil {
		return err
	}
	if n > l.ImageStreams.Max {
		return &QuotaExceededError{Limit: l.ImageStreams, Requested: 1, Used: n - 1}
	}
	return nil
}

// checkStorageQuota refuses the link of dgst (a blob, or a manifest) into
// repo, which tx just made, when it brings new bytes to the project and
// the project then holds more than its quota allows. Bytes another of its
// repositories already links cost nothing.
func (s *Store) checkStorageQuota(ctx context.Context, tx *sql.Tx, repo string, dgst digest.Digest, manifest bool) error {
	project := projectOf(repo)
	l, err := s.limitsOf(ctx, tx, project)
	if err != nil || !l.Storage.set() {
		return err
	}
	// The link tx just made is counted: more than one is bytes the
	// project held already.
	isManifest := 0
	if manifest {
		isManifest = 1
	}
	var links, size int64
	err = tx.QueryRowContext(ctx, `SELECT links, size FROM project_contents WHERE project = ? AND manifest = ? AND digest = ?`,
		project, isManifest, string(dgst)).Scan(&links, &size)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", dgst, project, err)
	}
	if links > 1 {
		return nil
	}
	total, err := projectStorage(ctx, tx, project)
	if err != nil {
		return err
	}
	if total > l.Storage.Max {
		return &QuotaExceededError{Limit: l.Storage, Requested: size, Used: total - size, Bytes: true}
	}
	return nil
}

// checkImageSize refuses manifest m when the blobs it references add up
// to more than a limit range of repo's project allows one image. An index
// is not an image: its manifests are checked as they are pushed.
func (s *Store) checkImageSize(ctx context.Context, tx *sql.Tx, repo string, m Manifest) error {
	var sizes []int64
	for _, ref := range m.References {
		if !ref.Manifest {
			sizes = append(sizes, ref.Size)
		}
	}
	return s.checkImageSizes(ctx, tx, repo, m.Digest, sizes)
}

// checkStoredImageSize is checkImageSize of a stored manifest, linked into
// repo from elsewhere (a tag from another stream).
func (s *Store) checkStoredImageSize(ctx context.Context, tx *sql.Tx, repo string, dgst digest.Digest) error {
	l, err := s.limitsOf(ctx, tx, projectOf(repo))
	if err != nil || !l.ImageSize.set() {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT size FROM manifest_references WHERE manifest_digest = ? AND is_manifest = 0`, string(dgst))
	if err != nil {
		return fmt.Errorf("references of %s: %w", dgst, err)
	}
	defer rows.Close()
	var sizes []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("references of %s: %w", dgst, err)
		}
		sizes = append(sizes, n)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("references of %s: %w", dgst, err)
	}
	return s.checkImageSizes(ctx, tx, repo, dgst, sizes)
}

// checkImageSizes refuses image dgst, whose blobs have sizes, when they
// add up to more than the limit: as declared, foreign layers included,
// and never wrapping around (a sum past the largest int64 is too large).
func (s *Store) checkImageSizes(ctx context.Context, tx *sql.Tx, repo string, dgst digest.Digest, sizes []int64) error {
	if len(sizes) == 0 {
		return nil
	}
	l, err := s.limitsOf(ctx, tx, projectOf(repo))
	if err != nil || !l.ImageSize.set() {
		return err
	}
	var total int64
	for _, n := range sizes {
		if n < 0 || n > l.ImageSize.Max-total {
			return &ImageTooLargeError{Limit: l.ImageSize, Digest: dgst, Size: saturatingSum(sizes)}
		}
		total += n
	}
	return nil
}

func saturatingSum(sizes []int64) int64 {
	var total int64
	for _, n := range sizes {
		if n > 0 && total > math.MaxInt64-n {
			return math.MaxInt64
		}
		total += max(n, 0)
	}
	return total
}

// quotaFirst reads the limits of repo's project at the start of a write
// that may add to it, taking the project's quota lock (when it has a
// quota) before any row lock: every write locks in that order, so the
// lock cannot close a cycle with the rows a push or the collector holds.
func (s *Store) quotaFirst(ctx context.Context, tx *sql.Tx, repo string) error {
	_, err := s.limitsOf(ctx, tx, projectOf(repo))
	return err
}

// checkProjectFull refuses a new upload session in a project that holds
// its storage quota already: its bytes could not be kept.
func (s *Store) checkProjectFull(ctx context.Context, tx *sql.Tx, project string) error {
	l, err := s.limitsOf(ctx, tx, project)
	if err != nil || !l.Storage.set() {
		return err
	}
	used, err := projectStorage(ctx, tx, project)
	if err != nil {
		return err
	}
	if used >= l.Storage.Max {
		return &QuotaExceededError{Limit: l.Storage, Requested: -1, Used: used, Bytes: true}
	}
	return nil
}
