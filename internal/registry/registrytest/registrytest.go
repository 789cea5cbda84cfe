// Package registrytest helps tests that speak the /v2 protocol by hand
// handle upload session Locations as a client must: as given, query and
// all.
package registrytest

import (
	"net/url"
	"path"
	"strings"
)

// WithDigest is a session's Location with the digest a closing PUT adds:
// the Location may carry a query of its own already.
func WithDigest(loc, dgst string) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + "digest=" + url.QueryEscape(dgst)
}

// SessionID is the ID of the session a Location names.
func SessionID(loc string) string {
	if i := strings.IndexByte(loc, '?'); i >= 0 {
		loc = loc[:i]
	}
	return path.Base(loc)
}
