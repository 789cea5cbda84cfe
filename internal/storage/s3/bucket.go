package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// The reference operator's storage condition types.
const (
	condExists        = "StorageExists"
	condPublicBlocked = "StoragePublicAccessBlocked"
	condEncrypted     = "StorageEncrypted"
	condCleanup       = "StorageIncompleteUploadCleanupEnabled"
)

// Lifecycle rules Berth sets on a bucket it creates.
const (
	// abortRuleID aborts multipart uploads a day after they began: what a
	// crash or a lost abort leaves behind (the reference's guidance).
	abortRuleID = "berth-abort-incomplete-multipart-uploads"
	// expireRuleID removes the tail objects of upload sessions long dead
	// (a live session rewrites its tail at every append and expires after
	// a day untouched).
	expireRuleID      = "berth-expire-upload-leftovers"
	expireUploadsDays = 7
)

// provision checks the bucket and creates it when it is absent (unless it
// must exist), with
// public access blocked, the cleanup rules and, when asked, default
// encryption. Each step is a condition. A bucket that cannot be reached
// or belongs to someone else is an error: the storage is not put in
// effect.
func (d *Driver) provision(ctx context.Context, set Settings, existing bool) error {
	_, err := d.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.bucket})
	switch status := httpStatus(err); {
	case err == nil:
		d.SetConditions(storage.Condition{Type: condExists, Status: "True", Reason: "S3 Bucket Exists", Message: "User supplied S3 bucket exists and is accessible"})
		return nil
	case status == http.StatusForbidden:
		return fmt.Errorf("s3: Unable to Access Bucket: the bucket %s exists, but is owned by another account or these credentials may not use it: %w", d.bucket, err)
	case status != http.StatusNotFound:
		return classify(err, "head bucket "+d.bucket)
	case existing:
		return fmt.Errorf("s3: bucket %s does not exist: %w", d.bucket, errdefs.ErrNotFound)
	}
	in := &s3.CreateBucketInput{Bucket: &d.bucket}
	if set.Region != "" && set.Region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(set.Region)}
	}
	if _, err := d.client.CreateBucket(ctx, in); err != nil && errorCode(err) != "BucketAlreadyOwnedByYou" {
		return fmt.Errorf("s3: create bucket %s: %w", d.bucket, err)
	}
	conds := []storage.Condition{{Type: condExists, Status: "True", Reason: "Creation Successful", Message: "S3 bucket was successfully created"}}
	// The token proves later that Berth made this bucket (a bucket named
	// in the Config afterwards is not Berth's to remove).
	token := objstore.NewToken()
	if err := d.putBytes(ctx, objstore.ProvisionKey, []byte(token)); err != nil {
		conds[0].Message += fmt.Sprintf("; but Berth could not leave its token in it (%v), so it will never remove it", err)
	} else {
		d.SetToken(token)
	}
	_, err = d.client.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{
		Bucket: &d.bucket,
		PublicAccessBlockConfiguration: &types.PublicAccessBlockConfiguration{
			BlockPublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true),
			IgnorePublicAcls: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true),
		},
	})
	conds = append(conds, stepCondition(condPublicBlocked, err, "Public Access Block Successful",
		"Public access to the S3 bucket and its contents have been successfully blocked."))
	_, err = d.client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: &d.bucket,
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{
			{
				ID: aws.String(abortRuleID), Status: types.ExpirationStatusEnabled,
				Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String("")},
				AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(1)},
			},
			{
				ID: aws.String(expireRuleID), Status: types.ExpirationStatusEnabled,
				Filter:     &types.LifecycleRuleFilter{Prefix: aws.String(objstore.UploadsPrefix)},
				Expiration: &types.LifecycleExpiration{Days: aws.Int32(expireUploadsDays)},
			},
		}},
	})
	conds = append(conds, stepCondition(condCleanup, err, "Enable Cleanup Successful",
		"Default cleanup of incomplete multipart uploads after one (1) day was successfully enabled"))
	if d.sse.algorithm != "" {
		rule := types.ServerSideEncryptionByDefault{SSEAlgorithm: d.sse.algorithm}
		if d.sse.keyID != "" {
			rule.KMSMasterKeyID = aws.String(d.sse.keyID)
		}
		_, err = d.client.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{
			Bucket: &d.bucket,
			ServerSideEncryptionConfiguration: &types.ServerSideEncryptionConfiguration{Rules: []types.ServerSideEncryptionRule{
				{ApplyServerSideEncryptionByDefault: &rule},
			}},
		})
		conds = append(conds, stepCondition(condEncrypted, err, "Encryption Successful",
			fmt.Sprintf("Default %s encryption was successfully enabled on the S3 bucket", d.sse.algorithm)))
	}
	d.SetConditions(conds...)
	return nil
}

// stepCondition is the condition of one provisioning step: True with
// reason and message, or False with the S3 error code (the reference's
// "Unknown Error Occurred" when there is none) and its text.
func stepCondition(typ string, err error, reason, message string) storage.Condition {
	if err == nil {
		return storage.Condition{Type: typ, Status: "True", Reason: reason, Message: message}
	}
	code := errorCode(err)
	if code == "" {
		code = "Unknown Error Occurred"
	}
	return storage.Condition{Type: typ, Status: "False", Reason: code, Message: err.Error()}
}

// errorCode is the S3 error code of err ("" when S3 did not answer).
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus is the HTTP status S3 answered err with (0 for none).
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// Destroy implements storage.Destroyer: if the bucket holds token, Berth's
// objects and multipart uploads in it go, then the bucket, unless it holds
// other objects.
func (d *Driver) Destroy(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("bucket %s: Berth recorded no token for it: %w", d.bucket, storage.ErrNotProvisioned)
	}
	b, err := d.readAll(ctx, objstore.ProvisionKey, 4096)
	switch {
	case errorCode(err) == "NoSuchBucket":
		return "the bucket was gone already", nil
	case errors.Is(err, errdefs.ErrNotFound):
		// No token: an earlier destroy removed it and then failed to
		// delete the bucket, or the bucket is not Berth's. Only an empty
		// bucket (nothing to lose) is deleted then.
		out, lerr := d.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &d.bucket, MaxKeys: aws.Int32(1)})
		if lerr != nil {
			return "", classify(lerr, "list bucket "+d.bucket)
		}
		if len(out.Contents) > 0 {
			return "", fmt.Errorf("bucket %s does not hold the token Berth left when it created it: %w", d.bucket, storage.ErrNotProvisioned)
		}
		return d.deleteBucket(ctx)
	case err != nil:
		return "", fmt.Errorf("read %s of bucket %s: %w", objstore.ProvisionKey, d.bucket, err)
	case string(b) != token:
		return "", fmt.Errorf("bucket %s does not hold the token Berth left when it created it: %w", d.bucket, storage.ErrNotProvisioned)
	}
	if err := d.removeUploads(ctx, objstore.UploadsPrefix, func(string) bool { return false }, 0); err != nil {
		return "", fmt.Errorf("empty bucket %s: %w", d.bucket, err)
	}
	var errs []error
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: aws.String("blobs/")})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return "", classify(err, "list the blobs of bucket "+d.bucket)
		}
		for _, o := range out.Contents {
			if objstore.BlobKeyShape.MatchString(aws.ToString(o.Key)) {
				errs = append(errs, d.deleteKey(ctx, aws.ToString(o.Key)))
			}
		}
	}
	if err := firstErrors(errs); err != nil {
		return "", fmt.Errorf("empty bucket %s: %w", d.bucket, err)
	}
	if err := d.deleteKey(ctx, objstore.ProvisionKey); err != nil {
		return "", err
	}
	return d.deleteBucket(ctx)
}

func (d *Driver) deleteBucket(ctx context.Context) (string, error) {
	_, err := d.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &d.bucket})
	switch {
	case err == nil, httpStatus(err) == http.StatusNotFound:
		return "bucket deleted", nil
	case errorCode(err) == "BucketNotEmpty":
		return "Berth's objects removed; the bucket is kept, since it holds objects Berth did not write", nil
	}
	return "", fmt.Errorf("delete bucket %s: %w", d.bucket, err)
}
