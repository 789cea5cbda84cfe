package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
)

// scraperRole is the reference's ClusterRole for reading the registry's
// metrics, as its procedure pipes it to `oc create -f -`.
const scraperRole = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: prometheus-scraper
rules:
- apiGroups:
  - image.openshift.io
  resources:
  - registry/metrics
  verbs:
  - get
`

// The reference's "Cluster role" procedure with berth for oc: create the
// role from standard input, then grant it; both with the CLI's verbs.
func TestCustomClusterRoleProcedure(t *testing.T) {
	e := newBerthEnv(t)
	e.login("admin", apiservertest.AdminPassword)
	e.login("bob", "bob-pw")

	if _, _, err := e.withStdin(scraperRole, "bob", "create", "-f", "-"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("bob creates a ClusterRole: %v", err)
	}
	out, errOut, err := e.withStdin(scraperRole, "admin", "create", "-f", "-")
	if err != nil || out != "clusterrole.rbac.authorization.k8s.io/prometheus-scraper created\n" {
		t.Fatalf("create -f -: %v %q %s", err, out, errOut)
	}
	if out := e.ok("admin", "adm", "policy", "add-cluster-role-to-user", "prometheus-scraper", "alice"); out != `clusterrole.rbac.authorization.k8s.io/prometheus-scraper added: "alice"`+"\n" {
		t.Fatalf("add-cluster-role-to-user = %q", out)
	}
	if out := e.ok("admin", "get", "clusterrolebindings", "prometheus-scraper", "-o", "wide"); !strings.Contains(out, "ClusterRole/prometheus-scraper") || !strings.Contains(out, "alice") {
		t.Fatalf("the binding:\n%s", out)
	}
	out = e.ok("admin", "get", "clusterroles")
	for _, want := range []string{"prometheus-scraper", "cluster-admin", "registry-viewer"} {
		if !strings.Contains(out, want) {
			t.Errorf("get clusterroles does not list %s:\n%s", want, out)
		}
	}
	e.fails("admin", "built into Berth", "delete", "clusterrole", "registry-viewer")
	e.fails("admin", `Not found: "prometheus-scrapper"`, "adm", "policy", "add-cluster-role-to-user", "prometheus-scrapper", "alice")
	if out := e.ok("admin", "delete", "clusterrole", "prometheus-scraper"); out != `clusterrole.rbac.authorization.k8s.io "prometheus-scraper" deleted`+"\n" {
		t.Fatalf("delete clusterrole = %q", out)
	}
}

// withStdin runs berth as user with stdin on the process's standard input,
// where kubectl's `-f -` reads it.
func (e *berthEnv) withStdin(stdin, user string, args ...string) (string, string, error) {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "stdin")
	if err := os.WriteFile(path, []byte(stdin), 0o600); err != nil {
		e.t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = saved }()
	return e.as(user, stdin, args...)
}
