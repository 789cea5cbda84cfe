//go:build unix

package cli

import "syscall"

// restrictUmask keeps group and others out of whatever the server creates:
// a second line behind the explicit modes of each file (0600) and
// directory (0700) Berth creates, for anything that names none.
func restrictUmask() { syscall.Umask(0o077) }
