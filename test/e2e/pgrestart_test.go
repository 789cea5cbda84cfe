package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testtool"
)

// privatePostgres is a PostgreSQL server of the test's own (never the
// machine's shared one), which it may stop and start.
type privatePostgres struct {
	t          *testing.T
	bin, data  string
	port       int
	runAs      []string // runuser -u postgres -- when root (initdb refuses root)
	DSN        string
	logFile    string
	socketsDir string
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testtool.Missing(t, "PostgreSQL's server binaries (Debian's postgresql package: initdb, pg_ctl)")
	}
	p := &privatePostgres{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	root, err := os.MkdirTemp("", "berth-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	p.data, p.socketsDir, p.logFile = filepath.Join(root, "data"), filepath.Join(root, "run"), filepath.Join(root, "log")
	for _, d := range []string{p.data, p.socketsDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the test runs PostgreSQL as the user postgres (Debian's package makes it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{root, p.data, p.socketsDir} {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		p.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p.run("initdb", "-D", p.data, "-A", "trust", "-U", "postgres", "--no-sync")
	p.Start()
	t.Cleanup(func() { p.pgctl("stop", "-m", "immediate") })
	p.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?connect_timeout=5", p.port)
	return p
}

func (p *privatePostgres) run(name string, args ...string) string {
	p.t.Helper()
	argv := append(append([]string{}, p.runAs...), append([]string{filepath.Join(p.bin, name)}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = os.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func (p *privatePostgres) pgctl(args ...string) string {
	p.t.Helper()
	return p.run("pg_ctl", append([]string{"-D", p.data, "-l", p.logFile, "-w"}, args...)...)
}

// Start starts the server (again) on its port.
func (p *privatePostgres) Start() {
	p.t.Helper()
	p.pgctl("start", "-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.socketsDir))
}

// Kill stops the server as a crash would: at once, no checkpoint.
func (p *privatePostgres) Kill() {
	p.t.Helper()
	p.pgctl("stop", "-m", "immediate")
}

// PostgreSQL killed and started again under a running berth, in the
// middle of a push loop: pushes meanwhile get clean 503s (never a 500),
// and once it is back they work again, with nothing acknowledged lost and
// no restart of berth.
func TestPostgresRestart(t *testing.T) {
	pg := startPrivatePostgres(t)
	s := startServer(t, "--insecure-http", "--store", pg.DSN)
	s.newProject("team")

	type outcome struct {
		tag, digest string
		status      int // of a refusal; 0 when acknowledged
		err         error
	}
	outcomes := make(chan outcome, 1000)
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for i := range 1000 {
			select {
			case <-stop:
				return
			default:
			}
			tag := fmt.Sprintf("p%d", i)
			dgst, err := tryPushTestImage(s, "team/app", tag, tag)
			var pe *pushError
			switch {
			case err == nil:
				outcomes <- outcome{tag: tag, digest: dgst}
			case errors.As(err, &pe):
				outcomes <- outcome{tag: tag, status: pe.status}
				time.Sleep(20 * time.Millisecond)
			default:
				outcomes <- outcome{tag: tag, err: err}
			}
		}
	}()
	acked := map[string]string{}
	statuses := map[int]int{}
	collect := func(until func() bool, limit time.Duration) {
		t.Helper()
		deadline := time.After(limit)
		for !until() {
			select {
			case o := <-outcomes:
				switch {
				case o.err != nil:
					t.Errorf("push %s: %v", o.tag, o.err)
				case o.status != 0:
					statuses[o.status]++
					if o.status != http.StatusServiceUnavailable {
						t.Errorf("push %s answered %d, want 201 or 503", o.tag, o.status)
					}
				default:
					acked[o.tag] = o.digest
				}
			case <-deadline:
				t.Fatalf("timed out: %d acknowledged, refusals %v\n%s", len(acked), statuses, s.Logs())
			}
		}
	}
	collect(func() bool { return len(acked) >= 5 }, time.Minute)
	pg.Kill()
	collect(func() bool { return statuses[http.StatusServiceUnavailable] >= 5 }, time.Minute)
	ackedBefore := len(acked)
	pg.Start()
	collect(func() bool { return len(acked) >= ackedBefore+5 }, time.Minute)
	close(stop)
	<-loopDone
	close(outcomes)
	for o := range outcomes {
		if o.err == nil && o.status == 0 {
			acked[o.tag] = o.digest
		}
	}
	t.Logf("%d pushes acknowledged; refusals while PostgreSQL was down: %v", len(acked), statuses)
	for tag, dgst := range acked {
		if got := headDigest(t, s, "team/app", tag); got != dgst {
			t.Fatalf("acknowledged team/app:%s is %s after the restart, want %s", tag, got, dgst)
		}
	}
}
