// Package buildinfo reads, once, what the Go toolchain recorded about the
// running binary: its module version and VCS revision. The metrics, the
// ClusterOperator and the instances' pod names each show it in the form
// their reader expects.
package buildinfo

import (
	"runtime/debug"
	"sync"
)

// Info is what was recorded; empty strings where nothing was.
type Info struct {
	// Recorded is false for a binary built without module support.
	Recorded bool
	// Version is the module version ("" for a development build).
	Version string
	// Revision is the VCS commit, Modified whether the tree had changes.
	Revision string
	Modified bool
}

// Read returns the binary's build information.
var Read = sync.OnceValue(func() Info {
	var i Info
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	i.Recorded = true
	if v := bi.Main.Version; v != "(devel)" {
		i.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
})

// ShortRevision is the revision's first seven characters.
func (i Info) ShortRevision() string { return i.Revision[:min(len(i.Revision), 7)] }
