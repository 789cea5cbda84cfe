package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/pki"
)

// TestBerthReferenceProcedures runs the reference documentation's
// procedures as written, with berth in place of the platform's CLI, and
// checks what each left behind.
func TestBerthReferenceProcedures(t *testing.T) {
	s := startServer(t, "--htpasswd", writeHtpasswd(t, map[string]string{"bob": "bob-Pa55"}))
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	dir := t.TempDir()

	// "Exposing the registry": enable the default route, in both of the
	// spellings the documentation uses.
	out := admin.run("", "patch", "configs.imageregistry.operator.openshift.io/cluster", "--type", "merge", "-p", `{"spec":{"defaultRoute":true}}`)
	if out != "config.imageregistry.operator.openshift.io/cluster patched\n" {
		t.Fatalf("patch defaultRoute: %q", out)
	}
	if got := admin.run("", "get", "configs.imageregistry.operator.openshift.io", "cluster", "-o", "jsonpath={.spec.defaultRoute}"); got != "true" {
		t.Fatalf("defaultRoute after the patch = %q", got)
	}
	out = admin.run("", "patch", "configs.imageregistry.operator.openshift.io/cluster", "--patch", `{"spec":{"defaultRoute":true}}`, "--type=merge")
	if out != "config.imageregistry.operator.openshift.io/cluster patched (no change)\n" {
		t.Fatalf("the same patch again: %q", out)
	}

	// "Configuring additional trust stores": the CA ConfigMap, then edit
	// the cluster image settings with a scripted $EDITOR.
	ca, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	out = admin.run("", "create", "configmap", "registry-config", "--from-file=myregistry.corp.com..5000="+caFile, "-n", "openshift-config")
	if out != "configmap/registry-config created\n" {
		t.Fatalf("create the CA configmap: %q", out)
	}
	got := admin.run("", "get", "configmap", "registry-config", "-n", "openshift-config", "-o", `jsonpath={.data.myregistry\.corp\.com\.\.5000}`)
	if got != string(ca) {
		t.Fatalf("the CA in the configmap:\n%s\nwant:\n%s", got, ca)
	}
	editor := filepath.Join(dir, "editor.sh")
	script := "#!/bin/sh\nsed -i 's/^spec: {}$/spec:\\n  additionalTrustedCA:\\n    name: registry-config/' \"$1\"\n"
	if err := os.WriteFile(editor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	admin.env = []string{"EDITOR=" + editor}
	out = admin.run("", "edit", "image.config.openshift.io", "cluster")
	admin.env = nil
	if out != "image.config.openshift.io/cluster edited\n" {
		t.Fatalf("edit image.config.openshift.io cluster: %q", out)
	}
	if got := admin.run("", "get", "image.config.openshift.io", "cluster", "-o", "jsonpath={.spec.additionalTrustedCA.name}"); got != "registry-config" {
		t.Fatalf("additionalTrustedCA after the edit = %q", got)
	}

	// "Configuring registry storage": the user secret, both forms.
	keyFile := filepath.Join(dir, "value1")
	if err := os.WriteFile(keyFile, []byte("file-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = admin.run("", "create", "secret", "generic", "image-registry-private-configuration-user",
		"--from-literal=REGISTRY_STORAGE_S3_ACCESSKEY=myaccesskey", "--from-literal=REGISTRY_STORAGE_S3_SECRETKEY=mysecretkey",
		"--from-file=KEY1="+keyFile, "--namespace", "openshift-image-registry")
	if out != "secret/image-registry-private-configuration-user created\n" {
		t.Fatalf("create the user secret: %q", out)
	}
	data := admin.run("", "get", "secret", "image-registry-private-configuration-user", "-n", "openshift-image-registry",
		"-o", "go-template={{range $k, $v := .data}}{{$k}}={{$v}} {{end}}")
	for k, v := range map[string]string{"REGISTRY_STORAGE_S3_ACCESSKEY": "myaccesskey", "REGISTRY_STORAGE_S3_SECRETKEY": "mysecretkey", "KEY1": "file-value"} {
		if !strings.Contains(data, k+"="+base64.StdEncoding.EncodeToString([]byte(v))+" ") {
			t.Errorf("secret key %s: %s", k, data)
		}
	}

	// "Exposing the registry with a custom route": a TLS secret.
	certs := filepath.Join(dir, "route")
	if _, err := pki.Ensure(certs, []string{"myregistry.mycorp.organization"}); err != nil {
		t.Fatal(err)
	}
	admin.run("", "new-project", "image-registry")
	out = admin.run("", "create", "secret", "tls", "public-route-tls", "-n", "image-registry",
		"--cert="+filepath.Join(certs, "tls.crt"), "--key="+filepath.Join(certs, "tls.key"))
	if out != "secret/public-route-tls created\n" {
		t.Fatalf("create secret tls: %q", out)
	}
	if typ := admin.run("", "get", "secret", "public-route-tls", "-n", "image-registry", "-o", "jsonpath={.type}"); typ != "kubernetes.io/tls" {
		t.Errorf("TLS secret type = %q", typ)
	}

	// Nobody else may read or change the cluster's settings.
	bob := newBerthCLI(t)
	if _, errOut, err := bob.try("", "get", "configs.imageregistry.operator.openshift.io", "cluster"); err == nil || !strings.Contains(errOut, "not logged in") {
		t.Errorf("get without a login: %v %s", err, errOut)
	}
	bob.run("bob-Pa55\n", "login", s.URL, "-u", "bob", "--certificate-authority", s.CAFile())
	for _, args := range [][]string{
		{"patch", "configs.imageregistry.operator.openshift.io/cluster", "--type", "merge", "-p", `{"spec":{"readOnly":true}}`},
		{"get", "secret", "image-registry-private-configuration-user", "-n", "openshift-image-registry"},
		{"create", "configmap", "mine", "--from-literal=a=b", "-n", "openshift-config"},
	} {
		if _, errOut, err := bob.try("", args...); err == nil || !strings.Contains(strings.ToLower(errOut), "forbidden") {
			t.Errorf("bob: berth %s: %v %s", strings.Join(args, " "), err, errOut)
		}
	}
	if got := admin.run("", "get", "configs.imageregistry.operator.openshift.io", "cluster", "-o", "jsonpath={.spec.readOnly}"); got != "" {
		t.Errorf("bob's refused patch set readOnly = %q", got)
	}
}

// TestBerthGenericVerbs drives berth's kubectl verbs on configmaps and
// image streams: get in every output, apply (create, update, unchanged),
// create -f, label, annotate, describe, delete, get -w seeing a push, and
// errors for bad input that change nothing.
func TestBerthGenericVerbs(t *testing.T) {
	crane := requireTool(t, "crane")
	s := startServer(t)
	c := newBerthCLI(t)
	c.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	c.run("", "new-project", "verbs")
	dir := t.TempDir()

	manifest := filepath.Join(dir, "app.yaml")
	write := func(level string) {
		t.Helper()
		y := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  labels:\n    tier: web\ndata:\n  level: %q\n", level)
		if err := os.WriteFile(manifest, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1")
	if out := c.run("", "apply", "-f", manifest); out != "configmap/app created\n" {
		t.Fatalf("apply (create): %q", out)
	}
	write("2")
	if out := c.run("", "apply", "-f", manifest); out != "configmap/app configured\n" {
		t.Fatalf("apply (update): %q", out)
	}
	if out := c.run("", "apply", "-f", manifest); out != "configmap/app unchanged\n" {
		t.Fatalf("apply (same file): %q", out)
	}
	if got := c.run("", "get", "cm", "app", "-o", "jsonpath={.data.level}"); got != "2" {
		t.Fatalf("level after apply = %q", got)
	}
	if out := c.run(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"piped"},"data":{"a":"b"}}`, "create", "-f", "-"); out != "configmap/piped created\n" {
		t.Fatalf("create -f -: %q", out)
	}

	// get: table, -o wide, yaml, json, name, jsonpath, template, selector.
	table := c.run("", "get", "configmaps")
	if h := tableHeader(table); strings.Join(h, " ") != "NAME DATA AGE" || !tableRow(table, "app", "1") || !tableRow(table, "piped", "1") {
		t.Fatalf("get configmaps:\n%s", table)
	}
	if y := c.run("", "get", "cm", "app", "-o", "yaml"); !strings.Contains(y, "kind: ConfigMap") || !strings.Contains(y, `level: "2"`) ||
		!strings.Contains(y, "namespace: verbs") {
		t.Errorf("-o yaml:\n%s", y)
	}
	if j := c.run("", "get", "cm", "app", "-o", "json"); !strings.Contains(j, `"level": "2"`) {
		t.Errorf("-o json:\n%s", j)
	}
	if n := c.run("", "get", "cm", "-l", "tier=web", "-o", "name"); n != "configmap/app\n" {
		t.Errorf("-l tier=web -o name = %q", n)
	}
	if tp := c.run("", "get", "cm", "app", "--template={{.metadata.name}}:{{.data.level}}"); tp != "app:2" {
		t.Errorf("--template = %q", tp)
	}
	if tp := c.run("", "get", "cm", "app", "-o", "template={{.metadata.namespace}}"); tp != "verbs" {
		t.Errorf("-o template= %q", tp)
	}

	// label, annotate, merge and JSON patches.
	if out := c.run("", "label", "cm", "app", "stage=prod"); out != "configmap/app labeled\n" {
		t.Errorf("label: %q", out)
	}
	if out := c.run("", "annotate", "cm", "app", "owner=ops"); out != "configmap/app annotated\n" {
		t.Errorf("annotate: %q", out)
	}
	c.run("", "patch", "cm/app", "--type", "json", "-p", `[{"op":"replace","path":"/data/level","value":"3"}]`)
	if got := c.run("", "get", "cm", "app", "-o", "jsonpath={.metadata.labels.stage} {.metadata.annotations.owner} {.data.level}"); got != "prod ops 3" {
		t.Errorf("after label, annotate, patch: %q", got)
	}

	// Bad input: clear errors, nothing changed.
	before := c.run("", "get", "cm", "app", "-o", "jsonpath={.metadata.resourceVersion}")
	for _, bad := range []struct {
		args []string
		says string
	}{
		{[]string{"patch", "cm/app", "--type", "merge", "-p", `{"data":`}, "not valid JSON"},
		{[]string{"patch", "cm/app", "--type", "json", "-p", `[{"op":"remove","path":"/data/nothing"}]`}, "nothing"},
		{[]string{"patch", "cm/app", "--type", "merge", "-p", `{"spec":{"x":1}}`}, "unknown field"},
		{[]string{"create", "configmap", "Bad_Name", "--from-literal=a=b"}, "Invalid value"},
		{[]string{"get", "cm", "app", "-n", "nowhere"}, "not found"},
	} {
		_, errOut, err := c.try("", bad.args...)
		if err == nil || !strings.Contains(errOut, bad.says) {
			t.Errorf("berth %s: %v, stderr %q does not say %q", strings.Join(bad.args, " "), err, errOut, bad.says)
		}
	}
	if after := c.run("", "get", "cm", "app", "-o", "jsonpath={.metadata.resourceVersion}"); after != before {
		t.Errorf("refused requests changed the object: resourceVersion %s → %s", before, after)
	}

	// Pushes appear in get -w, get is, get istag and describe is.
	dockerDir := filepath.Join(dir, "docker")
	env := []string{"DOCKER_CONFIG=" + dockerDir, "SSL_CERT_FILE=" + s.CAFile()}
	runIn(t, dir, env, crane, "auth", "login", s.Addr, "-u", "admin", "-p", adminPassword)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	watchOut := &lockedBuffer{}
	watch := c.start(ctx, watchOut, "get", "is", "-w")
	defer func() { cancel(); _ = watch.Wait() }()
	var digests []string
	for i := range 3 {
		layer, _ := tarGz(t, "n.txt", []byte(fmt.Sprintf("verbs %d\n", i)))
		if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
			t.Fatal(err)
		}
		out := runIn(t, dir, env, crane, "append", "-f", "l.tgz", "-t", s.Addr+"/verbs/web:latest")
		digests = append(digests, digestRE.FindString(out))
	}
	deadline := time.Now().Add(15 * time.Second)
	for !tableRow(watchOut.String(), "web", s.Addr+"/verbs/web", "latest") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !tableRow(watchOut.String(), "web", s.Addr+"/verbs/web", "latest") {
		t.Errorf("get is -w did not show the push:\n%s", watchOut.String())
	}
	if table := c.run("", "get", "istag"); !tableRow(table, "web:latest", s.Addr+"/verbs/web@"+digests[2]) {
		t.Errorf("get istag:\n%s", table)
	}
	desc := c.run("", "describe", "is", "web")
	wantOrder := []string{"* " + s.Addr + "/verbs/web@" + digests[2], s.Addr + "/verbs/web@" + digests[1], s.Addr + "/verbs/web@" + digests[0]}
	last := -1
	for _, w := range wantOrder {
		i := strings.Index(desc, w)
		if i <= last {
			t.Fatalf("describe is web does not list %q after the newer entries:\n%s", w, desc)
		}
		last = i
	}
	for _, line := range []string{"Image Repository:  " + s.Addr + "/verbs/web", "Unique Images:     3", "Tags:              1"} {
		if !strings.Contains(desc, line) {
			t.Errorf("describe is web lacks %q:\n%s", line, desc)
		}
	}

	if ex := c.run("", "explain", "imagestreams.status"); !strings.Contains(ex, "dockerImageRepository") || !strings.Contains(ex, "Where to pull") {
		t.Errorf("explain imagestreams.status:\n%s", ex)
	}

	// delete, then the object is gone.
	if out := c.run("", "delete", "cm", "app", "piped"); !strings.Contains(out, `configmap "app" deleted`) || !strings.Contains(out, `configmap "piped" deleted`) {
		t.Errorf("delete: %q", out)
	}
	if _, errOut, err := c.try("", "get", "cm", "app"); err == nil || !strings.Contains(errOut, `configmaps "app" not found`) {
		t.Errorf("get after delete: %v %s", err, errOut)
	}
}

// Three skopeo pushes of one tag are three entries of the tag's history,
// newest first, as berth get istag, berth get is and the real kubectl show.
func TestSkopeoPushesAreImageStreamHistory(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	requireTool(t, filepath.Join(kubectlDir, "kubectl.1.33"))
	s := startServer(t)
	c := newBerthCLI(t)
	c.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	c.run("", "new-project", "hist")
	ce := newContainersEnv(t)
	var digests []string
	for i := range 3 {
		img := newTestImage(t, "v1", "f.txt", []byte(fmt.Sprintf("skopeo push %d\n", i)))
		runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--preserve-digests", "--dest-cert-dir", s.CertDir(),
			"--dest-creds", "admin:"+adminPassword, img.OCIRef(), "docker://"+s.Addr+"/hist/app:v1")
		digests = append(digests, img.ManifestDigest)
	}
	if got := c.run("", "get", "istag", "app:v1", "-o", "jsonpath={.image.metadata.name}"); got != digests[2] {
		t.Errorf("berth get istag app:v1 = %s, want the last push %s", got, digests[2])
	}
	history := c.run("", "get", "is", "app", "-o", `jsonpath={range .status.tags[?(@.tag=="v1")].items[*]}{.image} {end}`)
	if want := digests[2] + " " + digests[1] + " " + digests[0] + " "; history != want {
		t.Errorf("v1 history = %q, want newest first %q", history, want)
	}
	table := c.run("", "get", "istag")
	if !tableRow(table, "app:v1", s.Addr+"/hist/app@"+digests[2]) {
		t.Errorf("berth get istag:\n%s", table)
	}
	k := newKubectl(t, s, "1.33", oauthToken(t, s, "admin", adminPassword))
	out, errOut, err := k.run("get", "imagestream", "app", "-n", "hist")
	if err != nil || !tableRow(out, "app", s.Addr+"/hist/app", "v1") {
		t.Errorf("kubectl get imagestream: %v %s\n%s", err, errOut, out)
	}
}
