package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-registry/berth/internal/atomicfile"
	"github.com/berth-registry/berth/internal/store"
)

// StoreIDFile, in the data directory, names the metadata store the
// directory belongs to: its CA, keys and blobs are that registry's, and a
// berth started on it with another store (another PostgreSQL database)
// would mix two registries.
const StoreIDFile = "store-id"

// checkStoreID records the store's ID in dir at the first start, and
// refuses a store that is not the one recorded.
func checkStoreID(ctx context.Context, meta *store.Store, dir string) error {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id, err := meta.InitSetting(ctx, "store-id", hex.EncodeToString(b))
	if err != nil {
		return fmt.Errorf("read the store's ID: %w", err)
	}
	path := filepath.Join(dir, StoreIDFile)
	was, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return atomicfile.Write(path, []byte(id+"\n"), privateFile, nil)
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	case strings.TrimSpace(string(was)) != id:
		return fmt.Errorf("data directory %s belongs to another metadata store (its %s says %s, this store is %s): give each registry a data directory of its own, or start with the store it was made with",
			dir, StoreIDFile, strings.TrimSpace(string(was)), id)
	}
	return nil
}
