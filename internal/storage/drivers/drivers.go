// Package drivers is the table of blob drivers Berth is built with. A new
// backend is one more row here; nothing else names drivers.
package drivers

import (
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/azure"
	"github.com/berth-registry/berth/internal/storage/filesystem"
	"github.com/berth-registry/berth/internal/storage/gcs"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/storage/s3"
	"github.com/berth-registry/berth/internal/storage/swift"
)

// Builtin returns the drivers compiled into berth.
func Builtin() storage.Registry {
	return storage.Registry{
		"azure":      azure.New,
		"filesystem": filesystem.New,
		"gcs":        gcs.New,
		"memory":     memory.New,
		"s3":         s3.New,
		"swift":      swift.New,
	}
}
