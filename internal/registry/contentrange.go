package registry

import (
	"fmt"
	"strconv"
	"strings"
)

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
