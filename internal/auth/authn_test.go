package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/errdefs"
)

type memTokens map[string]TokenRecord

func (m memTokens) LookupToken(_ context.Context, hash []byte) (TokenRecord, error) {
	if r, ok := m[string(hash)]; ok {
		return r, nil
	}
	return TokenRecord{}, errdefs.ErrNotFound
}

type memGroups map[string][]string

func (m memGroups) GroupsOf(_ context.Context, user string) ([]string, error) { return m[user], nil }

func TestTokenAuthentication(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tokens := memTokens{}
	issue := func(user string, expires, revoked time.Time) string {
		secret, id, hash := NewToken()
		tokens[string(hash)] = TokenRecord{ID: id, Hash: hash, User: user, Expires: expires, Revoked: revoked}
		return secret
	}
	valid := issue("alice", now.Add(time.Hour), time.Time{})
	expired := issue("alice", now, time.Time{})
	revoked := issue("alice", now.Add(time.Hour), now.Add(-time.Minute))
	robot := issue(ServiceAccountUser("team", "ci"), now.Add(time.Hour), time.Time{})
	a := &Authenticator{Tokens: tokens, Groups: memGroups{"alice": {"qa"}}, Now: func() time.Time { return now }}

	u, err := a.Token(context.Background(), valid)
	if err != nil || u.Name != "alice" || !slices.Contains(u.Groups, "qa") || !slices.Contains(u.Groups, GroupAuthenticated) {
		t.Fatalf("valid token = %+v, %v", u, err)
	}
	u, err = a.Token(context.Background(), robot)
	if err != nil || !slices.Contains(u.Groups, GroupServiceAccountsPrefix+"team") {
		t.Fatalf("service account token = %+v, %v", u, err)
	}
	for name, tc := range map[string]struct{ secret, reason string }{
		"expired":   {expired, "expired"},
		"revoked":   {revoked, "revoked"},
		"unknown":   {TokenPrefix + "AAAA", "unknown"},
		"no prefix": {"password", "not a token"},
	} {
		_, err := a.Token(context.Background(), tc.secret)
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s token = %v, want unauthenticated (%s)", name, err, tc.reason)
		}
	}
}

func TestNewTokenIsRandomAndLong(t *testing.T) {
	s1, id1, h1 := NewToken()
	s2, id2, _ := NewToken()
	if s1 == s2 || id1 == id2 {
		t.Fatal("two tokens are equal")
	}
	if len(strings.TrimPrefix(s1, TokenPrefix)) < 43 { // 32 bytes, base64url
		t.Fatalf("token %q is shorter than 256 bits", s1)
	}
	if string(h1) != string(HashToken(s1)) || strings.Contains(string(h1), s1) {
		t.Fatal("hash does not match the secret")
	}
}

func writeHtpasswd(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# users\n")
	for u, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestHtpasswd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, path, map[string]string{"alice": "s3cret"})
	h, err := OpenHtpasswd(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		user, pw string
		want     bool
	}{{"alice", "s3cret", true}, {"alice", "wrong", false}, {"mallory", "s3cret", false}} {
		if ok, err := h.CheckPassword(ctx, tc.user, tc.pw); err != nil || ok != tc.want {
			t.Errorf("CheckPassword(%s, %s) = %v, %v", tc.user, tc.pw, ok, err)
		}
	}
	// The file changes while serving: bob is added, alice's password changes.
	time.Sleep(10 * time.Millisecond)
	writeHtpasswd(t, path, map[string]string{"alice": "n3w", "bob": "pw"})
	if ok, _ := h.CheckPassword(ctx, "bob", "pw"); !ok {
		t.Error("a user added to the file is not accepted")
	}
	if ok, _ := h.CheckPassword(ctx, "alice", "s3cret"); ok {
		t.Error("an old password still works after the file changed")
	}
	// A broken file keeps the last good contents in force.
	if err := os.WriteFile(path, []byte("garbage without a colon and longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.CheckPassword(ctx, "bob", "pw"); !ok || err != nil {
		t.Errorf("a broken file locked users out: %v, %v", ok, err)
	}

	a := &Authenticator{Identity: h}
	if _, err := a.Password(ctx, "127.0.0.1", "bob", "nope"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong password = %v", err)
	}
	if u, err := a.Password(ctx, "127.0.0.1", "bob", "pw"); err != nil || u.Name != "bob" {
		t.Errorf("right password = %+v, %v", u, err)
	}
}

func TestHtpasswdRejectsWeakHashes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	// An MD5 (apr1) hash, as htpasswd writes without -B.
	if err := os.WriteFile(path, []byte("alice:$apr1$abcdefgh$0123456789abcdefghijkl\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenHtpasswd(path); err == nil || !strings.Contains(err.Error(), "only bcrypt") {
		t.Fatalf("OpenHtpasswd with an apr1 hash = %v", err)
	}
}

func TestServiceAccountNames(t *testing.T) {
	p, n, ok := ServiceAccountOf(ServiceAccountUser("team", "ci"))
	if !ok || p != "team" || n != "ci" {
		t.Fatalf("ServiceAccountOf = %s %s %v", p, n, ok)
	}
	for _, bad := range []string{"alice", "system:serviceaccount:team", "system:serviceaccount::ci", "system:serviceaccount:a:b:c"} {
		if _, _, ok := ServiceAccountOf(bad); ok {
			t.Errorf("%q parsed as a service account", bad)
		}
	}
}
