package objstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
)

// Pieces is the state of an upload a driver keeps as numbered pieces
// (Azure's blocks, Swift's segments), two numbers: the session's bytes
// are the first Size bytes of pieces 1..Next-1, every one full but the
// last, since each append first tops up a short last piece. So a piece's
// bytes follow from its number, and a session has about size / piece size
// pieces however it is chunked.
type Pieces struct {
	// Next is the number of the next piece to write (from 1). A piece
	// with this number or higher is left over from an append never
	// recorded: it is written again, or left out.
	Next int32 `json:"n"`
	// Size is how many bytes the session holds.
	Size int64 `json:"z"`
}

// Encode is the state as recorded.
func (p Pieces) Encode() []byte {
	b, _ := json.Marshal(p) // a struct of numbers
	return b
}

// PieceLayout is how a driver cuts uploads into pieces.
type PieceLayout struct {
	// Size is the size of every piece but the last.
	Size int64
	// Max is the most pieces a session may have.
	Max int32
	// Driver and Piece name the driver and its pieces in errors ("azure",
	// "block").
	Driver, Piece string
}

// Decode reads a recorded state, which comes back from the metadata store
// and is checked as input.
func (l PieceLayout) Decode(b []byte) (Pieces, error) {
	st := Pieces{Next: 1}
	if len(b) == 0 {
		return st, nil
	}
	if len(b) > 64 {
		return st, fmt.Errorf("%s upload state of %d bytes: %w", l.Driver, len(b), errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Next < 1 || st.Next > l.Max+1 || st.Size < 0 ||
		st.Size > int64(st.Next-1)*l.Size || (st.Next > 1 && st.Size <= int64(st.Next-2)*l.Size) {
		return st, fmt.Errorf("%s upload state %q: %w", l.Driver, b, errdefs.ErrInvalidArgument)
	}
	return st, nil
}

// Start checks an append at offset to a session with state st, and
// returns the number of the piece that holds offset and the offset of its
// first byte: the append writes pieces again from there, that one with
// its bytes before offset, which the driver reads back.
func (l PieceLayout) Start(id string, st Pieces, offset int64) (n int32, start int64, err error) {
	if offset > st.Size {
		return 0, 0, fmt.Errorf("append to upload %s at %d: %w: it holds %d bytes", id, offset, errdefs.ErrInvalidArgument, st.Size)
	}
	n = int32(offset/l.Size) + 1
	return n, int64(n-1) * l.Size, nil
}

// Appended is what an append of pieces did.
type Appended struct {
	// N is how many bytes of the client's the pieces hold.
	N int64
	// State is the session's state after them.
	State Pieces
	// Changed is false when nothing was sent (the state is as it was).
	Changed bool
	// ClientErr is the error of the client's body that ended the append
	// (nil: it ended at its end); what it sent before is kept.
	ClientErr error
}

// Append writes before (the bytes read back of the piece holding offset,
// before offset: see Start) and then r as pieces of the session with state st, from that
// piece on, each written by put as it fills. An error of put, of the
// layout's limit or of reading other than the client's ends it with
// nothing to record.
func (l PieceLayout) Append(id string, st Pieces, offset int64, before []byte, r io.Reader, put func(n int32, buf Buffer, size int64) error) (Appended, error) {
	next, start, err := l.Start(id, st, offset)
	if err != nil {
		return Appended{}, err
	}
	if int64(len(before)) != offset-start {
		return Appended{}, fmt.Errorf("append to upload %s at %d: %d bytes read back of the %d before it in its %s", id, offset, len(before), offset-start, l.Piece)
	}
	client := &ClientReader{R: r}
	src := io.MultiReader(bytes.NewReader(before), client)
	var written int64
	for {
		buf, m, rerr := Fill(src, l.Size, "")
		if rerr != nil && client.Err == nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			buf.Close()
			return Appended{}, rerr
		}
		if m > 0 {
			if next > l.Max {
				buf.Close()
				return Appended{}, fmt.Errorf("append to upload %s: %w: a session has at most %d %ss of %d MiB", id, errdefs.ErrLimitExceeded, l.Max, l.Piece, l.Size>>20)
			}
			err := put(next, buf, m)
			buf.Close()
			if err != nil {
				return Appended{}, err
			}
			next++
			written += m
		}
		if rerr != nil || m < l.Size {
			break
		}
	}
	n := written - int64(len(before))
	if n <= 0 && offset == st.Size {
		return Appended{State: st, ClientErr: client.Err}, nil
	}
	return Appended{N: n, State: Pieces{Next: next, Size: offset + n}, Changed: true, ClientErr: client.Err}, nil
}

// Committing checks a commit of upload u as blob dgst of size, and returns
// the blob's key, the upload's prefix and its state: the session must
// hold exactly size bytes (errdefs.ErrSizeMismatch otherwise).
func (l PieceLayout) Committing(u storage.Upload, dgst digest.Digest, size int64) (key, prefix string, st Pieces, err error) {
	if key, err = BlobKey(dgst); err != nil {
		return "", "", st, err
	}
	if prefix, err = UploadPrefix(u.ID); err != nil {
		return "", "", st, err
	}
	if st, err = l.Decode(u.State); err != nil {
		return "", "", st, err
	}
	if st.Size != size {
		return "", "", st, fmt.Errorf("commit upload %s as %s: %w: it holds %d bytes, not %d", u.ID, dgst, errdefs.ErrSizeMismatch, st.Size, size)
	}
	return key, prefix, st, nil
}
