// Package azuretest runs Azurite, the Azure Storage emulator, for tests:
// its blob service over a temporary directory, bound to 127.0.0.1, with
// telemetry off. .ci/run installs it with npm; without it a test skips
// (fails under CI). The driver reaches it through the service URL that
// REGISTRY_STORAGE_AZURE_SERVICEURL names.
package azuretest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"syscall"
	"testing"

	"github.com/berth-registry/berth/internal/testtool"
)

// Azurite's well-known development account.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// ServiceURLVar names the blob service URL the driver uses instead of
// the one its cloud's name gives.
const ServiceURLVar = "REGISTRY_STORAGE_AZURE_SERVICEURL"

// Emulator is a running Azurite blob service.
type Emulator struct {
	// ServiceURL is its blob service URL for the development account,
	// http://127.0.0.1:PORT/devstoreaccount1.
	ServiceURL string
	// Dir is the directory its data lives in (it survives a restart).
	Dir string
	*testtool.Daemon
}

// Start runs an emulator for the life of t.
func Start(t testing.TB) *Emulator {
	t.Helper()
	return testtool.StartFor(t, "azurite-blob", start)
}

// StartMain runs an emulator for a TestMain: stop it with Stop. ok is false,
// with nothing started, when azurite-blob is not installed.
func StartMain(dir string) (*Emulator, bool, error) {
	return testtool.StartForMain("azurite-blob", dir, start)
}

func start(bin, dir string) (*Emulator, error) {
	d, err := testtool.NewDaemon("azurite-blob", bin, func(addr string) []string {
		_, port, _ := net.SplitHostPort(addr)
		return []string{"--blobHost", "127.0.0.1", "--blobPort", port, "--location", dir,
			"--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"}
	})
	if err != nil {
		return nil, err
	}
	// Azurite saves its metadata now and then: stopped with SIGTERM, it
	// saves it and finds its containers and blobs after a restart.
	d.StopSignal = syscall.SIGTERM
	e := &Emulator{ServiceURL: "http://" + d.Addr + "/" + AccountName, Dir: dir, Daemon: d}
	return e, e.Start()
}

// Container is a fresh container name (not created: the driver creates
// it).
func Container() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "berth-test-" + hex.EncodeToString(b)
}

// Settings are the storage settings of container, as spec.storage.azure.
func Settings(container string) map[string]any {
	return map[string]any{"accountName": AccountName, "container": container}
}

// Credentials are the account's key, by the user secret's key.
func Credentials() map[string]string {
	return map[string]string{"REGISTRY_STORAGE_AZURE_ACCOUNTKEY": AccountKey}
}
