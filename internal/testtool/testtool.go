// Package testtool finds the command-line tools tests drive (skopeo,
// podman, versitygw, …): a test whose tool is missing skips and names it;
// under CI=true it fails instead, so a green CI run means every test ran.
package testtool

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NodeToolsDir is where .ci/run installs the npm packages tests drive
// (npm install --prefix): their commands are in node_modules/.bin.
func NodeToolsDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "lib", "berth-tools")
}

// Path returns where tool name is installed: on PATH, in GOBIN, in
// GOPATH/bin (where go install puts it), or among the npm tools of
// NodeToolsDir.
func Path(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(goPath(), "bin"), filepath.Join(NodeToolsDir(), "node_modules", ".bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

// Require returns the path of tool name, skipping the test when it is
// absent (failing under CI).
func Require(t testing.TB, name string) string {
	t.Helper()
	if p, ok := Path(name); ok {
		return p
	}
	Missing(t, name)
	return ""
}

// Missing skips t for want of tool name, or fails it under CI.
func Missing(t testing.TB, name string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs %s, which is not installed (CI installs it in .ci/run)", name)
	}
	t.Skipf("skipping: this test needs %s, which is not installed (see .ci/run)", name)
}

func goPath() string {
	if p := os.Getenv("GOPATH"); p != "" {
		return filepath.SplitList(p)[0]
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
