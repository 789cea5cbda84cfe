package s3

import (
	"context"
	"time"
)

// SetCopyPartSize makes copies above size multipart copies of parts of
// size (S3's 5 GiB is too much for a test).
func (d *Driver) SetCopyPartSize(size int64) { d.copyPartSize = size }

// SetRecoverGrace makes Recover remove leftovers younger than it would.
func (d *Driver) SetRecoverGrace(g time.Duration) { d.recoverGrace = g }

// Put writes an object as someone else might have.
func (d *Driver) Put(ctx context.Context, key string, b []byte) error { return d.putBytes(ctx, key, b) }
