// Package s3test runs a real S3-compatible server for tests: versitygw
// over a temporary directory, bound to 127.0.0.1. .ci/run installs it with
// go install; without it a test skips (fails under CI).
package s3test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

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

	bin  string
	addr string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// Start runs a gateway for the life of t.
func Start(t testing.TB) *Gateway {
	t.Helper()
	bin := testtool.Require(t, "versitygw")
	g := &Gateway{bin: bin, Dir: t.TempDir()}
	if err := g.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return g
}

// StartMain runs a gateway for a TestMain: stop it with Stop. ok is false,
// with nothing started, when versitygw is not installed.
func StartMain(dir string) (g *Gateway, ok bool, err error) {
	bin, found := testtool.Path("versitygw")
	if !found {
		return nil, false, nil
	}
	g = &Gateway{bin: bin, Dir: dir}
	return g, true, g.start()
}

func (g *Gateway) start() error {
	if g.addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		g.addr = l.Addr().String()
		l.Close()
		g.Endpoint = "http://" + g.addr
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.logs = &bytes.Buffer{}
	cmd := exec.Command(g.bin, "--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", g.addr, "posix", g.Dir)
	cmd.Stdout, cmd.Stderr = g.logs, g.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	g.cmd = cmd
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", g.addr, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fmt.Errorf("versitygw did not listen on %s: %s", g.addr, g.logs)
}

// Stop kills the gateway (its buckets stay in Dir).
func (g *Gateway) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Kill()
	_ = g.cmd.Wait()
	g.cmd = nil
}

// Restart starts a stopped gateway again on the same address and
// directory.
func (g *Gateway) Restart() error {
	g.Stop()
	return g.start()
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
