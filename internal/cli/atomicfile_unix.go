//go:build unix

package cli

import (
	"fmt"
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of old. Only a different owner
// is an error when it cannot be set: at mode 0600 the group reads nothing.
func keepOwner(f *os.File, old os.FileInfo) error {
	if old == nil {
		return nil
	}
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid, gid := int(st.Uid), int(st.Gid)
	if uid == os.Geteuid() && gid == os.Getegid() {
		return nil
	}
	err := f.Chown(uid, gid)
	if err != nil && uid == os.Geteuid() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (run as its owner, uid %d, or as root)", err, uid)
	}
	return nil
}
