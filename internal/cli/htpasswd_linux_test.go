package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns both ends of a new pseudo-terminal.
func openPTY(t *testing.T) (controller, terminal *os.File) {
	t.Helper()
	controller, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { controller.Close() })
	fd := int(controller.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	terminal, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { terminal.Close() })
	return controller, terminal
}

// On a terminal the password is asked for twice, without echo.
func TestAdmHtpasswdAsksOnATerminal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	run := func(typed string, args ...string) (string, error) {
		controller, terminal := openPTY(t)
		// What the terminal echoes is read away so that it never fills up,
		// until the terminal end is closed.
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, controller)
		}()
		if _, err := controller.WriteString(typed); err != nil {
			t.Fatal(err)
		}
		t.Setenv("BERTH_CONFIG", filepath.Join(t.TempDir(), "config"))
		root := NewRoot()
		var out bytes.Buffer
		root.SetArgs(append([]string{"adm", "htpasswd"}, args...))
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(terminal)
		err := root.ExecuteContext(context.Background())
		terminal.Close()
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			t.Fatal("the pseudo-terminal did not close")
		}
		return out.String(), err
	}
	out, err := run("s3cret\ns3cret\n", path, "alice")
	if err != nil || !strings.Contains(out, "New password: \nRe-type new password: \nAdding password for user alice") {
		t.Fatalf("asked on a terminal: %v\n%s", err, out)
	}
	checkLogins(t, path, map[[2]string]bool{{"alice", "s3cret"}: true, {"alice", "other"}: false})
	if out, err := run("one\ntwo\n", path, "alice"); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("two different passwords: %v\n%s", err, out)
	}
	checkLogins(t, path, map[[2]string]bool{{"alice", "s3cret"}: true, {"alice", "one"}: false})
}
