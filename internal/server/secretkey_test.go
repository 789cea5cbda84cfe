package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/store"
)

func writeKeyFile(t *testing.T, path string, size int, mode os.FileMode) []byte {
	t.Helper()
	key := make([]byte, size)
	_, _ = rand.Read(key)
	if err := os.WriteFile(path, key, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return key
}

func TestSecretKeyFileChecks(t *testing.T) {
	dir := t.TempDir()
	uid := os.Geteuid()
	for _, c := range []struct {
		name    string
		size    int
		mode    os.FileMode
		uid     int
		wantErr string
	}{
		{"private", 32, 0o600, uid, ""},
		{"read-only", 32, 0o400, uid, ""},
		{"group-readable", 32, 0o640, uid, "must be 0600 or 0400"},
		{"world-readable", 32, 0o644, uid, "must be 0600 or 0400"},
		{"another-owner", 32, 0o600, uid + 1, "not by the user berth runs as"},
		{"short", 16, 0o600, uid, "holds 16 bytes, not 32"},
	} {
		path := filepath.Join(dir, c.name)
		want := writeKeyFile(t, path, c.size, c.mode)
		got, err := readSecretKeyFile(path, c.uid)
		switch {
		case c.wantErr == "" && (err != nil || !bytes.Equal(got, want)):
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: err = %v, want %q", c.name, err, c.wantErr)
		}
	}
	if _, err := readSecretKeyFile(dir, uid); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as key file: %v", err)
	}
}

func TestRunRefusesALooseKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "key")
	writeKeyFile(t, keyFile, 32, 0o644)
	err := Run(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", InsecureHTTP: true, Storage: "filesystem",
		SecretKeyFiles: []string{keyFile}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), keyFile) || !strings.Contains(err.Error(), "must be 0600 or 0400") {
		t.Fatalf("Run with a 0644 key file = %v", err)
	}
}

// A Secret an earlier version stored in plain text is encrypted at the
// first start, the API still returns it; with the key file replaced its
// reads fail and the log says why, and with the key back it reads again;
// with the key file gone, the start is refused rather than a new key made.
func TestServeEncryptsSecrets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	value := make([]byte, 12)
	_, _ = rand.Read(value)
	plain := "pw-" + hex.EncodeToString(value)
	encoded := base64.StdEncoding.EncodeToString([]byte(plain))

	old, err := store.OpenSQLite(ctx, filepath.Join(dir, "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.CreateProject(ctx, store.Project{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateObject(ctx, store.Object{ObjectKey: store.ObjectKey{Resource: "secrets", Namespace: "team", Name: "db"}, UID: "u1",
		Body: []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"team","uid":"u1","creationTimestamp":"2025-01-01T00:00:00Z"},"type":"Opaque","data":{"password":"` + encoded + `"}}`)}); err != nil {
		t.Fatal(err)
	}
	old.Close()

	getSecret := func(r *running) (int, string) {
		t.Helper()
		resp, err := admin.Get(r.url + "/api/v1/namespaces/team/secrets/db")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct {
			Data map[string][]byte `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&s)
		return resp.StatusCode, string(s.Data["password"])
	}

	r := start(t, Config{DataDir: dir})
	if code, got := getSecret(r); code != http.StatusOK || got != plain {
		t.Fatalf("GET secret = %d %q, want 200 %q", code, got, plain)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `"msg":"created the secret encryption key"`) || !strings.Contains(logs, `"copies":2`) {
		t.Errorf("the log says nothing of the new key and the 2 copies (object, event) encrypted:\n%s", logs)
	}
	r.shutdown(t)
	keyFile := filepath.Join(dir, SecretKeyFile)
	key, err := os.ReadFile(keyFile)
	if err != nil || len(key) != 32 {
		t.Fatalf("key file: %d bytes, %v", len(key), err)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	for _, name := range []string{"metadata.db", "metadata.db-wal"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(encoded)) || bytes.Contains(raw, []byte(plain)) {
			t.Errorf("%s holds the secret in plain text", name)
		}
	}

	// The key file replaced: reads of the Secret fail, and say why.
	writeKeyFile(t, keyFile, 32, 0o600)
	r = start(t, Config{DataDir: dir})
	if !strings.Contains(r.logs.String(), "encrypted with a key that is not configured") {
		t.Errorf("no error at start about Secrets under another key:\n%s", r.logs.String())
	}
	if code, got := getSecret(r); code != http.StatusInternalServerError || got != "" {
		t.Fatalf("GET secret with the wrong key = %d %q, want 500 and nothing", code, got)
	}
	if !strings.Contains(r.logs.String(), "does not match the configured secret encryption key") {
		t.Errorf("the log does not say the key does not match:\n%s", r.logs.String())
	}
	r.shutdown(t)

	// The right key back: nothing was lost.
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	r = start(t, Config{DataDir: dir})
	if code, got := getSecret(r); code != http.StatusOK || got != plain {
		t.Fatalf("GET secret with the key restored = %d %q", code, got)
	}
	r.shutdown(t)

	// The key file lost: no new key is made over Secrets it cannot read.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	err = Run(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", InsecureHTTP: true, Storage: "filesystem", AdminPassword: testAdminPassword,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "restore the key file") {
		t.Fatalf("Run without the key file = %v", err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("a refused start left a key file: %v", err)
	}
}

// A key given in the environment is used as it is (no file to check),
// and wins over the data directory's; one of the wrong size is refused.
func TestSecretKeyFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	given := bytes.Repeat([]byte{3}, store.SecretKeySize)
	keys, err := loadSecretKeys(dir, nil, given)
	if err != nil || len(keys.keys) != 1 || !bytes.Equal(keys.keys[0], given) || keys.create != nil {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if _, err := os.Stat(filepath.Join(dir, SecretKeyFile)); err == nil {
		t.Error("a key file was made although the key was given")
	}
	if _, err := loadSecretKeys(dir, nil, []byte("short")); err == nil || !strings.Contains(err.Error(), "not 32") {
		t.Fatalf("a short key: %v", err)
	}
}
