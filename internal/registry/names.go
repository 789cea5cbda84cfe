package registry

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// maxNameLength bounds "<project>/<image>"; the spec lets registries cap
// names and clients commonly assume 255.
const maxNameLength = 255

// nameFormat is the message every NAME_INVALID answer carries.
const nameFormat = "repository names are <project>/<image>: exactly two components, each lowercase letters and digits separated by '.', '_', '__' or runs of '-'"

// parseName checks a repository name: exactly two components, each
// matching the spec's [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func parseName(name string) error {
	if len(name) > maxNameLength {
		return fmt.Errorf("name is %d characters, longer than %d", len(name), maxNameLength)
	}
	project, image, ok := strings.Cut(name, "/")
	if !ok || strings.Contains(image, "/") {
		return fmt.Errorf("%q has %d components", name, strings.Count(name, "/")+1)
	}
	if !validComponent(project) || !validComponent(image) {
		return fmt.Errorf("%q has an invalid component", name)
	}
	return nil
}

// validComponent matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* without a regexp.
func validComponent(s string) bool {
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

// validTag matches the spec's [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(s string) bool {
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

// parseDigest accepts sha256 and sha512 digests in canonical form.
func parseDigest(s string) (digest.Digest, error) {
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

// parseContentRange reads a PATCH Content-Range: "<start>-<end>", inclusive,
// optionally prefixed "bytes " and suffixed "/<total>" or "/*" as some
// clients send (RFC 9110); the total is not used. The numbers are digits
// only: strconv alone would take a sign.
func parseContentRange(s string) (start, end int64, err error) {
	r := strings.TrimPrefix(strings.Trim(s, " \t"), "bytes ")
	r, total, hasTotal := strings.Cut(r, "/")
	a, b, ok := strings.Cut(r, "-")
	if !ok || !isDigits(a) || !isDigits(b) || hasTotal && total != "*" && !isDigits(total) {
		return 0, 0, fmt.Errorf("content range %q is not <start>-<end>", s)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, fmt.Errorf("content range %q is not <start>-<end>", s)
	}
	return start, end, nil
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
