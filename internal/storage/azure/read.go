package azure

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Open implements storage.Provider: one ranged GET.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return objstore.OpenRange(ctx, blobRanges{d}, dgst, offset, length)
}

// blobRanges reads the container's blobs for objstore.OpenRange.
type blobRanges struct{ d *Driver }

func (r blobRanges) ReadRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rng := blob.HTTPRange{Offset: offset}
	if length > 0 {
		rng.Count = length
	}
	resp, err := r.d.container.NewBlobClient(key).DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng})
	if err != nil {
		return nil, classify(err, "read "+key)
	}
	return resp.Body, nil
}

func (r blobRanges) Size(ctx context.Context, key string) (int64, error) {
	props, err := r.d.container.NewBlobClient(key).GetProperties(ctx, nil)
	if err != nil {
		return 0, classify(err, "get "+key)
	}
	if props.ContentLength == nil {
		return 0, fmt.Errorf("azure get %s: no length", key)
	}
	return *props.ContentLength, nil
}

// Delete implements storage.Deleter: one request.
func (d *Driver) Delete(ctx context.Context, dgst digest.Digest) error {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return err
	}
	_, err = d.container.NewBlobClient(key).Delete(ctx, nil)
	return classify(err, "delete blob "+dgst.String())
}

// RedirectURL implements storage.Redirector: the blob's URL with a
// read-only service SAS valid for a bounded time, signed with the
// account's key.
func (d *Driver) RedirectURL(ctx context.Context, dgst digest.Digest) (string, error) {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return "", err
	}
	u, err := d.container.NewBlobClient(key).GetSASURL(sas.BlobPermissions{Read: true}, time.Now().Add(redirectLifetime), nil)
	if err != nil {
		return "", fmt.Errorf("sign a URL of blob %s: %w", dgst, err)
	}
	return u, nil
}

// DescribeRedirects implements storage.RedirectDescriber.
func (d *Driver) DescribeRedirects() string {
	return fmt.Sprintf("SAS URLs of container %s (account %s) valid for %v", d.containerName, d.account, redirectLifetime)
}
