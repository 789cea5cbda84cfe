package azure

import (
	"context"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// SetRecoverGrace makes Recover remove leftovers younger than it would.
func (d *Driver) SetRecoverGrace(g time.Duration) { d.recoverGrace = g }

// SetCopyRangeSize makes a commit copy blocks of size.
func (d *Driver) SetCopyRangeSize(size int64) { d.copyRangeSize = size }

// Put writes a blob as someone else might have.
func (d *Driver) Put(ctx context.Context, name string, b []byte) error {
	_, err := d.container.NewBlockBlobClient(name).Upload(ctx, nopSeekCloser{strings.NewReader(string(b))}, nil)
	return err
}

// Names lists the blobs whose names start with prefix.
func (d *Driver) Names(ctx context.Context, prefix string) ([]string, error) {
	pager := d.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	var names []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, item := range page.Segment.BlobItems {
			names = append(names, *item.Name)
		}
	}
	return names, nil
}
