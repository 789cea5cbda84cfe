package filesystem

import (
	"crypto/rand"
	"encoding/hex"
)

// processEpoch names this process, for when the boot cannot be named.
func processEpoch() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return "process:" + hex.EncodeToString(b)
}
