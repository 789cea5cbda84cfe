package bench

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
)

// OCI media types the workloads use.
const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
)

// tailLen is how many bytes at the end of a layer make it unique.
const tailLen = 16

// payload is a blob held as byte slices read back to back, so a unique
// layer can share all but its last bytes with every other one.
type payload struct {
	parts  [][]byte
	size   int64
	digest string
}

func bytesPayload(b []byte) payload {
	sum := sha256.Sum256(b)
	return payload{parts: [][]byte{b}, size: int64(len(b)), digest: "sha256:" + hex.EncodeToString(sum[:])}
}

// section returns a reader of bytes [off, off+n) of p. It allocates no
// copy of the data.
func (p payload) section(off, n int64) io.Reader {
	var rs []io.Reader
	for _, part := range p.parts {
		l := int64(len(part))
		if off >= l {
			off -= l
			continue
		}
		take := min(l-off, n)
		rs = append(rs, bytes.NewReader(part[off:off+take]))
		n -= take
		off = 0
		if n == 0 {
			break
		}
	}
	switch len(rs) {
	case 0:
		return bytes.NewReader(nil)
	case 1:
		return rs[0]
	}
	return io.MultiReader(rs...)
}

// blobFactory makes unique layers cheaply. Random content is generated
// once; a layer of size s is base[:s-16] followed by a 16-byte tail of
// the run's nonce and a counter. The sha256 state after the shared prefix
// is computed once per size, so a new layer's digest costs hashing 16
// bytes rather than the whole layer: the client stays out of the
// server's way on a shared machine.
type blobFactory struct {
	base    []byte
	nonce   [8]byte
	counter atomic.Uint64

	mu     sync.Mutex
	states map[int64][]byte
}

func newBlobFactory(maxSize int64) *blobFactory {
	f := &blobFactory{states: map[int64][]byte{}}
	var seed [32]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails (Go 1.24+)
	copy(f.nonce[:], seed[:8])
	f.base = make([]byte, maxSize)
	_, _ = mrand.NewChaCha8(seed).Read(f.base)
	return f
}

// prepare computes, once, the hash state of the prefix shared by every
// layer of size; Run calls it before timing starts.
func (f *blobFactory) prepare(size int64) ([]byte, error) {
	if size > int64(len(f.base)) {
		return nil, fmt.Errorf("layer size %d is larger than the generated content (%d)", size, len(f.base))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.states[size]; ok {
		return st, nil
	}
	h := sha256.New()
	h.Write(f.base[:size-min(size, tailLen)])
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	f.states[size] = st
	return st, nil
}

// layer returns a layer of size that no other call in this process, nor
// (but for a 2^-64 chance) any other run, returns.
func (f *blobFactory) layer(size int64) (payload, error) {
	st, err := f.prepare(size)
	if err != nil {
		return payload{}, err
	}
	var full [tailLen]byte
	copy(full[:8], f.nonce[:])
	binary.BigEndian.PutUint64(full[8:], f.counter.Add(1))
	tl := min(size, tailLen)
	tail := full[tailLen-tl:]
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st); err != nil {
		return payload{}, err
	}
	h.Write(tail)
	return payload{
		parts:  [][]byte{f.base[:size-tl], tail},
		size:   size,
		digest: "sha256:" + hex.EncodeToString(h.Sum(nil)),
	}, nil
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type imageManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// imageConfig returns a config blob for a one-layer image. The layer is
// an uncompressed tar, so its digest is also its diff ID; that also makes
// every config as unique as its layer.
func imageConfig(layer payload) payload {
	b := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%q]},"history":[{"created_by":"berth bench"}]}`, layer.digest)
	return bytesPayload(b)
}

func manifestFor(config, layer payload) []byte {
	m := imageManifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: config.digest, Size: config.size},
		Layers:        []descriptor{{MediaType: mediaTypeLayer, Digest: layer.digest, Size: layer.size}},
	}
	b, _ := json.Marshal(m) // cannot fail: only strings and ints
	return b
}
