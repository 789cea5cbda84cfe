package gcs

import (
	"context"
	"fmt"
	"io"
	"time"

	gstorage "cloud.google.com/go/storage"
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
	if length < 0 {
		length = -1
	}
	rc, err := r.d.bucket.Object(key).NewRangeReader(ctx, offset, length)
	if err != nil {
		return nil, classify(err, "read "+key)
	}
	return rc, nil
}

func (r blobRanges) Size(ctx context.Context, key string) (int64, error) {
	attrs, err := r.d.bucket.Object(key).Attrs(ctx)
	if err != nil {
		return 0, classify(err, "get "+key)
	}
	return attrs.Size, nil
}

// Delete implements storage.Deleter: one request (GCS says when the
// object is missing).
func (d *Driver) Delete(ctx context.Context, dgst digest.Digest) error {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return err
	}
	return classify(d.bucket.Object(key).Delete(ctx), "delete blob "+dgst.String())
}

// RedirectURL implements storage.Redirector: a V4-signed GET of the blob,
// valid for a bounded time, signed with the service account's key. With
// no key to sign with, blobs are streamed.
func (d *Driver) RedirectURL(ctx context.Context, dgst digest.Digest) (string, error) {
	if d.signer == nil {
		return "", nil
	}
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return "", err
	}
	u, err := d.bucket.SignedURL(key, &gstorage.SignedURLOptions{
		GoogleAccessID: d.signer.accessID,
		PrivateKey:     d.signer.key,
		Method:         "GET",
		Expires:        time.Now().Add(redirectLifetime),
		Scheme:         gstorage.SigningSchemeV4,
		Insecure:       d.signer.insecure,
	})
	if err != nil {
		return "", fmt.Errorf("sign a URL of blob %s: %w", dgst, err)
	}
	return u, nil
}

// DescribeRedirects implements storage.RedirectDescriber: "" (no
// redirects) without a key to sign with.
func (d *Driver) DescribeRedirects() string {
	if d.signer == nil {
		return ""
	}
	return fmt.Sprintf("V4-signed URLs of bucket %s (signed by %s) valid for %v", d.name, d.signer.accessID, redirectLifetime)
}
