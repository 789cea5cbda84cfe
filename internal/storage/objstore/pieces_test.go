package objstore

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/opencontainers/go-digest"
)

var testLayout = PieceLayout{Size: 4, Max: 3, Driver: "test", Piece: "piece"}

// A recorded state is input: only states an append could have made pass.
func TestPiecesDecode(t *testing.T) {
	for _, c := range []struct {
		state string
		ok    bool
	}{
		{"", true}, {`{"n":1,"z":0}`, true}, {`{"n":2,"z":4}`, true}, {`{"n":3,"z":5}`, true}, {`{"n":4,"z":12}`, true},
		{`{"n":0,"z":0}`, false}, {`{"n":2,"z":5}`, false}, {`{"n":3,"z":4}`, false}, {`{"n":5,"z":13}`, false},
		{`{"n":2,"z":-1}`, false}, {`nonsense`, false}, {`{"n":1,"z":0,"pad":"` + strings.Repeat("x", 64) + `"}`, false},
	} {
		_, err := testLayout.Decode([]byte(c.state))
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
			t.Errorf("Decode(%s) = %v, want ok %t", c.state, err, c.ok)
		}
	}
}

// An append tops up the short last piece (written again with the bytes
// read back), cuts the rest into full pieces, and stops at the limit.
func TestPiecesAppend(t *testing.T) {
	pieces := map[int32]string{}
	put := func(n int32, buf Buffer, size int64) error {
		b, err := io.ReadAll(buf)
		if int64(len(b)) != size {
			t.Errorf("piece %d: %d bytes, said %d", n, len(b), size)
		}
		pieces[n] = string(b)
		return err
	}
	res, err := testLayout.Append("u", Pieces{Next: 1}, 0, nil, strings.NewReader("abcdef"), put)
	if err != nil || !res.Changed || res.N != 6 || res.State != (Pieces{Next: 3, Size: 6}) {
		t.Fatalf("first append: %+v, %v", res, err)
	}
	n, start, err := testLayout.Start("u", res.State, 6)
	if err != nil || n != 2 || start != 4 {
		t.Fatalf("Start at 6: %d %d %v", n, start, err)
	}
	res, err = testLayout.Append("u", res.State, 6, []byte("ef"), strings.NewReader("ghij"), put)
	if err != nil || res.N != 4 || res.State != (Pieces{Next: 4, Size: 10}) {
		t.Fatalf("second append: %+v, %v", res, err)
	}
	if pieces[1] != "abcd" || pieces[2] != "efgh" || pieces[3] != "ij" {
		t.Errorf("pieces %q", pieces)
	}
	if res, err := testLayout.Append("u", res.State, 10, []byte("ij"), bytes.NewReader(nil), put); err != nil || res.Changed {
		t.Errorf("an empty append: %+v, %v; want nothing changed", res, err)
	}
	if _, err := testLayout.Append("u", res.State, 10, []byte("ij"), strings.NewReader("klmnop"), put); !errors.Is(err, errdefs.ErrLimitExceeded) {
		t.Errorf("past the most pieces: %v", err)
	}
	if _, _, err := testLayout.Start("u", Pieces{Next: 2, Size: 3}, 4); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("an append past the session's end: %v", err)
	}
	if _, err := testLayout.Append("u", Pieces{Next: 2, Size: 3}, 3, []byte("a"), strings.NewReader("b"), put); err == nil {
		t.Error("an append with fewer bytes read back than precede it passed")
	}
}

// A commit is checked before anything is copied: the blob's key, the
// upload's prefix, its state, and that it holds exactly the size given.
func TestPiecesCommitting(t *testing.T) {
	dgst := digest.FromString("content")
	state := Pieces{Next: 2, Size: 3}.Encode()
	key, prefix, st, err := testLayout.Committing(storage.Upload{ID: "u1", State: state}, dgst, 3)
	if err != nil || st.Size != 3 || key == "" || prefix == "" {
		t.Fatalf("Committing = %q, %q, %+v, %v", key, prefix, st, err)
	}
	if _, _, _, err := testLayout.Committing(storage.Upload{ID: "u1", State: state}, dgst, 4); !errors.Is(err, errdefs.ErrSizeMismatch) {
		t.Errorf("another size: %v", err)
	}
	if _, _, _, err := testLayout.Committing(storage.Upload{ID: "../u1", State: state}, dgst, 3); err == nil {
		t.Error("a hostile upload ID passed")
	}
	if _, _, _, err := testLayout.Committing(storage.Upload{ID: "u1", State: []byte("{")}, dgst, 3); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a broken state: %v", err)
	}
}
