package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real binary, with its key named by $BERTH_SECRET_ENCRYPTION_KEY_FILE:
// a Secret created through the API comes back as it was given, is in none
// of the database files in plain text, and every file of the data
// directory is private.
func TestSecretsAndFilesAtRest(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "secret.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BERTH_SECRET_ENCRYPTION_KEY_FILE", keyFile)
	raw := make([]byte, 12)
	_, _ = rand.Read(raw)
	value := "at-rest-" + hex.EncodeToString(raw)
	encoded := base64.StdEncoding.EncodeToString([]byte(value))

	s := startServer(t)
	s.newProject("vault")
	st, b := s.apiCall("POST", "/api/v1/namespaces/vault/secrets", map[string]any{
		"apiVersion": "v1", "kind": "Secret", "metadata": map[string]string{"name": "db"},
		"stringData": map[string]string{"password": value},
	})
	if st != http.StatusCreated {
		t.Fatalf("create secret: %d %s", st, b)
	}
	st, b = s.apiCall("GET", "/api/v1/namespaces/vault/secrets/db", nil)
	var got struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(b, &got); st != http.StatusOK || err != nil || got.Data["password"] != encoded {
		t.Fatalf("get secret: %d %s", st, b)
	}
	s.Stop()

	if _, err := os.Stat(filepath.Join(s.DataDir, "secret-encryption.key")); !os.IsNotExist(err) {
		t.Errorf("a key file was made in the data directory although one was given: %v", err)
	}
	err := filepath.WalkDir(s.DataDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if e.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
		if strings.HasPrefix(e.Name(), "metadata.db") {
			content, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(content, []byte(value)) || bytes.Contains(content, []byte(encoded)) {
				t.Errorf("%s holds the secret in plain text", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.Logs(), value) || strings.Contains(s.Logs(), encoded) {
		t.Error("the server log holds the secret")
	}
}
