package memory_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/storage/storagetest"
)

func TestSuite(t *testing.T) {
	storagetest.Run(t, func(*testing.T) storage.Driver { return memory.NewDriver() })
}
