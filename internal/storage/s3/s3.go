// Package s3 is the blob driver for Amazon S3 and S3-compatible object
// storage, on the AWS SDK for Go v2. docs/STORAGE.md has the design: blobs
// at blobs/<alg>/<xx>/<hex>, each upload session a multipart upload and a
// short tail object under upload-<id>., small fixed-size state, commit by
// server-side copy. No request path lists the bucket.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Settings are spec.storage.s3 of the registry Config. They mirror the
// API's type on purpose: decoded strictly, a field the API gains that this
// driver does not know is refused, not accepted and ignored.
type Settings struct {
	Bucket             string      `json:"bucket,omitempty"`
	Region             string      `json:"region,omitempty"`
	RegionEndpoint     string      `json:"regionEndpoint,omitempty"`
	ChunkSizeMiB       int32       `json:"chunkSizeMiB,omitempty"`
	Encrypt            bool        `json:"encrypt,omitempty"`
	KeyID              string      `json:"keyID,omitempty"`
	VirtualHostedStyle bool        `json:"virtualHostedStyle,omitempty"`
	CloudFront         *CloudFront `json:"cloudFront,omitempty"`
	TrustedCA          struct {
		Name string `json:"name,omitempty"`
	} `json:"trustedCA,omitempty"`
}

// CloudFront is spec.storage.s3.cloudFront.
type CloudFront struct {
	BaseURL    string `json:"baseURL"`
	PrivateKey struct {
		Name     string `json:"name"`
		Key      string `json:"key"`
		Optional *bool  `json:"optional,omitempty"`
	} `json:"privateKey"`
	KeypairID string `json:"keypairID"`
	Duration  string `json:"duration,omitempty"`
}

// The credentials' keys in the user secret (and the server's environment).
const (
	AccessKeyKey = "REGISTRY_STORAGE_S3_ACCESSKEY"
	SecretKeyKey = "REGISTRY_STORAGE_S3_SECRETKEY"
)

const (
	mib = 1 << 20
	// defaultChunkMiB is the first part size when chunkSizeMiB is unset
	// (the reference documents 10 MiB).
	defaultChunkMiB = 10
	// maxPartSize and maxParts are S3's limits on a multipart upload.
	maxPartSize = 5 << 30
	maxParts    = 10_000
	// partsPerSize is how many parts are written at one size before the
	// size doubles: a 10 MiB start holds about 9.8 TiB in 10,000 parts.
	partsPerSize = 1000
	// maxCopySize is the largest object one CopyObject copies; larger
	// ones are copied as a multipart upload of part copies.
	maxCopySize = 5 << 30
	// redirectLifetime bounds a presigned redirect (as CNCF Distribution's
	// 20 minutes).
	redirectLifetime = 20 * time.Minute
)

// Driver is the S3 blob driver.
type Driver struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	// partSize is the size of a new upload's first parts.
	partSize int64
	// copyPartSize is the part size of a multipart copy, and the size
	// above which a copy is one.
	copyPartSize int64
	sse          sse
	spool        string
	// recoverGrace: Recover leaves leftovers younger than this.
	recoverGrace time.Duration
	// front, when set, signs redirects to a CloudFront distribution in
	// front of the bucket instead of presigning S3 GETs.
	front *cloudFront

	// Findings are what the driver found and did when built.
	objstore.Findings
}

// sse is the server-side encryption every write asks for.
type sse struct {
	algorithm types.ServerSideEncryption
	keyID     string
}

// New builds the driver from opts (storage.Constructor). It checks the
// bucket and creates it when it is absent.
func New(ctx context.Context, opts storage.Options) (storage.Driver, error) {
	set, err := storage.DecodeSettings[Settings](opts)
	if err != nil {
		return nil, err
	}
	d, err := newDriver(ctx, set, opts)
	if err != nil {
		return nil, err
	}
	if err := d.provision(ctx, set, opts.Existing); err != nil {
		return nil, err
	}
	return d, nil
}

func newDriver(ctx context.Context, set Settings, opts storage.Options) (*Driver, error) {
	if set.Bucket == "" {
		return nil, fmt.Errorf("s3: %w: no bucket named", errdefs.ErrInvalidArgument)
	}
	front, err := newCloudFront(set.CloudFront, opts.Secrets)
	if err != nil {
		return nil, err
	}
	if set.KeyID != "" && !set.Encrypt {
		return nil, fmt.Errorf("s3: %w: keyID names a KMS key but encrypt is false: set encrypt to true to use it", errdefs.ErrInvalidArgument)
	}
	chunk := int64(set.ChunkSizeMiB)
	if chunk == 0 {
		chunk = defaultChunkMiB
	}
	if chunk < 5 || chunk > 5120 {
		return nil, fmt.Errorf("s3: %w: chunkSizeMiB %d is not between 5 and 5120", errdefs.ErrInvalidArgument, chunk)
	}
	ca := opts.TrustedCA
	if path := os.Getenv("AWS_CA_BUNDLE"); path != "" {
		// The AWS tools' own way to trust a CA: honoured beside trustedCA,
		// on the one client that follows the Config's proxy.
		bundle, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("s3: read AWS_CA_BUNDLE: %w", err)
		}
		ca = append(append(append([]byte(nil), ca...), '\n'), bundle...)
	}
	httpClient, err := storage.BackendClient(opts.HTTPClient, ca)
	if err != nil {
		return nil, err
	}
	region := set.Region
	if region == "" {
		region = "us-east-1"
	}
	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		awsconfig.WithRetryMaxAttempts(5),
	}
	if ak, sk := opts.Credentials[AccessKeyKey], opts.Credentials[SecretKeyKey]; ak != "" || sk != "" {
		if ak == "" || sk == "" {
			return nil, fmt.Errorf("s3: %w: the credentials have one of %s and %s but not the other", errdefs.ErrInvalidArgument, AccessKeyKey, SecretKeyKey)
		}
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	cfg.HTTPClient = httpClient
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if set.RegionEndpoint != "" {
			o.BaseEndpoint = aws.String(set.RegionEndpoint)
			o.UsePathStyle = !set.VirtualHostedStyle
		} else {
			// AWS itself, as the storage's ID says: not an endpoint that
			// AWS_ENDPOINT_URL or a shared config file names.
			o.BaseEndpoint = nil
		}
		// The payload's SHA-256 is signed with every part (the parts are
		// buffered), which is integrity enough; the newer trailing
		// checksums are not served by every S3-compatible server.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	d := &Driver{
		client:       client,
		presign:      s3.NewPresignClient(client),
		bucket:       set.Bucket,
		partSize:     chunk * mib,
		copyPartSize: maxCopySize,
		spool:        opts.DataDir,
		front:        front,
		recoverGrace: recoverGrace,
	}
	if set.Encrypt {
		d.sse.algorithm = types.ServerSideEncryptionAes256
		if set.KeyID != "" {
			d.sse = sse{algorithm: types.ServerSideEncryptionAwsKms, keyID: set.KeyID}
		}
	}
	return d, nil
}

// classify maps an S3 error onto the driver errors the registry answers
// by: a missing key or upload is not found, a bad range an invalid
// argument, a backend that answers 5xx or 429 or does not answer at all
// (after the SDK's retries) unavailable. A missing bucket, refused
// credentials and the like stay plain errors: no retry mends them. what
// says what was being done.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3 %s: %w", what, err)
	}
	code, status := errorCode(err), httpStatus(err)
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr):
		// The endpoint's certificate is not trusted: no retry mends it.
		return fmt.Errorf("s3 %s: the endpoint's certificate is not trusted (spec.storage.s3.trustedCA): %w", what, err)
	case code == "NoSuchBucket":
		return fmt.Errorf("s3 %s: the bucket does not exist: %w", what, err)
	case code == "NoSuchKey" || code == "NoSuchUpload" || status == http.StatusNotFound:
		return fmt.Errorf("s3 %s: %w: %v", what, errdefs.ErrNotFound, err)
	case code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("s3 %s: %w: %v", what, errdefs.ErrInvalidArgument, err)
	case status >= 500 || status == http.StatusTooManyRequests || code == "SlowDown" || code == "RequestTimeout":
		return fmt.Errorf("s3 %s: %w: %v", what, errdefs.ErrUnavailable, err)
	case status == 0 && errors.As(err, &netErr):
		// No answer: the connection failed or timed out.
		return fmt.Errorf("s3 %s: %w: %v", what, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("s3 %s: %w", what, err)
}

// Health implements storage.HealthChecker: the bucket answers.
func (d *Driver) Health(ctx context.Context) error {
	_, err := d.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.bucket})
	return classify(err, "head bucket "+d.bucket)
}
