// Package e2e drives a real berth binary with real clients (the OCI
// conformance suite, skopeo, podman, buildah, crane, oras) over loopback.
// A test whose tool is missing skips and names the tool; under CI=true a
// missing tool fails the test instead, so a green CI run means every test ran.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testtool"
)

var berthBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	berthBin = filepath.Join(dir, "berth")
	build := exec.Command("go", "build", "-o", berthBin, "github.com/berth-registry/berth/cmd/berth")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build berth:", err)
		return 1
	}
	return m.Run()
}

// requireTool returns the path of a command-line tool, skipping the test
// when it is absent (failing under CI).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	return testtool.Require(t, name)
}

// server is a running berth process.
type server struct {
	t       testing.TB
	Addr    string // host:port
	URL     string // scheme://host:port
	DataDir string
	TLS     bool
	args    []string
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
}

// startServer runs `berth serve` on a free loopback port with a fresh data
// directory. args are extra flags (e.g. --insecure-http).
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	return startServerIn(t, t.TempDir(), args...)
}

// startServerIn is startServer with the data directory dir, which
// instances sharing a --store may share.
func startServerIn(t testing.TB, dir string, args ...string) *server {
	t.Helper()
	s := &server{t: t, DataDir: dir, args: args, TLS: !slices.Contains(args, "--insecure-http")}
	s.start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("berth log:\n%s", s.logs.String())
		}
	})
	return s
}

var servingLine = regexp.MustCompile(`msg="berth serving" url=(https?)://([^ ]+)`)

// start launches the process, reusing Addr when it is known (a restart).
func (s *server) start() {
	s.t.Helper()
	listen := "127.0.0.1:0"
	if s.Addr != "" {
		listen = s.Addr
	}
	args := append([]string{"serve", "--listen", listen, "--data", s.DataDir}, s.args...)
	cmd := exec.Command(berthBin, args...)
	cmd.Env = append(os.Environ(), "BERTH_ADMIN_PASSWORD="+adminPassword)
	s.cmd = cmd
	if s.logs == nil {
		s.logs = &syncBuffer{} // kept across restarts
	}
	// The goroutines below outlive a killed process and must not read
	// fields a restart rewrites: they get their own copies.
	logs := s.logs
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[2]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case a := <-addr:
		s.Addr = a
	case <-done:
		s.t.Fatalf("berth exited before serving:\n%s", s.logs.String())
	case <-time.After(30 * time.Second):
		s.t.Fatalf("berth did not start within 30s:\n%s", s.logs.String())
	}
	scheme := "http"
	if s.TLS {
		scheme = "https"
	}
	s.URL = scheme + "://" + s.Addr
}

// CAFile is the CA clients must trust for a TLS server.
func (s *server) CAFile() string { return filepath.Join(s.DataDir, "pki", "ca.crt") }

// CertDir is a directory holding only the CA, in the layout podman,
// skopeo and buildah read with --cert-dir.
func (s *server) CertDir() string {
	dir := filepath.Join(s.t.TempDir(), "certs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	b, err := os.ReadFile(s.CAFile())
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return dir
}

// adminPassword is the password of the server's "admin" (cluster-admin).
const adminPassword = "e2e-admin-Pa55word"

// Client is an HTTP client that trusts the server's CA and sends the
// administrator's credentials on requests that carry none.
func (s *server) Client() *http.Client {
	c := s.AnonymousClient()
	c.Transport = basicAuth{next: c.Transport, user: "admin", password: adminPassword}
	return c
}

// ClientAs is like Client with another user's credentials.
func (s *server) ClientAs(user, password string) *http.Client {
	c := s.AnonymousClient()
	c.Transport = basicAuth{next: c.Transport, user: user, password: password}
	return c
}

type basicAuth struct {
	next           http.RoundTripper
	user, password string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.user, b.password)
	}
	return b.next.RoundTrip(r)
}

// AnonymousClient is an HTTP client that trusts the server's CA and sends
// no credentials.
func (s *server) AnonymousClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.TLS {
		pool := x509.NewCertPool()
		b, err := os.ReadFile(s.CAFile())
		if err != nil {
			s.t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// Stop sends SIGTERM and waits for a graceful exit.
func (s *server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Kill sends SIGKILL: no chance to flush or clean up.
func (s *server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same address and data.
func (s *server) Restart() { s.start() }

// Logs returns everything the server wrote so far.
func (s *server) Logs() string { return s.logs.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	b.b.WriteString(s)
	b.mu.Unlock()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestHarnessServes(t *testing.T) {
	for _, args := range [][]string{nil, {"--insecure-http"}} {
		s := startServer(t, args...)
		resp, err := s.Client().Get(s.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Fatalf("GET /v2/ over %s = %d %v", s.URL, resp.StatusCode, resp.Header)
		}
	}
}
