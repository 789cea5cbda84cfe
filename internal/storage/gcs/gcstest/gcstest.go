// Package gcstest runs a GCS emulator for tests: fake-gcs-server over a
// temporary directory, bound to 127.0.0.1. .ci/run installs it with go
// install; without it a test skips (fails under CI). The driver reaches
// it as every Google client library reaches an emulator, through
// STORAGE_EMULATOR_HOST, which the emulator's users set.
package gcstest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"testing"

	"github.com/berth-registry/berth/internal/testtool"
)

// EmulatorHostVar is the environment variable that points Google's
// client libraries at an emulator.
const EmulatorHostVar = "STORAGE_EMULATOR_HOST"

// Emulator is a running fake-gcs-server.
type Emulator struct {
	// Endpoint is its URL, http://127.0.0.1:PORT.
	Endpoint string
	// Host is its host:port, the value of STORAGE_EMULATOR_HOST.
	Host string
	// Dir is the directory its buckets live in (they survive a restart).
	Dir string
	*testtool.Daemon
}

// Start runs an emulator for the life of t.
func Start(t testing.TB) *Emulator {
	t.Helper()
	return testtool.StartFor(t, "fake-gcs-server", start)
}

// StartMain runs an emulator for a TestMain: stop it with Stop. ok is false,
// with nothing started, when fake-gcs-server is not installed.
func StartMain(dir string) (*Emulator, bool, error) {
	return testtool.StartForMain("fake-gcs-server", dir, start)
}

func start(bin, dir string) (*Emulator, error) {
	d, err := testtool.NewDaemon("fake-gcs-server", bin, func(addr string) []string {
		_, port, _ := net.SplitHostPort(addr)
		return []string{"-scheme", "http", "-host", "127.0.0.1", "-port", port,
			"-external-url", "http://" + addr, "-public-host", addr,
			"-backend", "filesystem", "-filesystem-root", dir, "-log-level", "warn"}
	})
	if err != nil {
		return nil, err
	}
	e := &Emulator{Endpoint: "http://" + d.Addr, Host: d.Addr, Dir: dir, Daemon: d}
	return e, e.Start()
}

// Bucket is a fresh bucket name (not created: the driver creates it).
func Bucket() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "berth-test-" + hex.EncodeToString(b)
}

// Settings are the storage settings of bucket, as spec.storage.gcs.
func Settings(bucket string) map[string]any {
	return map[string]any{"bucket": bucket, "region": "us-central1", "projectID": "berth-test"}
}

// KeyFile is a service-account key file of a made-up account, with a
// fresh RSA key: what REGISTRY_STORAGE_GCS_KEYFILE holds. The emulator
// checks no credentials; the driver signs redirect URLs with the key.
func KeyFile(t testing.TB) (keyFile []byte, key *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err = json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "berth-test",
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "registry@berth-test.iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return keyFile, key
}
