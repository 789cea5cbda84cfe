package objstore

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/errdefs"
)

func TestKeys(t *testing.T) {
	dgst := digest.FromString("blob")
	key, err := BlobKey(dgst)
	if want := "blobs/sha256/" + dgst.Encoded()[:2] + "/" + dgst.Encoded(); err != nil || key != want || !BlobKeyShape.MatchString(key) {
		t.Errorf("BlobKey = %q, %v; want %q", key, err, want)
	}
	for _, bad := range []digest.Digest{"", "sha256:../../x", "sha256:ABC", "md5:00"} {
		if _, err := BlobKey(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("BlobKey(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
	if p, err := UploadPrefix("abc123"); err != nil || p != "upload-abc123." {
		t.Errorf("UploadPrefix = %q, %v", p, err)
	}
	for _, bad := range []string{"", "ABC", "a/b", "a.b", "../x", strings.Repeat("a", 129)} {
		if _, err := UploadPrefix(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("UploadPrefix(%q): %v, want ErrInvalidArgument", bad, err)
		}
	}
}

type failAfter struct {
	r   io.Reader
	err error
}

func (f failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// TestClientReader: the client's error is kept; a clean end is none.
func TestClientReader(t *testing.T) {
	c := &ClientReader{R: strings.NewReader("all")}
	if b, err := io.ReadAll(c); err != nil || string(b) != "all" || c.Err != nil {
		t.Errorf("clean end: %q, %v, kept %v", b, err, c.Err)
	}
	c = &ClientReader{R: failAfter{strings.NewReader("some"), io.ErrUnexpectedEOF}}
	if b, _ := io.ReadAll(c); string(b) != "some" || !errors.Is(c.Err, io.ErrUnexpectedEOF) {
		t.Errorf("hang-up: %q, kept %v", b, c.Err)
	}
}
