package filesystem

import (
	"os"
	"strings"
)

// bootEpoch is the kernel's boot id: it changes exactly when the page
// cache may have been lost.
func bootEpoch() string {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return "boot:" + id
		}
	}
	return processEpoch()
}
