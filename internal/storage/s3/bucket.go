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

	"github.com/berth-registry/berth/internal/storage"
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

// provision checks the bucket and creates it when it is absent, with
// public access blocked, the cleanup rules and, when asked, default
// encryption. Each step is a condition. A bucket that cannot be reached
// or belongs to someone else is an error: the storage is not put in
// effect.
func (d *Driver) provision(ctx context.Context, set Settings) error {
	_, err := d.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &d.bucket})
	switch status := httpStatus(err); {
	case err == nil:
		d.setConditions(storage.Condition{Type: condExists, Status: "True", Reason: "S3 Bucket Exists", Message: "User supplied S3 bucket exists and is accessible"})
		return nil
	case status == http.StatusForbidden:
		return fmt.Errorf("s3: Unable to Access Bucket: the bucket %s exists, but is owned by another account or these credentials may not use it: %w", d.bucket, err)
	case status != http.StatusNotFound:
		return classify(err, "head bucket "+d.bucket)
	}
	in := &s3.CreateBucketInput{Bucket: &d.bucket}
	if set.Region != "" && set.Region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(set.Region)}
	}
	if _, err := d.client.CreateBucket(ctx, in); err != nil && errorCode(err) != "BucketAlreadyOwnedByYou" {
		return fmt.Errorf("s3: create bucket %s: %w", d.bucket, err)
	}
	conds := []storage.Condition{{Type: condExists, Status: "True", Reason: "Creation Successful", Message: "S3 bucket was successfully created"}}
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
				Filter:     &types.LifecycleRuleFilter{Prefix: aws.String(uploadsPrefix)},
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
	d.setConditions(conds...)
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

func (d *Driver) setConditions(c ...storage.Condition) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conditions = c
}

// Conditions implements storage.Reporter.
func (d *Driver) Conditions() []storage.Condition {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]storage.Condition(nil), d.conditions...)
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

// Destroy implements storage.Destroyer: every object and multipart upload
// in the bucket goes, then the bucket (a registry Removed whose storage
// is Managed).
func (d *Driver) Destroy(ctx context.Context) error {
	if err := d.removeUploads(ctx, "", func(string) bool { return false }); err != nil {
		return fmt.Errorf("empty bucket %s: %w", d.bucket, err)
	}
	if _, err := d.client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &d.bucket}); err != nil && httpStatus(err) != http.StatusNotFound {
		return fmt.Errorf("delete bucket %s: %w", d.bucket, err)
	}
	return nil
}
