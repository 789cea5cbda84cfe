package swift

import (
	"bytes"
	"context"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
)

// SetRecoverGrace makes Recover remove leftovers younger than it would.
func (d *Driver) SetRecoverGrace(g time.Duration) { d.recoverGrace = g }

// SetFlatLimit makes blobs above limit stay manifests.
func (d *Driver) SetFlatLimit(limit int64) { d.flatLimit = limit }

// SetManifestSegments makes manifests list at most n segments.
func (d *Driver) SetManifestSegments(n int) { d.manifestSegments = n }

// Put writes an object as someone else might have.
func (d *Driver) Put(ctx context.Context, name string, b []byte) error {
	_, err := objects.Create(ctx, d.client, d.containerName, name, objects.CreateOpts{
		Content: bytes.NewReader(b), ContentType: "application/octet-stream",
	}).Extract()
	return err
}

// Names lists the objects whose names start with prefix.
func (d *Driver) Names(ctx context.Context, prefix string) ([]string, error) {
	pages, err := objects.List(d.client, d.containerName, objects.ListOpts{Prefix: prefix}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return objects.ExtractNames(pages)
}
