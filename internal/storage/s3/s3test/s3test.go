// Package s3test runs a real S3-compatible server for tests: versitygw
// over a temporary directory, bound to 127.0.0.1. .ci/run installs it with
// go install; without it a test skips (fails under CI).
package s3test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/berth-registry/berth/internal/testtool"
)

// Credentials of every gateway.
const (
	AccessKey = "berthtestaccess"
	SecretKey = "berthtestsecret0123456789"
	Region    = "us-east-1"
)

// Gateway is a running versitygw.
type Gateway struct {
	// Endpoint is its URL, http://127.0.0.1:PORT.
	Endpoint string
	// Dir is the directory its buckets live in.
	Dir string
	*testtool.Daemon
}

// Start runs a gateway for the life of t.
func Start(t testing.TB) *Gateway {
	t.Helper()
	return testtool.StartFor(t, "versitygw", start)
}

// StartMain runs a gateway for a TestMain: stop it with Stop. ok is false,
// with nothing started, when versitygw is not installed.
func StartMain(dir string) (*Gateway, bool, error) {
	return testtool.StartForMain("versitygw", dir, start)
}

func start(bin, dir string) (*Gateway, error) {
	d, err := testtool.NewDaemon("versitygw", bin, func(addr string) []string {
		return []string{"--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", addr, "posix", dir}
	})
	if err != nil {
		return nil, err
	}
	g := &Gateway{Endpoint: "http://" + d.Addr, Dir: dir, Daemon: d}
	return g, g.Start()
}

// Bucket is a fresh bucket name (not created: the driver creates it).
func Bucket() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "berth-test-" + hex.EncodeToString(b)
}

// Settings are the storage settings of bucket on g, as spec.storage.s3.
func (g *Gateway) Settings(bucket string) map[string]any {
	return map[string]any{"bucket": bucket, "region": Region, "regionEndpoint": g.Endpoint}
}

// Credentials are g's credentials, by the user secret's keys.
func Credentials() map[string]string {
	return map[string]string{"REGISTRY_STORAGE_S3_ACCESSKEY": AccessKey, "REGISTRY_STORAGE_S3_SECRETKEY": SecretKey}
}
