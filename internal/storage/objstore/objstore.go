// Package objstore is what Berth's object-storage drivers share: where
// blobs and upload sessions live in a bucket, the findings a driver
// reports about the bucket it built on, and how the bytes a client sent
// are told apart from a failure of the backend. docs/STORAGE.md has the
// design.
package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// BlobKey is where blob dgst lives: blobs/<alg>/<first two hex>/<hex>.
func BlobKey(dgst digest.Digest) (string, error) {
	if err := dgst.Validate(); err != nil {
		return "", fmt.Errorf("blob key for %q: %w: %v", dgst, errdefs.ErrInvalidArgument, err)
	}
	hex := dgst.Encoded()
	return "blobs/" + string(dgst.Algorithm()) + "/" + hex[:2] + "/" + hex, nil
}

// BlobKeyShape matches the keys of blobs.
var BlobKeyShape = regexp.MustCompile(`^blobs/[a-z0-9]+/[0-9a-f]{2}/[0-9a-f]+$`)

// UploadsPrefix starts the key of every object of an upload session, and
// UploadPrefix(id) those of session id. The keys are flat, at the top of
// the bucket: servers that keep objects as files (versitygw, MinIO's FS
// mode) remove a directory when its last object goes, and a PUT into a
// shared uploads/ directory then races a DELETE of another session's
// last object (versitygw answers 409 ExistingObjectIsDirectory).
const UploadsPrefix = "upload-"

// UploadPrefix is what the keys of upload id start with.
func UploadPrefix(id string) (string, error) {
	if !validUploadID(id) {
		return "", fmt.Errorf("upload id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return UploadsPrefix + id + ".", nil
}

func validUploadID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// ProvisionKey is the object that holds the token of a bucket Berth
// created.
const ProvisionKey = "berth-provisioned"

// NewToken is a fresh random token for a bucket Berth creates.
func NewToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Findings is what a driver found and did when it built on its bucket:
// embedded in a driver, it implements storage.Reporter and
// storage.Provisioner.
type Findings struct {
	mu         sync.Mutex
	conditions []storage.Condition
	// token is what the driver left in the bucket it created ("" for a
	// bucket it found).
	token string
}

// SetConditions replaces the conditions reported.
func (f *Findings) SetConditions(c ...storage.Condition) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conditions = c
}

// Conditions implements storage.Reporter.
func (f *Findings) Conditions() []storage.Condition {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]storage.Condition(nil), f.conditions...)
}

// SetToken records the token left in a bucket the driver created.
func (f *Findings) SetToken(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.token = token
}

// ProvisionToken implements storage.Provisioner.
func (f *Findings) ProvisionToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.token
}

// ClientReader reads a client's bytes and keeps its first error other
// than io.EOF: the client's, told apart from a failure of the write it
// feeds (net/http reports a client that hung up before its
// Content-Length as io.ErrUnexpectedEOF, which a reader filling a buffer
// also returns at a clean end).
type ClientReader struct {
	R   io.Reader
	Err error
}

func (c *ClientReader) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	if err != nil && err != io.EOF && c.Err == nil {
		c.Err = err
	}
	return n, err
}

// Ranger is what OpenRange needs of a backend: a ranged read of key
// (length < 0: to its end) whose errors are the driver errors (a range
// the backend refuses, errdefs.ErrInvalidArgument), and key's size.
type Ranger interface {
	ReadRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	Size(ctx context.Context, key string) (int64, error)
}

// OpenRange is storage.Provider's Open for a backend that reads ranges:
// one ranged GET. An empty range, or one at the blob's end (which object
// stores refuse), is served empty when the blob has offset bytes.
func OpenRange(ctx context.Context, r Ranger, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	key, err := BlobKey(dgst)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("open blob %s at %d: %w", dgst, offset, errdefs.ErrInvalidArgument)
	}
	if length != 0 {
		rc, err := r.ReadRange(ctx, key, offset, length)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			if err != nil {
				return nil, fmt.Errorf("open blob %s: %w", dgst, err)
			}
			return rc, nil
		}
	}
	// Nothing to read, but a missing blob or an offset past its end is
	// still an error.
	size, err := r.Size(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", dgst, err)
	}
	if offset > size {
		return nil, fmt.Errorf("open blob %s at %d: %w: it has %d bytes", dgst, offset, errdefs.ErrInvalidArgument, size)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
}

// Sequence reads the objects names, one after the other, opening each
// with open when the one before it ends.
func Sequence(ctx context.Context, names []string, open func(ctx context.Context, name string) (io.ReadCloser, error)) io.ReadCloser {
	return &sequence{ctx: ctx, names: names, open: open}
}

type sequence struct {
	ctx   context.Context
	names []string
	open  func(ctx context.Context, name string) (io.ReadCloser, error)
	cur   io.ReadCloser
}

func (s *sequence) Read(p []byte) (int, error) {
	for {
		if s.cur == nil {
			if len(s.names) == 0 {
				return 0, io.EOF
			}
			r, err := s.open(s.ctx, s.names[0])
			if err != nil {
				return 0, err
			}
			s.cur, s.names = r, s.names[1:]
		}
		n, err := s.cur.Read(p)
		if err == io.EOF {
			s.cur.Close()
			s.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (s *sequence) Close() error {
	if s.cur != nil {
		return s.cur.Close()
	}
	return nil
}
