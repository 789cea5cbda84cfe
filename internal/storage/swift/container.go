package swift

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/containers"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/objstore"
)

const condExists = "StorageExists"

// provision checks the container and creates it when it is absent, with
// Berth's token and a temp URL key; a container without a key gets one,
// so that blob GETs can redirect (one Berth may not set leaves them
// streamed, and status says so).
func (d *Driver) provision(ctx context.Context, existing bool) error {
	hdr, err := containers.Get(ctx, d.client, d.containerName, nil).Extract()
	switch status := responseStatus(err); {
	case err == nil:
		cond := storage.Condition{Type: condExists, Status: "True", Reason: "Swift container Exists", Message: "User supplied container already exists"}
		d.setTempURLKey(hdr.TempURLKey)
		if hdr.TempURLKey == "" {
			if err := d.ensureTempURLKey(ctx); err != nil {
				cond.Message += fmt.Sprintf("; it has no temp URL key and Berth may not set one (%v): blobs are streamed, not redirected", err)
			}
		}
		d.SetConditions(cond)
		return nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("swift: Could not connect to registry storage: container %s refuses these credentials: %w", d.containerName, err)
	case status != http.StatusNotFound:
		return classify(err, "get container "+d.containerName)
	case existing:
		return fmt.Errorf("swift: container %s does not exist: %w", d.containerName, errdefs.ErrNotFound)
	}
	if _, err := containers.Create(ctx, d.client, d.containerName, nil).Extract(); err != nil {
		return fmt.Errorf("swift: Creation Failed: container %s: %w", d.containerName, classify(err, "create container"))
	}
	if err := d.ensureTempURLKey(ctx); err != nil {
		return err
	}
	cond := storage.Condition{Type: condExists, Status: "True", Reason: "Swift Container Created", Message: "The container was created by Berth"}
	token := objstore.NewToken()
	onlyNew := objects.CreateOpts{Content: strings.NewReader(token), ContentType: "application/octet-stream", IfNoneMatch: "*"}
	if _, err := objects.Create(ctx, d.client, d.containerName, objstore.ProvisionKey, onlyNew).Extract(); err != nil {
		cond.Message += fmt.Sprintf("; but Berth could not leave its token in it (%v), so it will never remove it", err)
	} else if held, err := d.readToken(ctx); err == nil && held == token {
		// Read back: of two instances creating the container at once,
		// only the one whose token it holds records one.
		d.SetToken(token)
	}
	d.SetConditions(cond)
	return nil
}

// ensureTempURLKey gives the container a temp URL key when it has none,
// and takes the one Swift then holds (an instance doing the same at the
// same moment may have won; Health takes it again later).
func (d *Driver) ensureTempURLKey(ctx context.Context) error {
	if _, err := containers.Update(ctx, d.client, d.containerName, containers.UpdateOpts{TempURLKey: randomKey()}).Extract(); err != nil {
		return classify(err, "set the temp URL key of container "+d.containerName)
	}
	hdr, err := containers.Get(ctx, d.client, d.containerName, nil).Extract()
	if err != nil {
		return classify(err, "get container "+d.containerName)
	}
	d.setTempURLKey(hdr.TempURLKey)
	return nil
}

// readToken is the token the container holds.
func (d *Driver) readToken(ctx context.Context) (string, error) {
	res := objects.Download(ctx, d.client, d.containerName, objstore.ProvisionKey, nil)
	if res.Err != nil {
		return "", res.Err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4096))
	return string(b), err
}

// Destroy implements storage.Destroyer: if the container holds token,
// Berth's objects in it go, then the container, unless it holds others.
func (d *Driver) Destroy(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("container %s: Berth recorded no token for it: %w", d.containerName, storage.ErrNotProvisioned)
	}
	held, err := d.readToken(ctx)
	switch {
	case errors.Is(classify(err, ""), errdefs.ErrNotFound):
		if _, cerr := containers.Get(ctx, d.client, d.containerName, nil).Extract(); responseStatus(cerr) == http.StatusNotFound {
			return "the container was gone already", nil
		}
		// No token: only an empty container (nothing to lose) is deleted.
		return d.deleteContainer(ctx, "")
	case err != nil:
		return "", classify(err, "read "+objstore.ProvisionKey+" of container "+d.containerName)
	case held != token:
		return "", fmt.Errorf("container %s does not hold the token Berth left when it created it: %w", d.containerName, storage.ErrNotProvisioned)
	}
	if err := d.removeUploads(ctx, objstore.UploadsPrefix, func(string) bool { return false }, 0); err != nil {
		return "", fmt.Errorf("empty container %s: %w", d.containerName, err)
	}
	for _, prefix := range []string{"blobs/", "segments/"} {
		if err := d.deleteListed(ctx, prefix, func(o objects.Object) bool { return berths(o.Name) }); err != nil {
			return "", fmt.Errorf("empty container %s: %w", d.containerName, err)
		}
	}
	if err := deleteObject(ctx, d, objstore.ProvisionKey, objects.DeleteOpts{}); err != nil && !errors.Is(classify(err, ""), errdefs.ErrNotFound) {
		return "", classify(err, "delete "+objstore.ProvisionKey)
	}
	return d.deleteContainer(ctx, "Berth's objects removed; ")
}

// berths tells whether name is a blob's, or a segment of a large blob's
// (segments/<alg>/<hex>/<upload>/<n>).
func berths(name string) bool {
	if objstore.BlobKeyShape.MatchString(name) {
		return true
	}
	return largeSegment.MatchString(name)
}

var largeSegment = regexp.MustCompile(`^segments/[a-z0-9]+/[0-9a-f]+/[a-z0-9]{1,128}/[0-9]{1,7}$`)

func (d *Driver) deleteContainer(ctx context.Context, done string) (string, error) {
	err := containerDeleteErr(containers.Delete(ctx, d.client, d.containerName).Extract())
	switch status := responseStatus(err); {
	case err == nil, status == http.StatusNotFound:
		return "container deleted", nil
	case status == http.StatusConflict && done == "":
		return "", fmt.Errorf("container %s does not hold the token Berth left when it created it: %w", d.containerName, storage.ErrNotProvisioned)
	case status == http.StatusConflict:
		return done + "the container is kept, since it holds objects Berth did not write", nil
	}
	return "", classify(err, "delete container "+d.containerName)
}

func containerDeleteErr(_ *containers.DeleteHeader, err error) error { return err }
