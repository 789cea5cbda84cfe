package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

// The reference operator's storage condition types.
const (
	condExists        = "StorageExists"
	condPublicBlocked = "StoragePublicAccessBlocked"
)

// provision checks the container and creates it when it is absent
// (private: no public access), leaving Berth's token in it. The
// reference's conditions say what it found. A container that cannot be
// reached is an error: the storage is not put in effect.
func (d *Driver) provision(ctx context.Context, existing bool) error {
	props, err := d.container.GetProperties(ctx, nil)
	switch {
	case err == nil:
		d.found(props.BlobPublicAccess != nil)
		return nil
	case responseStatus(err) == http.StatusForbidden:
		return fmt.Errorf("azure: Unable to Access Container: the account %s refuses these credentials for container %s: %w", d.account, d.containerName, err)
	case !bloberror.HasCode(err, bloberror.ContainerNotFound):
		return classify(err, "get container "+d.containerName)
	case existing:
		return fmt.Errorf("azure: container %s does not exist: %w", d.containerName, errdefs.ErrNotFound)
	}
	if _, err := d.container.Create(ctx, nil); err != nil {
		if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			// Another instance created it a moment ago: it is found, and
			// the token is that instance's to leave.
			props, gerr := d.container.GetProperties(ctx, nil)
			if gerr != nil {
				return classify(gerr, "get container "+d.containerName)
			}
			d.found(props.BlobPublicAccess != nil)
			return nil
		}
		return fmt.Errorf("azure: create container %s: %w", d.containerName, err)
	}
	conds := []storage.Condition{{Type: condExists, Status: "True", Reason: "ContainerExists", Message: "Storage container exists (created by Berth)"}}
	token := objstore.NewToken()
	onlyNew := &blockblob.UploadOptions{AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}}}
	if _, err := d.container.NewBlockBlobClient(objstore.ProvisionKey).Upload(ctx, nopSeekCloser{strings.NewReader(token)}, onlyNew); err != nil {
		conds[0].Message += fmt.Sprintf("; but Berth could not leave its token in it (%v), so it will never remove it", err)
	} else {
		d.SetToken(token)
	}
	props, err = d.container.GetProperties(ctx, nil)
	if err != nil {
		return classify(err, "get container "+d.containerName)
	}
	d.SetConditions(append(conds, publicAccess(props.BlobPublicAccess != nil, "created"))...)
	return nil
}

// found reports a container that was there.
func (d *Driver) found(public bool) {
	d.SetConditions(storage.Condition{Type: condExists, Status: "True", Reason: "ContainerExists", Message: "Storage container exists"},
		publicAccess(public, ""))
}

// publicAccess is StoragePublicAccessBlocked of a container whose blobs
// are public or not.
func publicAccess(public bool, how string) storage.Condition {
	if public {
		return storage.Condition{Type: condPublicBlocked, Status: "False", Reason: "PublicAccessAllowed",
			Message: "The container allows anonymous reads of its blobs: set its access level to private"}
	}
	msg := "The container allows no anonymous access"
	if how != "" {
		msg = "The container was " + how + " private: it allows no anonymous access"
	}
	return storage.Condition{Type: condPublicBlocked, Status: "True", Reason: "Public Access Block Successful", Message: msg}
}

func responseStatus(err error) int {
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return respErr.StatusCode
	}
	return 0
}

// Destroy implements storage.Destroyer: if the container holds token,
// Berth's blobs in it go, then the container, unless it holds other
// blobs.
func (d *Driver) Destroy(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("container %s: Berth recorded no token for it: %w", d.containerName, storage.ErrNotProvisioned)
	}
	resp, err := d.container.NewBlobClient(objstore.ProvisionKey).DownloadStream(ctx, nil)
	var held []byte
	if err == nil {
		held, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return "the container was gone already", nil
	case errors.Is(classify(err, ""), errdefs.ErrNotFound):
		empty, lerr := d.isEmpty(ctx)
		switch {
		case bloberror.HasCode(lerr, bloberror.ContainerNotFound):
			return "the container was gone already", nil
		case lerr != nil:
			return "", classify(lerr, "list container "+d.containerName)
		case !empty:
			return "", fmt.Errorf("container %s does not hold the token Berth left when it created it: %w", d.containerName, storage.ErrNotProvisioned)
		}
		return d.deleteContainer(ctx)
	case err != nil:
		return "", classify(err, "read "+objstore.ProvisionKey+" of container "+d.containerName)
	case string(held) != token:
		return "", fmt.Errorf("container %s does not hold the token Berth left when it created it: %w", d.containerName, storage.ErrNotProvisioned)
	}
	if err := d.removeUploads(ctx, objstore.UploadsPrefix, func(string) bool { return false }, 0); err != nil {
		return "", fmt.Errorf("empty container %s: %w", d.containerName, err)
	}
	if err := d.deleteListed(ctx, "blobs/", func(name string, _ time.Time) bool { return objstore.BlobKeyShape.MatchString(name) }); err != nil {
		return "", fmt.Errorf("empty container %s: %w", d.containerName, err)
	}
	if _, err := d.container.NewBlobClient(objstore.ProvisionKey).Delete(ctx, nil); err != nil && !errors.Is(classify(err, ""), errdefs.ErrNotFound) {
		return "", classify(err, "delete "+objstore.ProvisionKey)
	}
	if empty, err := d.isEmpty(ctx); err != nil {
		return "", classify(err, "list container "+d.containerName)
	} else if !empty {
		return "Berth's blobs removed; the container is kept, since it holds blobs Berth did not write", nil
	}
	return d.deleteContainer(ctx)
}

// isEmpty tells whether the container holds no blob.
func (d *Driver) isEmpty(ctx context.Context) (bool, error) {
	one := int32(1)
	page, err := d.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: &one}).NextPage(ctx)
	if err != nil {
		return false, err
	}
	return len(page.Segment.BlobItems) == 0, nil
}

func (d *Driver) deleteContainer(ctx context.Context) (string, error) {
	_, err := d.container.Delete(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return "container deleted", nil
	}
	return "", classify(err, "delete container "+d.containerName)
}
