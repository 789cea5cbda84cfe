// Package gcs is the blob driver for Google Cloud Storage, on
// cloud.google.com/go/storage. docs/STORAGE.md has the design: blobs at
// blobs/<alg>/<xx>/<hex>; each append of an upload session one object
// under upload-<id>., composed into the blob at commit; small fixed-size
// state. No request path lists the bucket.
package gcs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"cloud.google.com/go/auth/httptransport"
	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	raw "google.golang.org/api/storage/v1"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Settings are spec.storage.gcs of the registry Config, mirroring the
// API's type: decoded strictly, a field the API gains that this driver
// does not know is refused, not accepted and ignored.
type Settings struct {
	Bucket    string `json:"bucket,omitempty"`
	Region    string `json:"region,omitempty"`
	ProjectID string `json:"projectID,omitempty"`
	KeyID     string `json:"keyID,omitempty"`
}

// KeyFileKey is the credentials' key of the service-account key file: in
// the user secret its value is the file's JSON; in the server's
// environment, as on the reference, it may be the file's path.
const KeyFileKey = "REGISTRY_STORAGE_GCS_KEYFILE"

// EmulatorHostVar points the driver, as every Google client library, at
// a GCS emulator (host:port, or a URL) with no credentials.
const EmulatorHostVar = "STORAGE_EMULATOR_HOST"

const (
	// writeChunkSize is how much of an append the client library buffers
	// and sends per request (a multiple of 256 KiB, its unit); an append
	// no longer than it is one request.
	writeChunkSize = 8 << 20
	// maxSources is how many objects one compose joins (GCS's limit).
	maxSources = 32
	// redirectLifetime bounds a signed redirect (as the S3 driver's).
	redirectLifetime = 20 * time.Minute
	// recoverGrace: Recover leaves leftovers younger than this, longer
	// than a session lives untouched (24 hours).
	recoverGrace = 25 * time.Hour
)

// Driver is the GCS blob driver.
type Driver struct {
	client *gstorage.Client
	// raw is the JSON API's own client, for the calls the library does
	// not make as Berth needs them (a compose naming its KMS key).
	raw    *raw.Service
	bucket *gstorage.BucketHandle
	name   string
	// kmsKey, when set, is the Cloud KMS key every object is written with.
	kmsKey string
	// signer signs redirect URLs; nil when there is no service-account key
	// to sign with, and blobs are streamed.
	signer *signer
	// recoverGrace: Recover leaves leftovers younger than this.
	recoverGrace time.Duration

	// Findings are what the driver found and did when built.
	objstore.Findings
}

// signer is what signs a V4 URL: the service account and its key.
type signer struct {
	accessID string
	key      []byte
	// insecure: the endpoint is plain HTTP (an emulator).
	insecure bool
}

// serviceAccountKey is what the driver reads of a key file.
type serviceAccountKey struct {
	Type        string `json:"type"`
	ProjectID   string `json:"project_id"`
	PrivateKey  string `json:"private_key"`
	ClientEmail string `json:"client_email"`
}

// New builds the driver from opts (storage.Constructor). It checks the
// bucket and creates it when it is absent.
func New(ctx context.Context, opts storage.Options) (storage.Driver, error) {
	set, err := storage.DecodeSettings[Settings](opts)
	if err != nil {
		return nil, err
	}
	d, keyFile, err := newDriver(ctx, set, opts)
	if err != nil {
		return nil, err
	}
	project := set.ProjectID
	if project == "" {
		project = keyFile.ProjectID
	}
	if err := d.provision(ctx, set, project, opts.Existing); err != nil {
		return nil, err
	}
	return d, nil
}

func newDriver(ctx context.Context, set Settings, opts storage.Options) (*Driver, serviceAccountKey, error) {
	var sa serviceAccountKey
	if set.Bucket == "" {
		return nil, sa, fmt.Errorf("gcs: %w: no bucket named", errdefs.ErrInvalidArgument)
	}
	keyJSON, err := readKeyFile(opts.Credentials[KeyFileKey])
	if err != nil {
		return nil, sa, err
	}
	if keyJSON != nil {
		if err := json.Unmarshal(keyJSON, &sa); err != nil {
			// Not the decoder's words: they may quote the secret.
			return nil, sa, fmt.Errorf("gcs: %w: %s is not a key file (its JSON does not parse)", errdefs.ErrInvalidArgument, KeyFileKey)
		}
		if sa.Type != string(credentials.ServiceAccount) {
			return nil, sa, fmt.Errorf("gcs: %w: %s holds a key of type %q; it must be a service account's key file (type service_account)", errdefs.ErrInvalidArgument, KeyFileKey, sa.Type)
		}
	}
	base, err := storage.BackendClient(opts.HTTPClient, nil)
	if err != nil {
		return nil, sa, err
	}
	emulator := os.Getenv(EmulatorHostVar)
	httpClient := base
	if emulator == "" {
		// The library authenticates only clients it builds itself, and
		// those do not follow the Config's proxy: the credentials wrap
		// the one client that does, for tokens and requests alike.
		detect := &credentials.DetectOptions{Scopes: []string{gstorage.ScopeFullControl}, Client: base}
		var creds *auth.Credentials
		if keyJSON != nil {
			creds, err = credentials.NewCredentialsFromJSON(credentials.ServiceAccount, keyJSON, detect)
		} else {
			creds, err = credentials.DetectDefault(detect)
		}
		if err != nil {
			if keyJSON != nil {
				// The library's words may quote the key file.
				return nil, sa, fmt.Errorf("gcs: %w: %s holds no usable service account key", errdefs.ErrInvalidArgument, KeyFileKey)
			}
			return nil, sa, fmt.Errorf("gcs: the application default credentials (no %s was given): %w", KeyFileKey, err)
		}
		httpClient, err = httptransport.NewClient(&httptransport.Options{Credentials: creds, BaseRoundTripper: base.Transport})
		if err != nil {
			return nil, sa, fmt.Errorf("gcs: authenticated client: %w", err)
		}
	}
	client, err := gstorage.NewClient(ctx, option.WithHTTPClient(httpClient))
	if err != nil {
		return nil, sa, fmt.Errorf("gcs: client: %w", err)
	}
	rawOpts := []option.ClientOption{option.WithHTTPClient(httpClient)}
	if emulator != "" {
		rawOpts = append(rawOpts, option.WithEndpoint(emulatorEndpoint(emulator)))
	}
	rawService, err := raw.NewService(ctx, rawOpts...)
	if err != nil {
		return nil, sa, fmt.Errorf("gcs: JSON API client: %w", err)
	}
	// Every write is idempotent by design (an append rewrites the one
	// part a retry would, a blob's content is its name), so all are
	// retried, with the library's backoff and jitter.
	client.SetRetry(gstorage.WithPolicy(gstorage.RetryAlways), gstorage.WithMaxAttempts(5))
	d := &Driver{
		client:       client,
		raw:          rawService,
		bucket:       client.Bucket(set.Bucket),
		name:         set.Bucket,
		kmsKey:       set.KeyID,
		recoverGrace: recoverGrace,
	}
	if sa.PrivateKey != "" && sa.ClientEmail != "" {
		d.signer = &signer{accessID: sa.ClientEmail, key: []byte(sa.PrivateKey),
			insecure: emulator != "" && !strings.HasPrefix(emulator, "https://")}
	}
	return d, sa, nil
}

// emulatorEndpoint is the JSON API's endpoint on the emulator at host
// (host:port, or a URL), as the library makes it.
func emulatorEndpoint(host string) string {
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	return strings.TrimRight(host, "/") + "/storage/v1/"
}

// readKeyFile is the key file value names: its JSON, or the path of a
// file holding it. nil for none. The value is a secret: no error repeats
// it, and only a short single line is taken for a path.
func readKeyFile(value string) ([]byte, error) {
	value = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(value), "\ufeff"))
	switch {
	case value == "":
		return nil, nil
	case strings.HasPrefix(value, "{"):
		return []byte(value), nil
	case len(value) > 1024 || strings.ContainsAny(value, "\n\r{}\"") || !filepath.IsAbs(value):
		return nil, fmt.Errorf("gcs: %w: %s is neither a key file's JSON nor the absolute path of one", errdefs.ErrInvalidArgument, KeyFileKey)
	}
	b, err := os.ReadFile(value)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is the secret's value
		}
		return nil, fmt.Errorf("gcs: read the key file %s names: %w", KeyFileKey, err)
	}
	return b, nil
}

// classify maps a GCS error onto the driver errors the registry answers
// by: a missing object is not found, a bad range an invalid argument, a
// backend that answers 5xx, 408 or 429 or does not answer at all (after
// the library's retries) unavailable. A missing bucket, refused
// credentials and the like stay plain errors: no retry mends them.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("gcs %s: %w", what, err)
	}
	var apiErr *googleapi.Error
	status := 0
	if errors.As(err, &apiErr) {
		status = apiErr.Code
	}
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	switch {
	case errors.As(err, &certErr) || errors.As(err, &authErr):
		return fmt.Errorf("gcs %s: the endpoint's certificate is not trusted: %w", what, err)
	case errors.Is(err, gstorage.ErrBucketNotExist):
		return fmt.Errorf("gcs %s: the bucket does not exist: %w", what, err)
	case errors.Is(err, gstorage.ErrObjectNotExist) || status == http.StatusNotFound:
		return fmt.Errorf("gcs %s: %w: %v", what, errdefs.ErrNotFound, err)
	case status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("gcs %s: %w: %v", what, errdefs.ErrInvalidArgument, err)
	case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return fmt.Errorf("gcs %s: %w: %v", what, errdefs.ErrUnavailable, err)
	case status == 0 && errors.As(err, &netErr):
		return fmt.Errorf("gcs %s: %w: %v", what, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("gcs %s: %w", what, err)
}

// Health implements storage.HealthChecker: the bucket answers.
func (d *Driver) Health(ctx context.Context) error {
	_, err := d.bucket.Attrs(ctx)
	return classify(err, "get bucket "+d.name)
}
