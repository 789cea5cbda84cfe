package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/berth-registry/berth/internal/store/pgtest"
)

// TestScaleOutWalkthrough runs the first block of docs/SCALE-OUT.md's
// step-by-step section as a user would, as TestQuickstart runs README.md's:
// three instances on one PostgreSQL database and one data directory, a
// push to one and a pull from another. What changes is only what must:
// the database is a new one on the test's server (dropped afterwards),
// the binary is the one under test, and the ports are free ones.
func TestScaleOutWalkthrough(t *testing.T) {
	bash := requireTool(t, "bash")
	var path []string
	for _, tool := range []string{"podman", "curl", "tar", "psql", "createdb"} {
		path = append(path, filepath.Dir(requireTool(t, tool)))
	}
	base := os.Getenv(pgtest.EnvDSN)
	if base == "" {
		pgtest.DSN(t) // skips, or fails under CI
	}
	server, err := url.Parse(base)
	if err != nil || server.Scheme != "postgres" {
		t.Fatalf("%s must be a postgres:// URL for this test, not %q", pgtest.EnvDSN, base)
	}
	b := make([]byte, 4)
	rand.Read(b)
	db := "berth_walk_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = admin.ExecContext(context.Background(), `DROP DATABASE IF EXISTS `+db+` WITH (FORCE)`)
			admin.Close()
		}
	})
	dsn := *server
	dsn.Path = "/" + db

	cmds := readQuickstart(t, filepath.Join("..", "..", "docs", "SCALE-OUT.md"), "## Step by step: three instances on one machine")
	var ports []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		ln.Close()
	}
	replaced := map[string]string{
		"createdb -h 127.0.0.1 -U postgres berth":                         "createdb -h " + server.Hostname() + " -p " + server.Port() + " -U " + server.User.Username() + " " + db,
		"export BERTH_STORE_DSN=postgres://postgres@127.0.0.1:5432/berth": "export BERTH_STORE_DSN=" + shellQuote(dsn.String()),
		"go build -o berth ./cmd/berth":                                   "cp " + shellQuote(berthBin) + " berth",
	}
	run := substitute(t, "docs/SCALE-OUT.md's walkthrough", cmds, replaced, func(cmd string) string {
		cmd = strings.ReplaceAll(cmd, "5001 5002 5003", strings.Join(ports, " "))
		for j, p := range []string{"5001", "5002", "5003"} {
			cmd = strings.ReplaceAll(cmd, "localhost:"+p, "localhost:"+ports[j])
		}
		return cmd
	})
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	sh := startQuickstartShell(t, bash, work, quickstartEnv(t, dir, path))
	pulled := false
	for i, c := range cmds {
		out, err := sh.run(run[i], 3*time.Minute)
		if err != nil {
			t.Fatalf("docs/SCALE-OUT.md:%d: %s\n%v\noutput:\n%s", c.line, c.text, err, tail(out, 6000))
		}
		if strings.Contains(c.text, "berth get pods") && strings.Count(out, "1/1") != 3 {
			t.Errorf("docs/SCALE-OUT.md:%d: three ready pods expected:\n%s", c.line, out)
		}
		pulled = pulled || strings.HasPrefix(c.text, "podman pull")
	}
	if !pulled {
		t.Fatal("the walkthrough pulled nothing")
	}
	t.Logf("docs/SCALE-OUT.md's walkthrough: %d commands, all ran", len(cmds))
}
