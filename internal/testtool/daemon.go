package testtool

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Daemon is a server a test runs (an S3 gateway, a GCS emulator) on a
// port of 127.0.0.1 it keeps across restarts.
type Daemon struct {
	// Addr is its host:port.
	Addr string
	// StopSignal, when set, is how Stop ends it (a server that must save
	// its state to find it after a restart), SIGKILL after 10 seconds;
	// unset, Stop kills it.
	StopSignal os.Signal

	name string
	bin  string
	args func(addr string) []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *bytes.Buffer
}

// NewDaemon is a daemon that runs bin with args(addr) on a free port of
// 127.0.0.1; name names it in errors.
func NewDaemon(name, bin string, args func(addr string) []string) (*Daemon, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	return &Daemon{Addr: addr, name: name, bin: bin, args: args}, nil
}

// Start runs it and waits until it listens. It dies with the test
// process.
func (d *Daemon) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logs = &bytes.Buffer{}
	cmd := exec.Command(d.bin, d.args(d.Addr)...)
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	d.cmd = cmd
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", d.Addr, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	d.cmd = nil
	return fmt.Errorf("%s did not listen on %s: %s", d.name, d.Addr, d.logs)
}

// Stop kills it.
func (d *Daemon) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	if d.StopSignal != nil && d.cmd.Process.Signal(d.StopSignal) == nil {
		done := make(chan struct{})
		t := time.AfterFunc(10*time.Second, func() { _ = d.cmd.Process.Kill() })
		go func() { _ = d.cmd.Wait(); close(done) }()
		<-done
		t.Stop()
		d.cmd = nil
		return
	}
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	d.cmd = nil
}

// Restart starts it again on the same address.
func (d *Daemon) Restart() error {
	d.Stop()
	return d.Start()
}

// StartFor runs a test server for the life of t with start, given the
// path of tool (the test skips, or fails under CI, when it is missing)
// and a fresh directory.
func StartFor[T interface{ Stop() }](t testing.TB, tool string, start func(bin, dir string) (T, error)) T {
	t.Helper()
	bin := Require(t, tool)
	s, err := start(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartForMain runs a test server for a TestMain with start, in dir: stop
// it with Stop. ok is false, with nothing started, when tool is not
// installed.
func StartForMain[T any](tool, dir string, start func(bin, dir string) (T, error)) (s T, ok bool, err error) {
	bin, found := Path(tool)
	if !found {
		return s, false, nil
	}
	s, err = start(bin, dir)
	return s, true, err
}
