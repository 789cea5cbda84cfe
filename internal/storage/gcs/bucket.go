package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// The reference operator's storage condition types (StorageExists and
// StorageEncrypted are the reference's for GCS; the other two are its S3
// ones, for the same steps on a bucket Berth creates).
const (
	condExists        = "StorageExists"
	condPublicBlocked = "StoragePublicAccessBlocked"
	condEncrypted     = "StorageEncrypted"
	condCleanup       = "StorageIncompleteUploadCleanupEnabled"
)

// expireUploadsDays: the lifecycle rule of a bucket Berth creates deletes
// upload sessions' objects this long after they were written (a live
// session expires after a day untouched).
const expireUploadsDays = 7

// provision checks the bucket and creates it when it is absent, with
// uniform access, public access prevention, the cleanup rule and, when
// keyID names one, a default KMS key; each step is a condition, as the
// bucket reads back (a server that ignores a setting is not said to
// have it). A bucket that cannot be reached or belongs to someone else is
// an error: the storage is not put in effect.
func (d *Driver) provision(ctx context.Context, set Settings, project string, existing bool) error {
	_, err := d.bucket.Attrs(ctx)
	switch {
	case err == nil:
		conds := []storage.Condition{{Type: condExists, Status: "True", Reason: "GCS Bucket Exists", Message: "User supplied GCS bucket exists and is accessible"}}
		if d.kmsKey != "" {
			conds = append(conds, storage.Condition{Type: condEncrypted, Status: "True", Reason: "Encryption Successful",
				Message: "Every object is written with the KMS key " + d.kmsKey})
		}
		d.SetConditions(conds...)
		return nil
	case apiStatus(err) == http.StatusForbidden:
		return fmt.Errorf("gcs: Unable to Access Bucket: the bucket %s exists, but these credentials may not use it: %w", d.name, err)
	case !errors.Is(err, gstorage.ErrBucketNotExist):
		return classify(err, "get bucket "+d.name)
	case existing:
		return fmt.Errorf("gcs: bucket %s does not exist: %w", d.name, errdefs.ErrNotFound)
	}
	if project == "" {
		return fmt.Errorf("gcs: %w: bucket %s does not exist, and creating it needs a project: set spec.storage.gcs.projectID (or use a key file that names one)", errdefs.ErrInvalidArgument, d.name)
	}
	want := &gstorage.BucketAttrs{
		Location:                 set.Region,
		UniformBucketLevelAccess: gstorage.UniformBucketLevelAccess{Enabled: true},
		PublicAccessPrevention:   gstorage.PublicAccessPreventionEnforced,
		Lifecycle: gstorage.Lifecycle{Rules: []gstorage.LifecycleRule{{
			Action:    gstorage.LifecycleAction{Type: gstorage.DeleteAction},
			Condition: gstorage.LifecycleCondition{AgeInDays: expireUploadsDays, MatchesPrefix: []string{objstore.UploadsPrefix}},
		}}},
	}
	if d.kmsKey != "" {
		want.Encryption = &gstorage.BucketEncryption{DefaultKMSKeyName: d.kmsKey}
	}
	if err := d.bucket.Create(ctx, project, want); err != nil {
		if apiStatus(err) != http.StatusConflict {
			return fmt.Errorf("gcs: create bucket %s in project %s: %w", d.name, project, err)
		}
		// Another instance created it a moment ago, or the name is
		// someone else's.
		if _, aerr := d.bucket.Attrs(ctx); aerr != nil {
			return fmt.Errorf("gcs: create bucket %s: the name is taken (%v), and these credentials cannot use that bucket: %w", d.name, err, aerr)
		}
		d.SetConditions(storage.Condition{Type: condExists, Status: "True", Reason: "GCS Bucket Exists", Message: "User supplied GCS bucket exists and is accessible"})
		return nil
	}
	conds := []storage.Condition{{Type: condExists, Status: "True", Reason: "Creation Successful", Message: "GCS bucket was successfully created"}}
	// The token proves later that Berth made this bucket.
	token := objstore.NewToken()
	if err := d.putBytes(ctx, objstore.ProvisionKey, []byte(token)); err != nil {
		conds[0].Message += fmt.Sprintf("; but Berth could not leave its token in it (%v), so it will never remove it", err)
	} else {
		d.SetToken(token)
	}
	got, err := d.bucket.Attrs(ctx)
	if err != nil {
		return classify(err, "get bucket "+d.name)
	}
	conds = append(conds, readBack(condPublicBlocked, got.PublicAccessPrevention == gstorage.PublicAccessPreventionEnforced,
		"Public Access Prevention Enforced", "Public access to the GCS bucket and its objects is prevented, and access is uniform (IAM only)",
		"public access prevention"))
	conds = append(conds, readBack(condCleanup, hasUploadRule(got.Lifecycle),
		"Enable Cleanup Successful", fmt.Sprintf("Objects of upload sessions are deleted %d days after they were written", expireUploadsDays),
		"the lifecycle rule that deletes upload leftovers"))
	if d.kmsKey != "" {
		conds = append(conds, readBack(condEncrypted, got.Encryption != nil && got.Encryption.DefaultKMSKeyName == d.kmsKey,
			"Encryption Successful", "KMS encryption was successfully enabled on the GCS bucket",
			"the default KMS key (every object is written with it all the same)"))
	}
	d.SetConditions(conds...)
	return nil
}

// readBack is the condition of a setting asked for at creation: True
// when the bucket reads back with it.
func readBack(typ string, ok bool, reason, message, what string) storage.Condition {
	if ok {
		return storage.Condition{Type: typ, Status: "True", Reason: reason, Message: message}
	}
	return storage.Condition{Type: typ, Status: "False", Reason: "Not In Effect",
		Message: "The bucket was created with " + what + ", but it does not read back with it (the server does not support it)"}
}

func hasUploadRule(l gstorage.Lifecycle) bool {
	for _, r := range l.Rules {
		if r.Action.Type == gstorage.DeleteAction && r.Condition.AgeInDays == expireUploadsDays &&
			len(r.Condition.MatchesPrefix) == 1 && r.Condition.MatchesPrefix[0] == objstore.UploadsPrefix {
			return true
		}
	}
	return false
}

func apiStatus(err error) int {
	var apiErr *googleapi.Error
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return 0
}

func (d *Driver) putBytes(ctx context.Context, name string, b []byte) error {
	w := d.bucket.Object(name).NewWriter(ctx)
	w.ContentType = "application/octet-stream"
	w.KMSKeyName = d.kmsKey
	if _, err := w.Write(b); err != nil {
		_ = w.Close()
		return classify(err, "write "+name)
	}
	return classify(w.Close(), "write "+name)
}

func (d *Driver) readAll(ctx context.Context, name string, limit int64) ([]byte, error) {
	r, err := d.bucket.Object(name).NewReader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, limit))
}

// Destroy implements storage.Destroyer: if the bucket holds token, Berth's
// objects in it go, then the bucket, unless it holds other objects.
func (d *Driver) Destroy(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("bucket %s: Berth recorded no token for it: %w", d.name, storage.ErrNotProvisioned)
	}
	b, err := d.readAll(ctx, objstore.ProvisionKey, 4096)
	switch {
	case errors.Is(err, gstorage.ErrBucketNotExist):
		return "the bucket was gone already", nil
	case errors.Is(err, gstorage.ErrObjectNotExist):
		// No token: an earlier destroy removed it and then failed to
		// delete the bucket, or the bucket is not Berth's. Only an empty
		// bucket (nothing to lose) is deleted then.
		_, lerr := d.bucket.Objects(ctx, nil).Next()
		switch {
		case lerr == nil:
			return "", fmt.Errorf("bucket %s does not hold the token Berth left when it created it: %w", d.name, storage.ErrNotProvisioned)
		case errors.Is(lerr, gstorage.ErrBucketNotExist):
			return "the bucket was gone already", nil
		case lerr != iterator.Done:
			return "", classify(lerr, "list bucket "+d.name)
		}
		return d.deleteBucket(ctx)
	case err != nil:
		return "", classify(err, "read "+objstore.ProvisionKey+" of bucket "+d.name)
	case string(b) != token:
		return "", fmt.Errorf("bucket %s does not hold the token Berth left when it created it: %w", d.name, storage.ErrNotProvisioned)
	}
	if err := d.removeUploads(ctx, objstore.UploadsPrefix, func(string) bool { return false }, 0); err != nil {
		return "", fmt.Errorf("empty bucket %s: %w", d.name, err)
	}
	isBlob := func(attrs *gstorage.ObjectAttrs) bool { return objstore.BlobKeyShape.MatchString(attrs.Name) }
	if err := d.deleteListed(ctx, "blobs/", isBlob); err != nil {
		return "", fmt.Errorf("empty bucket %s: %w", d.name, err)
	}
	if err := d.bucket.Object(objstore.ProvisionKey).Delete(ctx); err != nil && !errors.Is(err, gstorage.ErrObjectNotExist) {
		return "", classify(err, "delete "+objstore.ProvisionKey)
	}
	return d.deleteBucket(ctx)
}

func (d *Driver) deleteBucket(ctx context.Context) (string, error) {
	err := d.bucket.Delete(ctx)
	switch status := apiStatus(err); {
	case err == nil, status == http.StatusNotFound, errors.Is(err, gstorage.ErrBucketNotExist):
		return "bucket deleted", nil
	case status == http.StatusConflict, status == http.StatusPreconditionFailed:
		// GCS answers 409 to a bucket that is not empty (its emulator,
		// 412).
		return "Berth's objects removed; the bucket is kept, since it holds objects Berth did not write", nil
	}
	return "", classify(err, "delete bucket "+d.name)
}
