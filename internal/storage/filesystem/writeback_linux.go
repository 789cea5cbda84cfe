package filesystem

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing a file range to disk
// without waiting for it, so the fsync at commit finds most of a large
// blob already written instead of flushing it all at once.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE) // advisory: errors only cost speed
}
