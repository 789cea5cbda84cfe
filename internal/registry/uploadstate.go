package registry

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/settings"
)

// uploadStateParam is the query parameter of an upload session's Location
// that proves this registry issued the location, to the user asking: an
// HMAC-SHA-256, under the Config's httpSecret, of the repository, the
// session and the user who started it. The session itself lives in the
// store; the signature is what the reference calls the httpSecret's job
// ("needed by the registry to secure uploads"): another user who learns a
// session's ID (from a log line, a proxy's) cannot write into it, and
// changing httpSecret ends the sessions in flight on every instance alike.
const uploadStateParam = "_state"

// processKey signs upload locations of a request whose settings name no
// httpSecret (a registry built without the operator, in tests).
var processKey = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// uploadState is the signature of session id of repo for user.
func uploadState(ctx context.Context, repo, id, user string) string {
	key := settings.From(ctx).HTTPSecret
	if len(key) == 0 {
		key = processKey
	}
	mac := hmac.New(sha256.New, key)
	// NUL cannot occur in a repository name, an ID or a user name, so
	// the fields cannot run into each other.
	mac.Write([]byte("berth upload session\x00" + repo + "\x00" + id + "\x00" + user))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// sessionLocation is the Location of session id of repo, signed for the
// user of ctx.
func sessionLocation(ctx context.Context, repo, id string) string {
	return uploadLocation(repo, id) + "?" + uploadStateParam + "=" +
		uploadState(ctx, repo, id, auth.IdentityFrom(ctx).User.Name)
}

// checkSessionLocation tells whether req came with a location this
// registry issued for its session to the user asking. A location that
// fails answers as an unknown session does, so that it tells nothing
// about sessions of others.
func checkSessionLocation(req *http.Request, repo, id string) error {
	got := req.URL.Query().Get(uploadStateParam)
	want := uploadState(req.Context(), repo, id, auth.IdentityFrom(req.Context()).User.Name)
	if got == "" || !hmac.Equal([]byte(got), []byte(want)) {
		return newError(codeBlobUploadUnknown,
			"upload %s unknown: use the Location this registry returned for it, unchanged; "+
				"a session continues only with its own user and ends when the registry's httpSecret changes", id)
	}
	return nil
}
