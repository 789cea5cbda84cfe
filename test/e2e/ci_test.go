package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// .ci/run stops before anything else when a kubectl the tests run is
// missing, naming the files and where they come from: its check names
// the same directory and versions as the tests, and fails or passes on
// what the directory holds.
func TestCIChecksKubectlBinaries(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	check := regexp.MustCompile(`(?ms)^kubectl_dir=(\S+)\n.*?^fi\n`).FindStringSubmatch(script)
	if check == nil {
		t.Fatal(".ci/run does not check the kubectl binaries (no kubectl_dir=DIR … fi block)")
	}
	if check[1] != kubectlDir {
		t.Errorf(".ci/run checks %s; the tests run kubectl from %s", check[1], kubectlDir)
	}
	if strings.Index(script, check[0]) > strings.Index(script, "apt-get") {
		t.Error(".ci/run checks the kubectl binaries after installing packages, not up front")
	}
	versions := regexp.MustCompile(`kubectl_versions="([^"]*)"`).FindStringSubmatch(check[0])
	if versions == nil {
		t.Fatalf(".ci/run names no kubectl_versions in its check:\n%s", check[0])
	}
	got, want := strings.Fields(versions[1]), slices.Clone(kubectlVersions)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf(".ci/run checks kubectl %v; the tests run %v", got, want)
	}

	// The check itself, against a directory of our own.
	dir := t.TempDir()
	block := strings.Replace(check[0], "kubectl_dir="+check[1], "kubectl_dir="+dir, 1)
	runCheck := func() (string, error) {
		out, err := exec.Command("bash", "-euo", "pipefail", "-c", block).CombinedOutput()
		return string(out), err
	}
	out, err := runCheck()
	if err == nil {
		t.Fatalf("the check passed with no kubectl in %s:\n%s", dir, out)
	}
	for _, v := range kubectlVersions {
		if !strings.Contains(out, filepath.Join(dir, "kubectl."+v)) {
			t.Errorf("the check does not name kubectl.%s:\n%s", v, out)
		}
	}
	if !strings.Contains(out, "Google Cloud SDK") {
		t.Errorf("the check does not say where the files come from:\n%s", out)
	}
	for _, v := range kubectlVersions {
		if err := os.WriteFile(filepath.Join(dir, "kubectl."+v), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runCheck(); err != nil {
		t.Fatalf("the check failed with every kubectl in place: %v\n%s", err, out)
	}
}
