package swift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// Open implements storage.Provider: one ranged GET.
func (d *Driver) Open(ctx context.Context, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	return objstore.OpenRange(ctx, blobRanges{d}, dgst, offset, length)
}

// blobRanges reads the container's objects for objstore.OpenRange.
type blobRanges struct{ d *Driver }

func (r blobRanges) ReadRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)
	}
	opts := objects.DownloadOpts{}
	if offset > 0 || length > 0 {
		opts.Range = rng
	}
	res := objects.Download(ctx, r.d.client, r.d.containerName, key, opts)
	if res.Err != nil {
		return nil, classify(res.Err, "read "+key)
	}
	if opts.Range != "" && res.Header.Get("Content-Range") == "" {
		// A proxy on the way dropped the range: these are the blob's
		// first bytes, not the ones asked for.
		res.Body.Close()
		return nil, fmt.Errorf("swift read %s: %w: the answer to a ranged read is not a range", key, errdefs.ErrUnavailable)
	}
	return res.Body, nil
}

func (r blobRanges) Size(ctx context.Context, key string) (int64, error) { return r.d.size(ctx, key) }

// Delete implements storage.Deleter: the blob, and the segments of one
// that is a manifest.
func (d *Driver) Delete(ctx context.Context, dgst digest.Digest) error {
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return err
	}
	hdr, err := objects.Get(ctx, d.client, d.containerName, key, nil).Extract()
	if err != nil {
		return classify(err, "get blob "+dgst.String())
	}
	if !hdr.StaticLargeObject {
		return classify(deleteObject(ctx, d, key, objects.DeleteOpts{}), "delete blob "+dgst.String())
	}
	// A manifest goes with its segments: Swift answers 200 with a report
	// (which gophercloud does not expect) listing what it could not delete.
	err = deleteObject(ctx, d, key, objects.DeleteOpts{MultipartManifest: "delete"})
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &unexpected) && unexpected.Actual == http.StatusOK {
		var report struct {
			Status string     `json:"Response Status"`
			Errors [][]string `json:"Errors"`
		}
		if jerr := json.Unmarshal(unexpected.Body, &report); jerr == nil && strings.HasPrefix(report.Status, "200") && len(report.Errors) == 0 {
			return nil
		}
		return fmt.Errorf("swift delete blob %s and its segments: Swift reported %d errors", dgst, len(report.Errors))
	}
	return classify(err, "delete blob "+dgst.String())
}

// RedirectURL implements storage.Redirector: a temp URL (HMAC-SHA256 with
// the container's key) valid for a bounded time; none without a key.
func (d *Driver) RedirectURL(ctx context.Context, dgst digest.Digest) (string, error) {
	tempURLKey := d.currentTempURLKey()
	if tempURLKey == "" {
		return "", nil
	}
	key, err := objstore.BlobKey(dgst)
	if err != nil {
		return "", err
	}
	u, err := objects.CreateTempURL(ctx, d.client, d.containerName, key, objects.CreateTempURLOpts{
		Method: objects.GET, TTL: int(redirectLifetime.Seconds()), TempURLKey: tempURLKey, Digest: "sha256",
	})
	if err != nil {
		return "", fmt.Errorf("sign a temp URL of blob %s: %w", dgst, err)
	}
	return u, nil
}

// DescribeRedirects implements storage.RedirectDescriber.
func (d *Driver) DescribeRedirects() string {
	if d.currentTempURLKey() == "" {
		return ""
	}
	return fmt.Sprintf("temp URLs of container %s valid for %v", d.containerName, redirectLifetime)
}

// deleteObject deletes object name.
func deleteObject(ctx context.Context, d *Driver, name string, opts objects.DeleteOpts) error {
	_, err := objects.Delete(ctx, d.client, d.containerName, name, opts).Extract()
	return err
}
