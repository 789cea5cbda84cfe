package objstore

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

// TestFill: a buffer holds what it read, in memory or spooled, reads
// again after a seek (a retry), and says how its source ended.
func TestFill(t *testing.T) {
	content := make([]byte, 3*chunkSize+17)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		size      int64
		wantN     int64
		wantEnded bool
	}{
		{"a part of it", 2*chunkSize + 5, 2*chunkSize + 5, false},
		{"all of it, short of the size", int64(len(content)) + 10, int64(len(content)), true},
		{"spooled", MemoryLimit + 1, int64(len(content)), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, n, err := Fill(bytes.NewReader(content), c.size, t.TempDir())
			if n != c.wantN || b.Len() != n {
				t.Fatalf("Fill = %d bytes (Len %d), want %d", n, b.Len(), c.wantN)
			}
			if ended := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF); ended != c.wantEnded || (!ended && err != nil) {
				t.Fatalf("Fill error %v", err)
			}
			defer b.Close()
			for range 2 {
				got, err := io.ReadAll(b)
				if err != nil || !bytes.Equal(got, content[:n]) {
					t.Fatalf("read back %d bytes, %v", len(got), err)
				}
				if _, err := b.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
