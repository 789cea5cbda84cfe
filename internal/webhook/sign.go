package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// signaturePrefix names the algorithm, so that another can be added
// without receivers mistaking one for the other.
const signaturePrefix = "sha256="

// Sign returns the X-Berth-Signature of body under key:
// "sha256=" followed by the lower-case hex HMAC-SHA256 of body.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header, an X-Berth-Signature, signs body under
// key. It is what a receiver does: compute the HMAC of the raw body as
// received (before any JSON decoding, which would change the bytes) with
// the webhook's secret key, and compare in constant time, so that the
// comparison leaks nothing about the expected signature. With an empty
// key nothing verifies: Berth signs nothing then.
func Verify(key, body []byte, header string) bool {
	if len(key) == 0 {
		return false
	}
	got, ok := strings.CutPrefix(strings.TrimSpace(header), signaturePrefix)
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hmac.Equal(sum, m.Sum(nil))
}
