package memory

import "golang.org/x/sys/unix"

// populate asks the kernel to back a new segment with memory in one call,
// before the request's bytes are copied into it: otherwise the copy takes
// a page fault per 4 KiB page, which cost more than all the rest of a push
// (the filesystem driver's page cache pages come without faults). Best
// effort: an older kernel just faults as before.
func populate(seg []byte) {
	if cap(seg) >= 64<<10 {
		_ = unix.Madvise(seg[:cap(seg)], unix.MADV_POPULATE_WRITE)
	}
}
