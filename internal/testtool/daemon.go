package testtool

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Daemon is a server a test runs (an S3 gateway, a GCS emulator) on a
// port of 127.0.0.1 it keeps across restarts.
type Daemon struct {
	// Addr is its host:port.
	Addr string

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
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	d.cmd = nil
}

// Restart starts it again on the same address.
func (d *Daemon) Restart() error {
	d.Stop()
	return d.Start()
}
