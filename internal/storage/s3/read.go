package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Open implements storage.Provider: one ranged GET.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	key, err := blobKey(dgst)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("open blob %s at %d: %w", dgst, offset, errdefs.ErrInvalidArgument)
	}
	if length == 0 {
		// Nothing to read, but a missing blob or an offset past its end
		// is still an error.
		return d.emptyAt(ctx, key, dgst, offset)
	}
	rc, err := d.getRange(ctx, key, offset, length)
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		// S3 refuses a range that starts at the end; the contract serves
		// it empty.
		return d.emptyAt(ctx, key, dgst, offset)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", dgst, err)
	}
	return rc, nil
}

// emptyAt is an empty read at offset of key, if key has offset bytes.
func (d *Driver) emptyAt(ctx context.Context, key string, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	out, err := d.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &d.bucket, Key: &key})
	if err != nil {
		return nil, classify(err, "head blob "+dgst.String())
	}
	if size := aws.ToInt64(out.ContentLength); offset > size {
		return nil, fmt.Errorf("open blob %s at %d: %w: it has %d bytes", dgst, offset, errdefs.ErrInvalidArgument, size)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
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
	key, err := blobKey(dgst)
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
	key, err := blobKey(dgst)
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
// upload sessions that no longer exist (a crash, an abort that failed)
// go. It lists the upload keys once, at start.
func (d *Driver) Recover(ctx context.Context, live func(id string) bool) error {
	return d.removeUploads(ctx, uploadsPrefix, live)
}

// removeUploads aborts the multipart uploads and deletes the objects
// under prefix whose session is not live (a key of no session counts as
// not live).
func (d *Driver) removeUploads(ctx context.Context, prefix string, live func(id string) bool) error {
	sessionOf := func(key string) string {
		if !strings.HasPrefix(key, uploadsPrefix) {
			return ""
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(key, uploadsPrefix), ".")
		return id
	}
	var errs []error
	mp := &s3.ListMultipartUploadsInput{Bucket: &d.bucket, Prefix: &prefix}
	for {
		out, err := d.client.ListMultipartUploads(ctx, mp)
		if err != nil {
			return classify(err, "list the multipart uploads under "+prefix)
		}
		for _, u := range out.Uploads {
			if !live(sessionOf(aws.ToString(u.Key))) {
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
			if !live(sessionOf(aws.ToString(o.Key))) {
				errs = append(errs, d.deleteKey(ctx, aws.ToString(o.Key)))
			}
		}
	}
	return errors.Join(errs...)
}
