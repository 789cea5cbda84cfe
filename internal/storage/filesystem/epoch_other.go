//go:build !linux

package filesystem

// bootEpoch cannot tell a restart of Berth from one of the machine here:
// every process is an epoch of its own, so unsynced bytes are checked
// after any restart.
func bootEpoch() string { return processEpoch() }
