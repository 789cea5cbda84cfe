package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Open implements storage.Provider: one ranged GET.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return objstore.OpenRange(ctx, blobRanges{d}, dgst, offset, length)
}

// blobRanges reads the bucket's objects for objstore.OpenRange.
type blobRanges struct{ d *Driver }

func (r blobRanges) ReadRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return r.d.getRange(ctx, key, offset, length)
}

func (r blobRanges) Size(ctx context.Context, key string) (int64, error) {
	out, err := r.d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &r.d.bucket, Key: &key})
	if err != nil {
		return 0, classify(err, "head "+key)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// getRange reads length bytes of key from offset (to its end when
// length < 0).
func (d *Driver) getRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	in := &s3.GetObjectInput{Bucket: &d.bucket, Key: &key}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := d.client.GetObject(ctx, in)
	if err != nil {
		return nil, classify(err, "get "+key)
	}
	return out.Body, nil
}

// Delete implements storage.Deleter.
func (d *Driver) Delete(ctx context.Context, dgst digest.Digest) error {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return err
	}
	if _, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key}); err != nil {
		return classify(err, "head blob "+dgst.String())
	}
	_, err = d.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &d.bucket, Key: &key})
	return classify(err, "delete blob "+dgst.String())
}

// RedirectURL implements storage.Redirector: a GET of the blob presigned
// for a bounded time, or a signed URL of the CloudFront distribution in
// front of the bucket.
func (d *Driver) RedirectURL(ctx context.Context, dgst digest.Digest) (string, error) {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return "", err
	}
	if d.front != nil {
		return d.front.url(key, time.Now())
	}
	req, err := d.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &key}, s3.WithPresignExpires(redirectLifetime))
	if err != nil {
		return "", fmt.Errorf("presign blob %s: %w", dgst, err)
	}
	return req.URL, nil
}

// Recover implements storage.Recoverer: multipart uploads and objects of
// upload sessions that no longer exist (a crash, an abort that failed, an
// append never recorded) go. It lists the upload keys once, at start, and
// leaves alone any key not of Berth's shape and anything younger than
// recoverGrace (what another registry on the same bucket may be writing).
func (d *Driver) Recover(ctx context.Context, live func(id string) bool) error {
	return d.removeUploads(ctx, objstore.UploadsPrefix, live, d.recoverGrace)
}

// recoverGrace is how old a leftover must be for Recover to remove it:
// longer than an upload session lives untouched (24 hours), since a
// multipart upload's age counts from its start, not its last part.
const recoverGrace = 25 * time.Hour

// uploadKey matches the keys of upload sessions, and names the session.
var uploadKey = regexp.MustCompile(`^upload-([a-z0-9]{1,128})\.(data|sealed|tail-[0-9]{1,5})$`)

// removeUploads aborts the multipart uploads and deletes the objects
// under prefix that are of an upload session which is not live and are
// older than grace. Keys not of a session's shape are never touched.
func (d *Driver) removeUploads(ctx context.Context, prefix string, live func(id string) bool, grace time.Duration) error {
	cutoff := time.Now().Add(-grace)
	dead := func(key string, at *time.Time) bool {
		m := uploadKey.FindStringSubmatch(key)
		if m == nil || live(m[1]) {
			return false
		}
		return grace == 0 || (at != nil && at.Before(cutoff))
	}
	var errs []error
	mp := &s3.ListMultipartUploadsInput{Bucket: &d.bucket, Prefix: &prefix}
	for {
		out, err := d.client.ListMultipartUploads(ctx, mp)
		if err != nil {
			return classify(err, "list the multipart uploads under "+prefix)
		}
		for _, u := range out.Uploads {
			if dead(aws.ToString(u.Key), u.Initiated) {
				errs = append(errs, d.abortMultipart(ctx, aws.ToString(u.Key), u.UploadId))
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		mp.KeyMarker, mp.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	pages := s3.NewListObjectsV2Paginator(d.client, &s3.ListObjectsV2Input{Bucket: &d.bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return classify(err, "list the objects under "+prefix)
		}
		for _, o := range out.Contents {
			if dead(aws.ToString(o.Key), o.LastModified) {
				errs = append(errs, d.deleteKey(ctx, aws.ToString(o.Key)))
			}
		}
	}
	return firstErrors(errs)
}

// firstErrors joins the first few of errs, and counts the rest: a
// message that goes into status stays short.
func firstErrors(errs []error) error {
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 3 {
		return fmt.Errorf("%w (and %d more errors)", errors.Join(failed[:3]...), len(failed)-3)
	}
	return errors.Join(failed...)
}

// DescribeRedirects implements storage.RedirectDescriber.
func (d *Driver) DescribeRedirects() string {
	if d.front != nil {
		return fmt.Sprintf("CloudFront %s, signed URLs valid for %v", d.front.baseURL, d.front.duration)
	}
	return fmt.Sprintf("presigned URLs of bucket %s valid for %v", d.bucket, redirectLifetime)
}
