package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/errdefs"
)

// Secrets are encrypted at rest, as Kubernetes' aesgcm provider does: the
// whole stored JSON of a Secret, in the objects table and in the event
// history that replays watches, becomes
//
//	berth:enc:aesgcm:v1:<key id>:<12-byte nonce><ciphertext and GCM tag>
//
// with a random nonce per write (random 96-bit nonces are safe for 2^32
// writes under one key, far more than a registry's Secrets see) and the
// object's group/resource/namespace/name as additional data, so a value
// copied to another row does not decrypt. The columns beside the body
// (names, uid, labels, resourceVersion) stay in the clear, so lookups and
// selectors work as before. A value without the prefix is a Secret
// written before encryption was configured; it is read as it is, and
// EncryptSecrets rewrites it.

// SecretKeySize is the size of a secret encryption key (AES-256).
const SecretKeySize = 32

const (
	sealedPrefix = "berth:enc:"
	sealedScheme = sealedPrefix + "aesgcm:v1:"
	// keyIDLength is the length of a SecretKeyID.
	keyIDLength = 8
)

// SecretKeyID names a key in the values it encrypted. It is derived from
// the key, so a value encrypted with another key is recognised as such
// without trying to decrypt it, and the error can say which key it needs.
func SecretKeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("berth secret encryption key\x00"), key...))
	return hex.EncodeToString(sum[:keyIDLength/2])
}

// WithSecretKeys encrypts Secrets at rest with keys[0] (AES-256-GCM); every
// key decrypts, so that an old key can stay while EncryptSecrets moves the
// Secrets to a new one. Without it Secrets are stored as they come (and
// those stored encrypted cannot be read).
func WithSecretKeys(keys ...[]byte) Option {
	return func(o *options) { o.secretKeys = keys }
}

type secretKey struct {
	id   string
	aead cipher.AEAD
}

// secretKeys are the configured keys, the first encrypting.
type secretKeys []secretKey

func newSecretKeys(keys [][]byte) (secretKeys, error) {
	var out secretKeys
	for i, k := range keys {
		if len(k) != SecretKeySize {
			return nil, fmt.Errorf("secret encryption key %d holds %d bytes, not %d", i+1, len(k), SecretKeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		out = append(out, secretKey{id: SecretKeyID(k), aead: aead})
	}
	return out, nil
}

func (ks secretKeys) ids() []string {
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = k.id
	}
	return ids
}

func (ks secretKeys) byID(id string) (secretKey, bool) {
	for _, k := range ks {
		if k.id == id {
			return k, true
		}
	}
	return secretKey{}, false
}

// SecretKeyError is a Secret encrypted with a key that is not configured:
// the key file was replaced, or lost.
type SecretKeyError struct {
	Object ObjectKey
	// KeyID is the key that encrypted it, Configured the keys there are.
	KeyID      string
	Configured []string
}

func (e *SecretKeyError) Error() string {
	if len(e.Configured) == 0 {
		return fmt.Sprintf("%s is encrypted with key %s, but no secret encryption key is configured", e.Object, e.KeyID)
	}
	return fmt.Sprintf("%s is encrypted with key %s, which does not match the configured secret encryption key (%s): "+
		"restore the key file that encrypted it", e.Object, e.KeyID, strings.Join(e.Configured, ", "))
}

// isSecret is whether objects of k's kind are encrypted at rest.
func isSecret(k ObjectKey) bool { return k.Group == "" && k.Resource == "secrets" }

// secretsAPIResource is how events name Secrets.
const secretsAPIResource = "/secrets"

func sealContext(k ObjectKey) []byte {
	return []byte(k.APIResource() + "/" + k.Namespace + "/" + k.Name)
}

// sealBody is what the store writes for an object's body: a Secret's
// encrypted with the first key, when keys are configured.
func (s *Store) sealBody(k ObjectKey, body []byte) ([]byte, error) {
	if !isSecret(k) || len(s.secretKeys) == 0 {
		return body, nil
	}
	key := s.secretKeys[0]
	out := make([]byte, 0, len(sealedScheme)+keyIDLength+1+key.aead.NonceSize()+len(body)+key.aead.Overhead())
	out = append(append(append(out, sealedScheme...), key.id...), ':')
	nonce := make([]byte, key.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", k, err)
	}
	out = append(out, nonce...)
	return key.aead.Seal(out, nonce, body, sealContext(k)), nil
}

// sealedKeyID returns the key a stored value was encrypted with, and
// whether it is encrypted at all.
func sealedKeyID(stored []byte) (id string, sealed bool, err error) {
	if !bytes.HasPrefix(stored, []byte(sealedPrefix)) {
		return "", false, nil
	}
	rest, ok := bytes.CutPrefix(stored, []byte(sealedScheme))
	if !ok || len(rest) < keyIDLength+1 || rest[keyIDLength] != ':' {
		end := min(len(stored), len(sealedScheme)+keyIDLength+1)
		return "", true, fmt.Errorf("unknown encryption scheme %q", stored[:end])
	}
	return string(rest[:keyIDLength]), true, nil
}

// openBody is the inverse of sealBody. A value written without encryption
// is returned as it is.
func (s *Store) openBody(k ObjectKey, stored []byte) ([]byte, error) {
	if !isSecret(k) {
		return stored, nil
	}
	id, sealed, err := sealedKeyID(stored)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", k, err)
	}
	if !sealed {
		return stored, nil
	}
	key, ok := s.secretKeys.byID(id)
	if !ok {
		return nil, &SecretKeyError{Object: k, KeyID: id, Configured: s.secretKeys.ids()}
	}
	sealedBytes := stored[len(sealedScheme)+keyIDLength+1:]
	if len(sealedBytes) < key.aead.NonceSize() {
		return nil, fmt.Errorf("decrypt %s: the stored value is cut short", k)
	}
	nonce, ciphertext := sealedBytes[:key.aead.NonceSize()], sealedBytes[key.aead.NonceSize():]
	body, err := key.aead.Open(nil, nonce, ciphertext, sealContext(k))
	if err != nil {
		return nil, fmt.Errorf("decrypt %s with key %s: the stored value is damaged or was copied from another object: %w", k, id, err)
	}
	return body, nil
}

// openObjects decrypts the bodies of objects read as stored.
func (s *Store) openObjects(objs []Object) error {
	for i := range objs {
		body, err := s.openBody(objs[i].ObjectKey, objs[i].Body)
		if err != nil {
			return err
		}
		objs[i].Body = body
	}
	return nil
}

// secretIdentity is a Secret's body with only its identity, from the
// columns: what a deletion's event tells of a Secret that cannot be
// decrypted.
func secretIdentity(o Object) []byte {
	meta := map[string]any{"name": o.Name, "uid": o.UID, "creationTimestamp": o.Created.UTC().Format(time.RFC3339)}
	if o.Namespace != "" {
		meta["namespace"] = o.Namespace
	}
	if len(o.Labels) > 0 {
		meta["labels"] = o.Labels
	}
	body, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": meta})
	return body
}

// StoredSecrets counts the stored copies of Secrets (objects and the
// events that replay them) by how they are kept.
type StoredSecrets struct {
	// Plaintext were written before encryption was configured.
	Plaintext int
	// ByKey counts the encrypted ones by the ID of their key.
	ByKey map[string]int
}

// storedSecret is one stored copy of a Secret: an object (seq 0) or an
// event.
type storedSecret struct {
	key ObjectKey
	seq int64
	id  string
	// sealed is false for a copy written without encryption.
	sealed bool
}

// storedSecrets lists every stored copy of a Secret, from the head of
// each value only.
func storedSecrets(ctx context.Context, q queryer) ([]storedSecret, error) {
	head := len(sealedScheme) + keyIDLength + 1
	var out []storedSecret
	for _, query := range []string{
		`SELECT 0, namespace, name, substr(body, 1, ?) FROM objects WHERE api_group = '' AND resource = 'secrets'`,
		`SELECT seq, namespace, name, substr(object, 1, ?) FROM events WHERE api_resource = '` + secretsAPIResource + `'`,
	} {
		rows, err := q.QueryContext(ctx, query, head)
		if err != nil {
			return nil, fmt.Errorf("list stored secrets: %w", err)
		}
		for rows.Next() {
			c := storedSecret{key: ObjectKey{Resource: "secrets"}}
			var prefix []byte
			if err := rows.Scan(&c.seq, &c.key.Namespace, &c.key.Name, &prefix); err != nil {
				rows.Close()
				return nil, fmt.Errorf("list stored secrets: %w", err)
			}
			if c.id, c.sealed, err = sealedKeyID(prefix); err != nil {
				rows.Close()
				return nil, fmt.Errorf("%s: %w", c.key, err)
			}
			out = append(out, c)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("list stored secrets: %w", err)
		}
	}
	return out, nil
}

// CountStoredSecrets counts the stored copies of Secrets by key.
func (s *Store) CountStoredSecrets(ctx context.Context) (StoredSecrets, error) {
	all, err := storedSecrets(ctx, s.read)
	if err != nil {
		return StoredSecrets{}, err
	}
	out := StoredSecrets{ByKey: map[string]int{}}
	for _, c := range all {
		if c.sealed {
			out.ByKey[c.id]++
		} else {
			out.Plaintext++
		}
	}
	return out, nil
}

// settingSecretsScrubbed marks a database rebuilt since Secrets are
// encrypted: no page of it holds one in plain text any more.
const settingSecretsScrubbed = "secrets_scrubbed"

// EncryptSecrets rewrites, with the first configured key, every stored
// copy of a Secret written without encryption or with another configured
// key, and returns how many it rewrote. Copies encrypted with a key that
// is not configured are left as they are: nothing is ever rewritten with
// the wrong key. The rewrite changes no resourceVersion and sends no
// event. When it rewrote anything, and the first time it runs on a
// database, the database is then rebuilt (VACUUM) and its WAL emptied, so
// that Secrets stored or deleted before are not left in plain text in
// freed pages.
func (s *Store) EncryptSecrets(ctx context.Context) (int, error) {
	if len(s.secretKeys) == 0 {
		return 0, errors.New("encrypt secrets: no secret encryption key is configured")
	}
	primary := s.secretKeys[0].id
	rewritten := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		all, err := storedSecrets(ctx, tx)
		if err != nil {
			return err
		}
		for _, c := range all {
			if c.sealed && c.id == primary {
				continue
			}
			if _, known := s.secretKeys.byID(c.id); c.sealed && !known {
				continue
			}
			if err := s.resealSecret(ctx, tx, c); err != nil {
				return err
			}
			rewritten++
		}
		return nil
	})
	if err != nil {
		return rewritten, err
	}
	_, err = s.Setting(ctx, settingSecretsScrubbed)
	scrubbed := err == nil
	if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return rewritten, err
	}
	if scrubbed && rewritten == 0 {
		return 0, nil
	}
	if err := s.dialect.compact(ctx, s.write); err != nil {
		return rewritten, fmt.Errorf("encrypt secrets: %w", err)
	}
	if !scrubbed {
		if _, err := s.InitSetting(ctx, settingSecretsScrubbed, s.now().UTC().Format(time.RFC3339)); err != nil {
			return rewritten, err
		}
	}
	return rewritten, nil
}

// resealSecret rewrites one stored copy with the first key.
func (s *Store) resealSecret(ctx context.Context, tx *sql.Tx, c storedSecret) error {
	read, write := `SELECT body FROM objects WHERE api_group = '' AND resource = 'secrets' AND namespace = ? AND name = ?`,
		`UPDATE objects SET body = ? WHERE api_group = '' AND resource = 'secrets' AND namespace = ? AND name = ?`
	args := []any{c.key.Namespace, c.key.Name}
	if c.seq != 0 {
		read, write = `SELECT object FROM events WHERE seq = ?`, `UPDATE events SET object = ? WHERE seq = ?`
		args = []any{c.seq}
	}
	var stored []byte
	if err := tx.QueryRowContext(ctx, read, args...).Scan(&stored); err != nil {
		return fmt.Errorf("encrypt %s: %w", c.key, err)
	}
	body, err := s.openBody(c.key, stored)
	if err != nil {
		return err
	}
	sealed, err := s.sealBody(c.key, body)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, write, append([]any{sealed}, args...)...); err != nil {
		return fmt.Errorf("encrypt %s: %w", c.key, err)
	}
	return nil
}
