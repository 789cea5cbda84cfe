package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-registry/berth/internal/atomicfile"
	"github.com/berth-registry/berth/internal/store"
)

// SecretKeyFile, in the data directory, holds the key that encrypts
// Secrets at rest when no --secret-encryption-key-file is given: created
// on first start, read after.
const SecretKeyFile = "secret-encryption.key"

// secretKeys are the keys of the store's Secrets: the first encrypts,
// every one decrypts.
type secretKeys struct {
	keys [][]byte
	// files are where they came from, for messages.
	files []string
	// create writes a key made at this start to SecretKeyFile; nil when
	// every key was read.
	create func() error
}

// loadSecretKeys reads the key files given, or else the data directory's
// own, which it makes (in memory: see secretKeys.create) when there is
// none yet.
func loadSecretKeys(dataDir string, files []string, given []byte) (secretKeys, error) {
	if len(given) > 0 {
		// From the environment ($BERTH_SECRET_ENCRYPTION_KEY), where a
		// file of the right owner and mode is hard to come by (a
		// Kubernetes Secret's volume is root's).
		if len(given) != store.SecretKeySize {
			return secretKeys{}, fmt.Errorf("the secret encryption key given in the environment holds %d bytes, not %d", len(given), store.SecretKeySize)
		}
		return secretKeys{keys: [][]byte{given}, files: []string{"$BERTH_SECRET_ENCRYPTION_KEY"}}, nil
	}
	if len(files) > 0 {
		out := secretKeys{files: files}
		for _, f := range files {
			key, err := readSecretKeyFile(f, os.Geteuid())
			if err != nil {
				return secretKeys{}, err
			}
			out.keys = append(out.keys, key)
		}
		return out, nil
	}
	path := filepath.Join(dataDir, SecretKeyFile)
	key, err := readSecretKeyFile(path, os.Geteuid())
	if err == nil {
		return secretKeys{keys: [][]byte{key}, files: []string{path}}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return secretKeys{}, err
	}
	key = make([]byte, store.SecretKeySize)
	if _, err := rand.Read(key); err != nil {
		return secretKeys{}, err
	}
	return secretKeys{keys: [][]byte{key}, files: []string{path}, create: func() error {
		if err := atomicfile.Write(path, key, privateFile, nil); err != nil {
			return fmt.Errorf("write the secret encryption key: %w", err)
		}
		return nil
	}}, nil
}

// readSecretKeyFile reads a key, from a regular file that the user berth
// runs as (uid) owns and nobody else may read or write: whoever reads the
// key reads every Secret, and whoever writes it decides which key new
// Secrets get.
func readSecretKeyFile(path string, uid int) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("secret encryption key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret encryption key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm != 0o600 && perm != 0o400 {
		return nil, fmt.Errorf("secret encryption key file %s has mode %04o; it must be 0600 or 0400, readable by nobody else (chmod 600 %s)", path, perm, path)
	}
	if owner, ok := fileOwner(st); ok && owner != uid {
		return nil, fmt.Errorf("secret encryption key file %s is owned by uid %d, not by the user berth runs as (uid %d)", path, owner, uid)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret encryption key: %w", err)
	}
	if len(key) != store.SecretKeySize {
		return nil, fmt.Errorf("secret encryption key file %s holds %d bytes, not %d (make one with: head -c %d /dev/urandom > FILE)",
			path, len(key), store.SecretKeySize, store.SecretKeySize)
	}
	return key, nil
}

// encryptSecrets checks the keys against the Secrets the store holds,
// writes a key made at this start, and encrypts what is stored in plain
// text (written before encryption, or by an older Berth) or under a key
// that is no longer first. A key made at this start when the store holds
// Secrets encrypted with another is refused: the data directory's key
// file was lost, and a new one would read none of them.
func encryptSecrets(ctx context.Context, meta *store.Store, keys secretKeys, log *slog.Logger) error {
	counts, err := meta.CountStoredSecrets(ctx)
	if err != nil {
		return err
	}
	configured := make([]string, len(keys.keys))
	for i, k := range keys.keys {
		configured[i] = store.SecretKeyID(k)
	}
	var unknown []string
	unreadable := 0
	for id, n := range counts.ByKey {
		if !slices.Contains(configured, id) {
			unknown = append(unknown, id)
			unreadable += n
		}
	}
	slices.Sort(unknown)
	if keys.create != nil {
		if unreadable > 0 {
			return fmt.Errorf("%s does not exist, but %d stored copies of Secrets are encrypted (key %s): restore the key file that encrypted them, "+
				"or name it with --secret-encryption-key-file (a new key could read none of them)", keys.files[0], unreadable, strings.Join(unknown, ", "))
		}
		if err := keys.create(); err != nil {
			return err
		}
		log.Info("created the secret encryption key", "file", keys.files[0], "key", configured[0])
	}
	if unreadable > 0 {
		log.Error("stored Secrets are encrypted with a key that is not configured: reading them fails until that key is given again",
			"copies", unreadable, "their_keys", unknown, "configured", configured, "files", keys.files)
	}
	rewritten, err := meta.EncryptSecrets(ctx)
	if err != nil {
		return err
	}
	if rewritten > 0 {
		log.Info("encrypted stored Secrets (objects and their watch history) that were in plain text or under another key",
			"copies", rewritten, "key", configured[0])
	}
	return nil
}
