package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seed's "additional trusted CA" procedure, with berth, against a
// real registry: CNCF Distribution with htpasswd users and a CA of its
// own. The import fails until the CA is trusted (the message names the
// ConfigMap key to add), needs the project's dockerconfigjson secret, and
// then records the tag, its Image (metadata from the config) and history;
// a blocked registry is refused with the rule named.
func TestImportFromDistribution(t *testing.T) {
	crane := requireTool(t, "crane")
	up := startDistribution(t)
	dir := t.TempDir()
	craneEnv := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "SSL_CERT_FILE=" + up.CAFile}
	runIn(t, dir, craneEnv, crane, "auth", "login", up.Addr, "-u", up.User, "-p", up.Password)
	var pushed []string
	for i := range 2 {
		layer, _ := tarGz(t, "f.txt", []byte(fmt.Sprintf("upstream %d\n", i)))
		if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
			t.Fatal(err)
		}
		out := runIn(t, dir, craneEnv, crane, "append", "-f", "l.tgz", "-t", up.Addr+"/lib/app:v1")
		pushed = append(pushed, digestRE.FindString(out))
	}

	s := startServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	admin.run("", "new-project", "imp")
	from := up.Addr + "/lib/app:v1"
	key := strings.ReplaceAll(up.Addr, ":", "..")

	// A registry in the cluster's own network is reached only once a
	// cluster admin allowed it: an import is no way to probe it.
	if _, errOut, err := admin.try("", "import-image", "app:v1", "--from="+from, "--confirm"); err == nil || !strings.Contains(errOut, "allowedImportDestinations") {
		t.Fatalf("import from loopback before it is allowed: %v\n%s", err, errOut)
	}
	allowLoopbackImports(t, admin)

	// Untrusted: the message says which key of which ConfigMap to add.
	out, errOut, err := admin.try("", "import-image", "app:v1", "--from="+from, "--confirm")
	if err == nil || !strings.Contains(errOut, "certificate") || !strings.Contains(errOut, key) {
		t.Fatalf("import before the CA is trusted: %v\n%s\n%s", err, out, errOut)
	}
	if got := admin.run("", "get", "is", "app", "-o", `jsonpath={.status.tags[0].conditions[0].reason}`); got == "" {
		t.Fatalf("the failed import left no condition on the tag")
	}

	// The procedure: the CA ConfigMap, then the cluster image config.
	admin.run("", "create", "configmap", "registry-config", "--from-file="+key+"="+up.CAFile, "-n", "openshift-config")
	editor := filepath.Join(dir, "editor.sh")
	script := "#!/bin/sh\nsed -i 's/^spec: {}$/spec:\\n  additionalTrustedCA:\\n    name: registry-config/' \"$1\"\n"
	if err := os.WriteFile(editor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	admin.env = []string{"EDITOR=" + editor}
	admin.run("", "edit", "image.config.openshift.io", "cluster")
	admin.env = nil

	// Trusted but no credentials: the upstream's 401.
	if _, errOut, err := admin.try("", "import-image", "app:v1", "--from="+from, "--confirm"); err == nil || !strings.Contains(errOut, "Unauthorized") && !strings.Contains(strings.ToLower(errOut), "unauthorized") {
		t.Fatalf("import without credentials: %v\n%s", err, errOut)
	}
	admin.run("", "create", "secret", "docker-registry", "upstream", "--docker-server="+up.Addr,
		"--docker-username="+up.User, "--docker-password="+up.Password)
	out = admin.run("", "import-image", "app:v1", "--from="+from, "--confirm")
	if !strings.Contains(out, pushed[1]) || !strings.Contains(out, "1 of 1 images imported") {
		t.Fatalf("import: %s", out)
	}
	if got := admin.run("", "get", "istag", "app:v1", "-o", "jsonpath={.image.metadata.name}"); got != pushed[1] {
		t.Fatalf("app:v1 = %s, want %s", got, pushed[1])
	}
	if got := admin.run("", "get", "is", "app", "-o", "jsonpath={.status.tags[0].items[0].dockerImageReference}"); got != up.Addr+"/lib/app@"+pushed[1] {
		t.Fatalf("the entry refers to %q, want the upstream image", got)
	}
	if conds := admin.run("", "get", "is", "app", "-o", "jsonpath={.status.tags[0].conditions}"); conds != "" {
		t.Fatalf("the success left conditions: %s", conds)
	}
	// The Image has the config's metadata: the config blob was fetched.
	if arch := admin.run("", "get", "image", pushed[1], "-o", "jsonpath={.dockerImageMetadata.Id}"); arch == "" {
		t.Fatalf("the imported Image has no metadata: %s\n%s", admin.run("", "get", "image", pushed[1], "-o", "yaml"), s.Logs())
	}
	// The manifest is served here; the tag's spec says where it comes from.
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/imp/app/manifests/v1", manifestAccept)
	if st != http.StatusOK || !strings.Contains(string(body), "layers") {
		t.Fatalf("GET the imported manifest = %d %s", st, body)
	}
	if got := admin.run("", "get", "is", "app", "-o", "jsonpath={.spec.tags[0].from.name}"); got != from {
		t.Fatalf("spec tag from = %q", got)
	}
	// Again, unchanged upstream: no new history entry.
	admin.run("", "import-image", "app:v1")
	if n := strings.Fields(admin.run("", "get", "is", "app", "-o", `jsonpath={range .status.tags[0].items[*]}{.image} {end}`)); len(n) != 1 {
		t.Fatalf("an unchanged import added history: %v", n)
	}

	// --all takes every tag of the repository.
	runIn(t, dir, craneEnv, crane, "tag", from, "v2")
	out = admin.run("", "import-image", "mirror", "--from="+up.Addr+"/lib/app", "--all", "--confirm")
	if !strings.Contains(out, "2 of 2 images imported") {
		t.Fatalf("import --all: %s", out)
	}

	// A blocked registry is refused, naming the rule.
	admin.run("", "patch", "image.config.openshift.io/cluster", "--type=merge", "-p",
		`{"spec":{"registrySources":{"blockedRegistries":["`+up.Addr+`"]}}}`)
	_, errOut, err = admin.try("", "import-image", "app:v1")
	if err == nil || !strings.Contains(errOut, "blockedRegistries") {
		t.Fatalf("import from a blocked registry: %v\n%s", err, errOut)
	}
}
