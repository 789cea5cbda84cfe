// Package storage defines the blob driver: where content-addressed blob
// bytes live and how upload sessions write them. Drivers know nothing of
// repositories, tags or manifests; whether a blob exists and how big it is
// are facts of the metadata store, never of listing a backend.
//
// The lifecycle of a blob is ingest, then commit, then visible:
//
//  1. Append writes upload bytes at the offset the caller tracks (the
//     offset lives in the metadata store, so any instance can continue an
//     upload). Nothing appended is visible as a blob.
//  2. Commit checks the size, makes the bytes durable and publishes them
//     under their digest in one atomic step. The caller has already checked
//     the digest while the bytes streamed in.
//  3. Open serves ranges of the blob (the size is the store's); a driver
//     whose content is local also implements Seeker, and one that can hand
//     clients a direct URL implements Redirector.
//
// Drivers are chosen by name from a Registry table (filesystem, memory, S3,
// GCS, Azure, Swift): a new backend is one more row, callers unchanged.
package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sort"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Provider reads committed blobs.
type Provider interface {
	// Open returns length bytes of dgst from offset on, or all of them to
	// its end when length < 0: one ranged read, which is what object
	// storage serves (the caller knows the size from the metadata store).
	// The caller closes it. A missing blob is errdefs.ErrNotFound; an
	// offset past its end is errdefs.ErrInvalidArgument.
	Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error)
}

// Seeker is implemented by drivers whose blobs cost nothing to move about
// in (local files, memory): serving then seeks one handle for each range
// instead of opening one per range, and an *os.File it returns lets the
// connection use sendfile.
type Seeker interface {
	// OpenSeeker returns the content of dgst, positioned at its start.
	// The caller closes it. A missing blob is errdefs.ErrNotFound.
	OpenSeeker(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, error)
}

// Upload is an upload session as its driver sees it: the caller's ID for
// it (random, unguessable, [a-z0-9] only), and the state the driver keeps
// about it between requests (an S3 multipart upload's ID and its parts'
// ETags, a GCS resumable session's URI). The caller records State with the
// session's size, in the same step, and passes it back with every later
// call on the session; it is nil for a new session and for drivers that
// keep nothing (local files hold all they need).
type Upload struct {
	ID    string
	State []byte
}

// Ingester runs upload sessions.
type Ingester interface {
	// Append writes r to upload u at offset and returns how many bytes it
	// wrote and the upload's state after them (to be recorded with the
	// new size), also when it fails after writing some. offset is the
	// length the caller recorded for the upload; a driver holding more
	// bytes than that (a crash after the write, before the record) drops
	// the excess first. Fewer bytes than offset is
	// errdefs.ErrInvalidArgument: the upload lost data and must restart.
	// An unknown upload at offset 0 starts. Appended bytes need not be
	// durable before Commit; a driver whose bytes can be lost meanwhile
	// says so by implementing Volatile.
	Append(ctx context.Context, u Upload, offset int64, r io.Reader) (n int64, state []byte, err error)
	// ReadUpload returns the bytes appended so far, for a caller that must
	// hash them again (a digest algorithm other than the streaming one).
	ReadUpload(ctx context.Context, u Upload) (io.ReadCloser, error)
	// Commit makes upload u durable and visible as blob dgst. It fails
	// with errdefs.ErrSizeMismatch, leaving the upload untouched, unless the
	// upload holds exactly size bytes; errdefs.ErrUnavailable says it
	// failed before anything was made durable and may be retried. After
	// any other failure the upload's bytes can no longer be trusted.
	// Committing content that already exists succeeds and discards the
	// upload (so a commit repeated after a crash succeeds). After Commit
	// returns nil the blob survives a crash.
	Commit(ctx context.Context, u Upload, dgst digest.Digest, size int64) error
	// Abort discards upload u. An unknown upload is not an error. Its
	// State may be missing (a caller that lost it): the driver then finds
	// what it holds for u.ID by itself.
	Abort(ctx context.Context, u Upload) error
}

// Deleter removes committed content.
type Deleter interface {
	// Delete removes blob dgst; a missing blob is errdefs.ErrNotFound.
	Delete(ctx context.Context, dgst digest.Digest) error
}

// Driver is what the registry needs of a blob backend.
type Driver interface {
	Provider
	Ingester
	Deleter
}

// Redirector is implemented by drivers that let clients fetch a blob
// directly from the backend (object storage) instead of through Berth.
type Redirector interface {
	// RedirectURL returns a short-lived URL for dgst, or "" when this blob
	// should be streamed after all.
	RedirectURL(ctx context.Context, dgst digest.Digest) (string, error)
}

// RedirectDescriber is a Redirector that says where it sends clients
// (for status): "presigned S3 URLs valid for 20m0s".
type RedirectDescriber interface {
	DescribeRedirects() string
}

// Volatile is implemented by drivers whose appended bytes are durable only
// from Commit on, and until then survive within an epoch: a local file
// system's page cache lives as long as the machine's boot, not beyond. A
// caller that records an upload's progress records the epoch with it, and
// reads the bytes back to check them before it trusts a record made in
// another epoch.
type Volatile interface {
	// Epoch names the current epoch.
	Epoch() string
}

// Recoverer is implemented by drivers that keep leftovers after a crash:
// temp files, or uploads whose session record never got written.
type Recoverer interface {
	// Recover removes every upload for which live returns false and any
	// half-finished commit. It runs at start, before serving.
	Recover(ctx context.Context, live func(id string) bool) error
}

// HealthChecker is implemented by drivers that can tell cheaply whether
// they can serve (the backend is reachable, the directory writable).
// /healthz asks it with a short timeout and caches the answer briefly, so
// it must be cheap and must not touch content.
type HealthChecker interface {
	Health(ctx context.Context) error
}

// Options configure a driver. Each driver reads the fields it needs.
type Options struct {
	// DataDir is Berth's data directory; local drivers keep their files
	// beneath it.
	DataDir string
	// Root, when set, is the directory a local driver keeps its files in
	// instead of its default place under DataDir (a named volume).
	Root string
	// SizeLimit caps the bytes a driver that keeps them in memory holds
	// (0: no cap); an append past it fails with syscall.ENOSPC.
	SizeLimit int64

	// Settings is an object-storage driver's own section of the registry
	// Config's spec.storage (its s3, gcs, azure or swift object), as JSON:
	// DecodeSettings reads it into the driver's typed settings.
	Settings json.RawMessage
	// Credentials are the storage credentials in effect, by the user
	// secret's key names (REGISTRY_STORAGE_S3_ACCESSKEY, …): the secret's
	// over the server's environment. They never reach a log.
	Credentials map[string]string
	// Secrets are the values of Secrets the settings name, by field
	// (SecretCloudFrontKey). They never reach a log.
	Secrets map[string][]byte
	// TrustedCA is a PEM bundle of CAs the driver trusts for its endpoint
	// beside the system's (spec.storage.s3.trustedCA), or nil.
	TrustedCA []byte
	// HTTPClient is how a driver reaches its backend: it follows the
	// registry Config's proxy, live. Nil: http.DefaultClient.
	HTTPClient *http.Client
	// Existing opens a storage that must exist already (an older storage
	// opened again to be read): a missing bucket or container is
	// errdefs.ErrNotFound, never created afresh and empty.
	Existing bool
}

// SecretCloudFrontKey is the Options.Secrets entry of the CloudFront
// private key that spec.storage.s3.cloudFront.privateKey names.
const SecretCloudFrontKey = "cloudFront.privateKey"

// DecodeSettings decodes opts.Settings into a driver's typed settings T,
// refusing a field T does not know (a typo must not be a setting that is
// silently ignored). No settings decode to T's zero value.
func DecodeSettings[T any](opts Options) (T, error) {
	var out T
	if len(opts.Settings) == 0 {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(opts.Settings))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return out, fmt.Errorf("storage settings: %w: %v", errdefs.ErrInvalidArgument, err)
	}
	return out, nil
}

// Constructor builds a driver.
type Constructor func(ctx context.Context, opts Options) (Driver, error)

// Registry maps driver names to constructors.
type Registry map[string]Constructor

// New builds the driver registered as name.
func (r Registry) New(ctx context.Context, name string, opts Options) (Driver, error) {
	construct, ok := r[name]
	if !ok {
		return nil, fmt.Errorf("unknown storage driver %q (known: %v)", name, r.Names())
	}
	d, err := construct(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("storage driver %s: %w", name, err)
	}
	return d, nil
}

// Names lists the registered drivers, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Condition is a fact about a storage for the registry Config's status,
// in the reference's terms: StorageExists, StoragePublicAccessBlocked,
// StorageEncrypted, StorageIncompleteUploadCleanupEnabled, ….
type Condition struct {
	Type, Status, Reason, Message string
}

// Provisioner is implemented by drivers that create their backend when it
// is absent (a bucket). ProvisionToken is the random token the driver
// left in the backend it created, "" when it created none: the caller
// records it, and only a backend still holding it is Berth's to destroy.
type Provisioner interface {
	ProvisionToken() string
}

// Destroyer is implemented by drivers that can remove the backend they
// created (a bucket and Berth's objects in it), for a registry set to
// Removed whose storage is Managed. A backend that does not hold token,
// or holds objects Berth did not write, is kept: ErrNotProvisioned.
type Destroyer interface {
	// Destroy says what it removed.
	Destroy(ctx context.Context, token string) (string, error)
}

// ErrNotProvisioned says that a backend, or part of it, was not made by
// Berth, and is kept.
var ErrNotProvisioned = errors.New("not provisioned by Berth")

// Reporter is implemented by drivers that check or provision their
// backend when built (a bucket found, or created with its access block
// and lifecycle rule): what they found and did, for status.
type Reporter interface {
	Conditions() []Condition
}

// HashingReader hashes what it reads: a digest is checked as the bytes
// stream in, once, whatever driver stores them. It counts them too: a
// driver that kept a different number of bytes than it read (Append's n
// against N) makes the hash describe bytes that are not stored.
type HashingReader struct {
	R    io.Reader
	Hash hash.Hash
	// N is how many bytes were read.
	N int64
}

func (hr *HashingReader) Read(p []byte) (int, error) {
	n, err := hr.R.Read(p)
	hr.Hash.Write(p[:n])
	hr.N += int64(n)
	return n, err
}
