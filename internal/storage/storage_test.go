package storage_test

import (
	"errors"
	"testing"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

type s3Like struct {
	Bucket       string `json:"bucket"`
	ChunkSizeMiB int    `json:"chunkSizeMiB"`
}

func TestDecodeSettings(t *testing.T) {
	got, err := storage.DecodeSettings[s3Like](storage.Options{Settings: []byte(`{"bucket":"b","chunkSizeMiB":16}`)})
	if err != nil || got != (s3Like{Bucket: "b", ChunkSizeMiB: 16}) {
		t.Errorf("decode: %+v, %v", got, err)
	}
	if _, err := storage.DecodeSettings[s3Like](storage.Options{Settings: []byte(`{"bucket":"b","chunksizemib":16,"unknown":1}`)}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("an unknown field: %v, want ErrInvalidArgument", err)
	}
	if got, err := storage.DecodeSettings[s3Like](storage.Options{}); err != nil || got != (s3Like{}) {
		t.Errorf("no settings: %+v, %v", got, err)
	}
}
