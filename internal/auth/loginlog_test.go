package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/errdefs"
)

// failingProvider cannot check anything (a store that is down).
type failingProvider struct{}

func (failingProvider) CheckPassword(context.Context, string, string) (bool, error) {
	return false, errors.New("store unavailable")
}

// People type passwords into the user name field: a failed login names the
// user only when it is one Berth or the htpasswd file knows, and otherwise
// logs a short hash of what was typed, so that repeated attempts can still
// be told apart without the log holding a password. The hash is keyed: a
// plain hash of a password in a log is a way to test guesses at it.
func TestFailedLoginsNameOnlyKnownUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, path, map[string]string{"bob": "bob-pw"})
	htpasswd, err := OpenHtpasswd(path)
	if err != nil {
		t.Fatal(err)
	}
	adminHash, err := bcrypt.GenerateFromPassword([]byte("admin-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	local := LocalUsers{PasswordHash: func(_ context.Context, user string) (string, error) {
		switch user {
		case "admin":
			return string(adminHash), nil
		case "carol": // recorded at an earlier login; her password is elsewhere
			return "", nil
		}
		return "", errdefs.ErrNotFound
	}}
	var logs strings.Builder
	key := []byte("the instance's key for user name hashes")
	a := &Authenticator{
		Identity: Chain{local, htpasswd}, NameHashKey: key,
		Users:  &Throttle{Limit: 2, Window: time.Minute, Lockout: time.Minute},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	const typedAsName = "Tr0ub4dor&3-correct-horse"
	for _, c := range []struct{ name, password string }{
		{typedAsName, "bob"}, {typedAsName, "bob"}, {typedAsName, "bob"}, // the third is throttled
		{"admin", "wrong"}, {"bob", "wrong"}, {"carol", "wrong"},
	} {
		if _, err := a.Request(newRequest(basic(c.name, c.password))); err == nil {
			t.Fatalf("login %s succeeded", c.name)
		}
	}
	got := logs.String()
	if strings.Contains(got, typedAsName) || strings.Contains(got, typedAsName[:8]) {
		t.Fatalf("the log holds what was typed as a user name:\n%s", got)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(typedAsName))
	hash := hex.EncodeToString(mac.Sum(nil))[:12]
	for _, want := range []string{
		`msg="login failed" user_hash=` + hash + " client=192.0.2.7",
		`msg="login throttled" user_hash=` + hash + " client=192.0.2.7",
		`msg="login failed" user=admin client=192.0.2.7`,
		`msg="login failed" user=bob client=192.0.2.7`,
		`msg="login failed" user=carol client=192.0.2.7`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}

	// An identity provider that fails: the error (which the server logs)
	// does not carry the name either.
	broken := &Authenticator{Identity: Chain{local, failingProvider{}}, NameHashKey: key}
	_, err = broken.Password(context.Background(), "192.0.2.7", typedAsName, "x")
	if err == nil || errors.Is(err, ErrUnauthenticated) || strings.Contains(err.Error(), typedAsName) || !strings.Contains(err.Error(), hash) {
		t.Errorf("provider failure = %v, want an error naming the hash %s only", err, hash)
	}
	_, err = broken.Password(context.Background(), "192.0.2.7", "admin", "x")
	if err == nil || !strings.Contains(err.Error(), "admin") {
		t.Errorf("provider failure for admin = %v, want it named", err)
	}

	// Without a key each process draws one: the hash is stable within it
	// and is still no plain hash of what was typed.
	var unkeyed Authenticator
	plain := sha256.Sum256([]byte(typedAsName))
	if h := unkeyed.nameHash(typedAsName); len(h) != 12 || h != unkeyed.nameHash(typedAsName) || h == hex.EncodeToString(plain[:6]) {
		t.Errorf("unkeyed hash = %q", h)
	}
}
