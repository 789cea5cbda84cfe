//go:build unix

package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// withUmask sets the process umask for the test (no test here runs in
// parallel, so nothing else creates files meanwhile).
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// tlsAdmin is a client of a TLS server on dir that trusts its CA and
// authenticates with the generated administrator password.
func tlsAdmin(t *testing.T, dir string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in ca.crt")
	}
	password, err := os.ReadFile(filepath.Join(dir, AdminPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: basicAuthVia{transport, "admin", strings.TrimSpace(string(password))}}
}

type basicAuthVia struct {
	next           http.RoundTripper
	user, password string
}

func (b basicAuthVia) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.password)
	return b.next.RoundTrip(r)
}

// modes returns every path under dir (dir included) with its permission
// bits, relative to dir.
func modes(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = st.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkPrivate fails the test for every file under dir that is not 0600
// and every directory that is not 0700.
func checkPrivate(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	all := modes(t, dir)
	for p, m := range all {
		want := fs.FileMode(0o600)
		if m.IsDir() {
			want = 0o700
		}
		if m.Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, m.Perm(), want)
		}
	}
	return all
}

// A data directory created by hand with mode 0755, and the usual umask
// of 022: everything Berth keeps there is its user's alone.
func TestDataDirIsPrivate(t *testing.T) {
	withUmask(t, 0o022)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := serve(t, Config{DataDir: dir})
	// Files created after the start-up check are private by themselves.
	r.logs.waitFor(t, checkedModes, 20*time.Second)
	client := tlsAdmin(t, dir)
	content := []byte("a layer")
	resp, err := client.Post(r.url+"/v2/team/app/blobs/uploads/?digest="+digest.FromBytes(content).String(), "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push = %d", resp.StatusCode)
	}
	resp, err = client.Post(r.url+"/v2/team/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("PATCH", r.url+resp.Header.Get("Location"), strings.NewReader("half a layer"))
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH = %v, %v", resp, err)
	}

	all := checkPrivate(t, dir)
	hex := digest.FromBytes(content).Encoded()
	for _, want := range []string{
		".", "metadata.db", "metadata.db-wal", "metadata.db-shm", ".lock", AdminPasswordFile, SecretKeyFile,
		"pki", "pki/ca.crt", "pki/ca.key", "pki/tls.crt", "pki/tls.key",
		"storage/blobs/sha256/" + hex[:2] + "/" + hex, "storage/uploads",
	} {
		if _, ok := all[want]; !ok {
			t.Errorf("%s is missing", want)
		}
	}
	uploads := 0
	for p := range all {
		if strings.HasPrefix(p, "storage/uploads/") {
			uploads++
		}
	}
	if uploads != 1 {
		t.Errorf("%d files in storage/uploads, want the open upload", uploads)
	}
}

// A data directory written by an earlier version (files 0644, directories
// 0755) is made private at the next start, with one warning that says how
// many and which; the operator's own files there, and what symbolic links
// point to, keep their modes.
func TestStartMakesOldFilesPrivate(t *testing.T) {
	withUmask(t, 0o022)
	dir := filepath.Join(t.TempDir(), "data")
	r := serve(t, Config{DataDir: dir})
	client := tlsAdmin(t, dir)
	content := []byte("a layer")
	resp, err := client.Post(r.url+"/v2/team/app/blobs/uploads/?digest="+digest.FromBytes(content).String(), "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push = %d", resp.StatusCode)
	}
	r.shutdown(t)
	// A named volume (spec.storage.pvc.claim) is Berth's too.
	if err := os.MkdirAll(filepath.Join(dir, "volumes", "second", "uploads"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "volumes", "second", "uploads", "abc"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// As an earlier version left it.
	loosened := 0
	for p, m := range modes(t, dir) {
		loose := fs.FileMode(0o644)
		if m.IsDir() {
			loose = 0o755
		}
		if err := os.Chmod(filepath.Join(dir, p), loose); err != nil {
			t.Fatal(err)
		}
		loosened++
	}
	outside := filepath.Join(t.TempDir(), "elsewhere")
	mine := map[string]fs.FileMode{"notes.txt": 0o644, "backups": fs.ModeDir | 0o755, "storage/blobs/link": fs.ModeSymlink}
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "backups"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "storage/blobs/link")); err != nil {
		t.Fatal(err)
	}

	r = serve(t, Config{DataDir: dir})
	r.logs.waitFor(t, checkedModes, 20*time.Second)
	for p, m := range modes(t, dir) {
		if want, ok := mine[p]; ok {
			if m.Type() != want.Type() || (m.Type() != fs.ModeSymlink && m.Perm() != want.Perm()) {
				t.Errorf("%s (not berth's): mode %v, want %v", p, m, want)
			}
			continue
		}
		want := fs.FileMode(0o600)
		if m.IsDir() {
			want = 0o700
		}
		if m.Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, m.Perm(), want)
		}
	}
	if st, err := os.Stat(outside); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("the target of a symbolic link changed: %v, %v", st.Mode(), err)
	}
	warnings := privateWarnings(t, r.logs.String())
	if len(warnings) != 1 {
		t.Fatalf("%d warnings about modes, want 1:\n%s", len(warnings), r.logs.String())
	}
	w := warnings[0]
	if w.Level != "WARN" || w.Count != loosened || len(w.Examples) != 3 || !w.Complete {
		t.Errorf("warning = %+v, want level WARN, count %d, 3 examples, complete", w, loosened)
	}
	for _, ex := range w.Examples {
		if !strings.HasPrefix(ex, dir) {
			t.Errorf("example %q is not a path in the data directory", ex)
		}
	}
	r.shutdown(t)

	// Nothing left to change: no warning.
	r = serve(t, Config{DataDir: dir})
	if warnings := privateWarnings(t, r.logs.waitFor(t, checkedModes, 20*time.Second)); len(warnings) != 0 {
		t.Fatalf("a start with nothing to change warned: %+v", warnings)
	}
}

// checkedModes ends the start-up check of the data directory's modes.
const checkedModes = `"msg":"checked the modes of the data directory"`

type modeWarning struct {
	Level    string   `json:"level"`
	Msg      string   `json:"msg"`
	Count    int      `json:"count"`
	Examples []string `json:"examples"`
	Complete bool     `json:"complete"`
}

func privateWarnings(t *testing.T, logs string) []modeWarning {
	t.Helper()
	var out []modeWarning
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "made files of the data directory private") {
			continue
		}
		var w modeWarning
		if err := json.Unmarshal([]byte(line), &w); err != nil {
			t.Fatal(err)
		}
		out = append(out, w)
	}
	return out
}
