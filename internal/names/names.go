// Package names holds the OCI Distribution rules for repository names,
// tags and digests, shared by /v2, the management API and the image
// stream service so that a name one accepts the others accept too.
package names

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// MaxRepositoryLength bounds "<project>/<image>"; the spec lets registries cap
// names and clients commonly assume 255.
const MaxRepositoryLength = 255

// RepositoryFormat is the message every NAME_INVALID answer carries.
const RepositoryFormat = "repository names are <project>/<image>: exactly two components, each lowercase letters and digits separated by '.', '_', '__' or runs of '-'"

// Repository checks a repository name: exactly two components, each
// matching the spec's [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func Repository(name string) error {
	if len(name) > MaxRepositoryLength {
		return fmt.Errorf("name is %d characters, longer than %d", len(name), MaxRepositoryLength)
	}
	project, image, ok := strings.Cut(name, "/")
	if !ok || strings.Contains(image, "/") {
		return fmt.Errorf("%q has %d components", name, strings.Count(name, "/")+1)
	}
	if !Component(project) || !Component(image) {
		return fmt.Errorf("%q has an invalid component", name)
	}
	return nil
}

// Component matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* without a regexp.
func Component(s string) bool {
	if s == "" {
		return false
	}
	alnum := func(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }
	i := 0
	for {
		start := i
		for i < len(s) && alnum(s[i]) {
			i++
		}
		if i == start {
			return false // a separator at the start, the end, or next to another separator
		}
		if i == len(s) {
			return true
		}
		switch {
		case s[i] == '.':
			i++
		case s[i] == '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case s[i] == '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// Tag matches the spec's [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func Tag(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
			(i > 0 && (c == '.' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}

// Digest accepts sha256 and sha512 digests in canonical form.
func Digest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", err
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
		return d, nil
	default:
		return "", fmt.Errorf("digest algorithm %s is not supported (use sha256 or sha512)", d.Algorithm())
	}
}
