package gcs

import (
	"context"
	"errors"
	"time"

	gstorage "cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

// SetRecoverGrace makes Recover remove leftovers younger than it would.
func (d *Driver) SetRecoverGrace(g time.Duration) { d.recoverGrace = g }

// Put writes an object as someone else might have.
func (d *Driver) Put(ctx context.Context, name string, b []byte) error {
	return d.putBytes(ctx, name, b)
}

// Exists tells whether object name exists.
func (d *Driver) Exists(ctx context.Context, name string) (bool, error) {
	_, err := d.bucket.Object(name).Attrs(ctx)
	if errors.Is(err, gstorage.ErrObjectNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Names lists the objects whose names start with prefix.
func (d *Driver) Names(ctx context.Context, prefix string) ([]string, error) {
	it := d.bucket.Objects(ctx, &gstorage.Query{Prefix: prefix})
	var names []string
	for {
		attrs, err := it.Next()
		if err == iterator.Done {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names = append(names, attrs.Name)
	}
}

// MaxSources is how many objects one compose joins.
const MaxSources = maxSources
