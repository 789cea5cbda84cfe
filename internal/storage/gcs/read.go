package gcs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	gstorage "cloud.google.com/go/storage"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Open implements storage.Provider: one ranged GET.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	key, err := objstore.BlobKey(dgst)
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
	if length < 0 {
		length = -1
	}
	r, err := d.bucket.Object(key).NewRangeReader(ctx, offset, length)
	if err != nil {
		err = classify(err, "read blob "+dgst.String())
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			// GCS refuses a range that starts at the end; the contract
			// serves it empty.
			return d.emptyAt(ctx, key, dgst, offset)
		}
		return nil, err
	}
	return r, nil
}

// emptyAt is an empty read at offset of key, if key has offset bytes.
func (d *Driver) emptyAt(ctx context.Context, key string, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	attrs, err := d.bucket.Object(key).Attrs(ctx)
	if err != nil {
		return nil, classify(err, "get blob "+dgst.String())
	}
	if offset > attrs.Size {
		return nil, fmt.Errorf("open blob %s at %d: %w: it has %d bytes", dgst, offset, errdefs.ErrInvalidArgument, attrs.Size)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
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
