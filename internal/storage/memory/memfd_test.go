//go:build linux

package memory

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/berth-registry/berth/internal/storage"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// lowerFDLimit sets the soft RLIMIT_NOFILE to headroom descriptors above
// what is open now, for the rest of the test.
func lowerFDLimit(t *testing.T, headroom int) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(openFDs(t) + headroom)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
}

// exhaustFDs opens /dev/null until the process has no descriptor left,
// and closes them all when the test ends.
func exhaustFDs(t *testing.T) {
	t.Helper()
	var held []*os.File
	t.Cleanup(func() {
		for _, f := range held {
			f.Close()
		}
	})
	for range 1 << 16 {
		f, err := os.Open("/dev/null")
		if err != nil {
			return
		}
		held = append(held, f)
	}
	t.Skip("could not use up the descriptors")
}

// pushTiny commits n distinct one-line blobs.
func pushTiny(t *testing.T, d *Driver, n int) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	for i := range n {
		content := []byte(fmt.Sprintf("blob %d\n", i))
		id := fmt.Sprintf("u%d", i)
		if _, _, err := d.Append(t.Context(), storage.Upload{ID: id}, 0, bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		dgst := digest.FromBytes(content)
		if err := d.Commit(t.Context(), storage.Upload{ID: id}, dgst, int64(len(content))); err != nil {
			t.Fatal(err)
		}
		out = append(out, dgst)
	}
	return out
}

// Content holds at most half of the file descriptors the process may
// open, however many blobs are pushed: the rest of the process (its
// connections, its database) must still be able to open files. Beyond,
// blobs are kept in process memory, and read back whole.
func TestMemfdsLeaveDescriptorsForTheProcess(t *testing.T) {
	lowerFDLimit(t, 64)
	d := NewDriver()
	dgsts := pushTiny(t, d, 100)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatalf("after 100 tiny blobs the process cannot open a file any more: %v", err)
	}
	f.Close()
	for i, dgst := range dgsts {
		rc, err := d.OpenSeeker(t.Context(), dgst)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if want := fmt.Sprintf("blob %d\n", i); err != nil || string(b) != want {
			t.Fatalf("blob %d reads %q, %v", i, b, err)
		}
	}
}

// A reader that could not open the memfd anew (no descriptor to spare)
// reads the driver's own file, and keeps it open through a Delete.
func TestMemfdFallbackReaderOutlivesDelete(t *testing.T) {
	d := NewDriver()
	dgsts := pushTiny(t, d, 1)
	lowerFDLimit(t, 16)
	exhaustFDs(t) // no descriptor to spare: reader() takes its fallback
	rc, err := d.OpenSeeker(t.Context(), dgsts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.(*os.File); ok {
		t.Skip("the reopen via /proc succeeded; no fallback to test")
	}
	if err := d.Delete(t.Context(), dgsts[0]); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "blob 0\n" {
		t.Fatalf("reader opened before Delete: %q, %v; want the blob's bytes", b, err)
	}
}
