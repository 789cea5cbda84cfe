package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// kubectlDir holds one kubectl per minor version (kubectl.1.27 …
// kubectl.1.33); /usr/bin/kubectl only dispatches to them.
const kubectlDir = "/usr/lib/google-cloud-sdk/bin"

// kubectlVersions are the kubectl minor versions the tests run: the newest
// and the oldest supported. .ci/run checks that kubectlDir holds them.
var kubectlVersions = []string{"1.33", "1.27"}

// kubectlTimeout bounds one kubectl invocation; kubectlRequestTimeout one
// of its HTTP requests (not a watch's).
const (
	kubectlTimeout        = 60 * time.Second
	kubectlRequestTimeout = "20s"
)

// envAssignment is a leading NAME=VALUE argument of a kubectl runner: an
// environment variable for that one run, as in a shell.
var envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// kubectl is one user's kubectl of one version against one server: its
// own kubeconfig, HOME and discovery cache, so nothing leaks between tests.
type kubectl struct {
	t          testing.TB
	bin        string
	kubeconfig string
	cacheDir   string
	home       string
}

// newKubectl writes a kubeconfig for s with a bearer token (kubectl sends
// it only over HTTPS) and a context whose namespace is "default".
func newKubectl(t testing.TB, s *server, version, token string) *kubectl {
	t.Helper()
	if !s.TLS {
		t.Fatal("kubectl sends a bearer token only over HTTPS: start the server with TLS")
	}
	bin := requireTool(t, filepath.Join(kubectlDir, "kubectl."+version))
	dir := t.TempDir()
	k := &kubectl{
		t:          t,
		bin:        bin,
		kubeconfig: filepath.Join(dir, "kubeconfig"),
		cacheDir:   filepath.Join(dir, "cache"),
		home:       filepath.Join(dir, "home"),
	}
	config := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []any{map[string]any{
			"name":    "berth",
			"cluster": map[string]any{"server": s.URL, "certificate-authority": s.CAFile()},
		}},
		"users": []any{map[string]any{
			"name": "berth-user",
			"user": map[string]any{"token": token},
		}},
		"contexts": []any{map[string]any{
			"name":    "berth",
			"context": map[string]any{"cluster": "berth", "user": "berth-user", "namespace": "default"},
		}},
		"current-context": "berth",
		"preferences":     map[string]any{},
	}
	b, err := yaml.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.kubeconfig, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(k.home, 0o700); err != nil {
		t.Fatal(err)
	}
	return k
}

// command builds a kubectl command; leading NAME=VALUE arguments are
// environment variables (e.g. EDITOR=/path/to/script).
func (k *kubectl) command(ctx context.Context, watch bool, args ...string) *exec.Cmd {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "EDITOR=") && !strings.HasPrefix(e, "KUBE_EDITOR=") {
			env = append(env, e)
		}
	}
	env = append(env, "KUBECONFIG="+k.kubeconfig, "HOME="+k.home)
	for len(args) > 0 && envAssignment.MatchString(args[0]) {
		env = append(env, args[0])
		args = args[1:]
	}
	full := []string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir}
	if !watch {
		full = append(full, "--request-timeout", kubectlRequestTimeout)
	}
	cmd := exec.CommandContext(ctx, k.bin, append(full, args...)...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader("")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs kubectl to completion within kubectlTimeout.
func (k *kubectl) run(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := k.command(ctx, false, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return o.String(), e.String(), err
}

// start starts kubectl in the background (a watch); cancelling ctx kills
// it. Its output goes to out.
func (k *kubectl) start(ctx context.Context, out io.Writer, args ...string) *exec.Cmd {
	k.t.Helper()
	cmd := k.command(ctx, true, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	return cmd
}

// kubectlEnv returns a runner of kubectl.<version> (e.g. "1.33") against s
// as the holder of token, with a kubeconfig and discovery cache of its own.
// Leading NAME=VALUE arguments set environment variables for one run.
func kubectlEnv(t testing.TB, s *server, version string, token string) func(args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return newKubectl(t, s, version, token).run
}

// oauthToken logs in through the OAuth password grant and returns the
// bearer token.
func oauthToken(t testing.TB, s *server, user, password string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
	resp, err := s.AnonymousClient().PostForm(s.URL+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var answer struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &answer); err != nil || resp.StatusCode != http.StatusOK || answer.AccessToken == "" {
		t.Fatalf("POST /oauth/token for %s = %d %s", user, resp.StatusCode, b)
	}
	return answer.AccessToken
}

// lockedBuffer collects a background process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tableRow reports whether a kubectl table has a row whose leading
// columns are cells (separated by runs of spaces).
func tableRow(table string, cells ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		fields := strings.Fields(line)
		if len(fields) < len(cells) {
			continue
		}
		match := true
		for i, c := range cells {
			match = match && fields[i] == c
		}
		if match {
			return true
		}
	}
	return false
}

// tableHeader returns the header line's column names.
func tableHeader(table string) []string {
	line, _, _ := strings.Cut(strings.TrimLeft(table, "\n"), "\n")
	return strings.Fields(line)
}

// TestKubectlConfigMaps drives configmaps and secrets with the real kubectl
// of the newest and the oldest supported minor versions: they differ in
// what they send (1.33 POSTs protobuf for built-in kinds, fetches
// /openapi/v3 before v2; 1.27 sends JSON).
func TestKubectlConfigMaps(t *testing.T) {
	for _, version := range kubectlVersions {
		t.Run(version, func(t *testing.T) {
			requireTool(t, filepath.Join(kubectlDir, "kubectl."+version))
			testKubectlConfigMaps(t, version)
		})
	}
}

func testKubectlConfigMaps(t *testing.T, version string) {
	users := map[string]string{"viewer": "viewer-pw", "owner": "owner-pw", "outsider": "outsider-pw"}
	s := startServer(t, "--htpasswd", htpasswdUsers(t, users))
	ns := "kc-" + strings.TrimPrefix(version, "1.") // not kube-*: reserved for the system
	s.newProject(ns)
	s.grant(ns, "registry-viewer", "viewer")
	s.grant(ns, "admin", "owner")
	admin := newKubectl(t, s, version, oauthToken(t, s, "admin", adminPassword))
	kc := admin.run
	dir := t.TempDir()

	// ok runs kubectl and fails the step unless it succeeds.
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errOut, err := kc(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		return out
	}
	// says runs kubectl and requires its stdout to be want (one line).
	says := func(t *testing.T, want string, args ...string) {
		t.Helper()
		if out := ok(t, args...); strings.TrimSpace(out) != want {
			t.Fatalf("kubectl %s printed %q, want %q", strings.Join(args, " "), out, want)
		}
	}
	// jsonpath is one field of an object.
	jsonpath := func(t *testing.T, expr string, args ...string) string {
		t.Helper()
		return ok(t, append(args, "-o", "jsonpath="+expr)...)
	}
	// fails runs kubectl, requires it to fail, and returns its stderr.
	fails := func(t *testing.T, run func(...string) (string, string, error), args ...string) string {
		t.Helper()
		out, errOut, err := run(args...)
		if err == nil {
			t.Fatalf("kubectl %s succeeded, want an error\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out, errOut)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("kubectl %s timed out\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), out, errOut)
		}
		t.Logf("kubectl %s: %s", strings.Join(args, " "), strings.TrimSpace(errOut))
		return errOut
	}
	writeFile := func(t *testing.T, name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("create configmap from literals", func(t *testing.T) {
		says(t, "configmap/app-config created", "create", "configmap", "app-config", "--from-literal=a=1", "--from-literal=b=2", "-n", ns)
		if got := jsonpath(t, "{.data.a}", "get", "configmap", "app-config", "-n", ns); got != "1" {
			t.Fatalf("data.a = %q, want 1", got)
		}
	})

	t.Run("create configmap from a file", func(t *testing.T) {
		content := "color=blue\nsize=10\n"
		file := writeFile(t, "settings.properties", content)
		says(t, "configmap/files created", "create", "configmap", "files", "--from-file=settings="+file, "-n", ns)
		if got := jsonpath(t, "{.data.settings}", "get", "configmap", "files", "-n", ns); got != content {
			t.Fatalf("data.settings = %q, want %q", got, content)
		}
	})

	t.Run("get table", func(t *testing.T) {
		out := ok(t, "get", "configmaps", "-n", ns)
		header := strings.Join(tableHeader(out), " ")
		for _, col := range []string{"NAME", "DATA", "AGE"} {
			if !strings.Contains(header, col) {
				t.Errorf("header %q lacks %s:\n%s", header, col, out)
			}
		}
		if !tableRow(out, "app-config", "2") || !tableRow(out, "files", "1") {
			t.Errorf("no rows app-config 2 and files 1:\n%s", out)
		}
	})

	var resourceVersion string
	t.Run("get yaml", func(t *testing.T) {
		out := ok(t, "get", "configmap", "app-config", "-n", ns, "-o", "yaml")
		var obj struct {
			Kind     string
			Metadata map[string]any
			Data     map[string]string
		}
		if err := yaml.Unmarshal([]byte(out), &obj); err != nil {
			t.Fatalf("-o yaml is not YAML: %v\n%s", err, out)
		}
		rv, _ := obj.Metadata["resourceVersion"].(string)
		uid, _ := obj.Metadata["uid"].(string)
		created, _ := obj.Metadata["creationTimestamp"].(string)
		if obj.Kind != "ConfigMap" || rv == "" || uid == "" || created == "" || obj.Metadata["name"] != "app-config" ||
			obj.Metadata["namespace"] != ns || obj.Data["a"] != "1" || obj.Data["b"] != "2" {
			t.Fatalf("-o yaml lacks kind, name, namespace, resourceVersion, uid, creationTimestamp or data:\n%s", out)
		}
		if _, err := time.Parse(time.RFC3339, created); err != nil {
			t.Errorf("creationTimestamp %q is not RFC 3339", created)
		}
		resourceVersion = rv
	})

	t.Run("patch merge", func(t *testing.T) {
		says(t, "configmap/app-config patched", "patch", "configmap", "app-config", "-n", ns, "--type", "merge", "-p", `{"data":{"a":"10"}}`)
		got := jsonpath(t, "{.data.a} {.data.b} {.metadata.resourceVersion}", "get", "configmap", "app-config", "-n", ns)
		f := strings.Fields(got)
		if len(f) != 3 || f[0] != "10" || f[1] != "2" {
			t.Fatalf("after the patch: data.a data.b resourceVersion = %q, want 10 2 and a resourceVersion", got)
		}
		if f[2] == resourceVersion {
			t.Errorf("the patch left resourceVersion at %s", f[2])
		}
	})

	t.Run("apply create update unchanged", func(t *testing.T) {
		manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: " + ns + "\ndata:\n  a: \"1\"\n"
		file := writeFile(t, "applied.yaml", manifest)
		says(t, "configmap/applied created", "apply", "-f", file)
		writeFile(t, "applied.yaml", strings.Replace(manifest, `a: "1"`, "a: \"2\"\n  c: \"3\"", 1))
		says(t, "configmap/applied configured", "apply", "-f", file)
		out := ok(t, "get", "configmap", "applied", "-n", ns, "-o", "json")
		var obj struct {
			Metadata struct{ Annotations map[string]string }
			Data     map[string]string
		}
		if err := json.Unmarshal([]byte(out), &obj); err != nil {
			t.Fatalf("-o json: %v\n%s", err, out)
		}
		if obj.Data["a"] != "2" || obj.Data["c"] != "3" {
			t.Errorf("after the second apply data = %v, want a=2 c=3", obj.Data)
		}
		if last := obj.Metadata.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; !strings.Contains(last, `"c":"3"`) {
			t.Errorf("last-applied-configuration annotation = %q", last)
		}
		says(t, "configmap/applied unchanged", "apply", "-f", file)
	})

	t.Run("edit", func(t *testing.T) {
		editor := writeFile(t, "editor.sh", "#!/bin/sh\nsed -i 's/a: \"10\"/a: \"20\"/' \"$1\"\n")
		if err := os.Chmod(editor, 0o755); err != nil {
			t.Fatal(err)
		}
		says(t, "configmap/app-config edited", "EDITOR="+editor, "edit", "configmap", "app-config", "-n", ns)
		if got := jsonpath(t, "{.data.a}", "get", "configmap", "app-config", "-n", ns); got != "20" {
			t.Fatalf("after the edit data.a = %q, want 20", got)
		}
	})

	t.Run("secret generic", func(t *testing.T) {
		says(t, "secret/db created", "create", "secret", "generic", "db", "--from-literal=password=s3cr3t", "-n", ns)
		want := base64.StdEncoding.EncodeToString([]byte("s3cr3t"))
		if got := jsonpath(t, "{.data.password}", "get", "secret", "db", "-n", ns); got != want {
			t.Errorf("data.password = %q, want %q", got, want)
		}
		out := ok(t, "get", "secrets", "-n", ns)
		if h := strings.Join(tableHeader(out), " "); !strings.Contains(h, "NAME TYPE DATA AGE") {
			t.Errorf("secrets table header = %q, want NAME TYPE DATA AGE:\n%s", h, out)
		}
		if !tableRow(out, "db", "Opaque", "1") {
			t.Errorf("no row db Opaque 1:\n%s", out)
		}
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("the table shows the secret value:\n%s", out)
		}
	})

	t.Run("delete", func(t *testing.T) {
		says(t, `configmap "app-config" deleted`, "delete", "configmap", "app-config", "-n", ns)
		errOut := fails(t, kc, "get", "configmap", "app-config", "-n", ns)
		if want := `Error from server (NotFound): configmaps "app-config" not found`; !strings.Contains(errOut, want) {
			t.Fatalf("get after delete: stderr %q, want %q", errOut, want)
		}
	})

	t.Run("watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out lockedBuffer
		cmd := admin.start(ctx, &out, "get", "configmaps", "-n", ns, "-w")
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() {
			cancel()
			<-exited
		}()
		// The initial list first (the watch starts from its resourceVersion).
		listed := func() bool {
			o := out.String()
			return strings.Contains(o, "NAME") || strings.Contains(o, "No resources found")
		}
		deadline := time.Now().Add(15 * time.Second)
		for !listed() && time.Now().Before(deadline) {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("kubectl get -w exited (%v) before listing:\n%s", err, out.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
		says(t, "configmap/watched created", "create", "configmap", "watched", "--from-literal=w=1", "-n", ns)
		deadline = time.Now().Add(15 * time.Second)
		for !tableRow(out.String(), "watched", "1") {
			if time.Now().After(deadline) {
				t.Fatalf("kubectl get -w did not show configmap watched within 15s:\n%s", out.String())
			}
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("kubectl get -w exited (%v) before showing configmap watched:\n%s", err, out.String())
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	t.Run("invalid name", func(t *testing.T) {
		errOut := fails(t, kc, "create", "configmap", "Bad_Name", "--from-literal=a=1", "-n", ns)
		if !strings.Contains(errOut, "Bad_Name") || !regexp.MustCompile(`(?i)(RFC|DNS)[- ]1123`).MatchString(errOut) {
			t.Fatalf("create configmap Bad_Name: stderr %q, want the name and RFC 1123", errOut)
		}
	})

	t.Run("unknown project", func(t *testing.T) {
		outsider := kubectlEnv(t, s, version, oauthToken(t, s, "outsider", "outsider-pw"))
		errOut := fails(t, outsider, "get", "configmaps", "-n", "no-such-project")
		// Not the NotFound of a server without the resource: the answer is
		// about configmaps or the project.
		if !regexp.MustCompile(`Error from server \((Forbidden|NotFound)\): .*(configmaps|no-such-project)`).MatchString(errOut) {
			t.Fatalf("get configmaps in a missing project: stderr %q, want Forbidden or NotFound", errOut)
		}
	})

	t.Run("authorization", func(t *testing.T) {
		viewer := kubectlEnv(t, s, version, oauthToken(t, s, "viewer", "viewer-pw"))
		errOut := fails(t, viewer, "get", "secrets", "-n", ns)
		if !strings.Contains(errOut, "Error from server (Forbidden)") || !strings.Contains(errOut, "secrets") {
			t.Errorf("registry-viewer get secrets: stderr %q, want Forbidden", errOut)
		}
		errOut = fails(t, viewer, "get", "secret", "db", "-n", ns, "-o", "jsonpath={.data.password}")
		if !strings.Contains(errOut, "Error from server (Forbidden)") {
			t.Errorf("registry-viewer get secret db: stderr %q, want Forbidden", errOut)
		}
		owner := kubectlEnv(t, s, version, oauthToken(t, s, "owner", "owner-pw"))
		out, errOut, err := owner("get", "secrets", "-n", ns)
		if err != nil || !tableRow(out, "db", "Opaque", "1") {
			t.Errorf("project admin get secrets: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		}
	})

	// kubectl create rolebinding (protobuf on 1.33) grants what the
	// registry and the API check.
	t.Run("create rolebinding", func(t *testing.T) {
		config := []byte(`{"architecture":"amd64","os":"linux"}`)
		cfg := uploadBlob(t, s, ns+"/app", config)
		manifest := mustJSON(t, ociManifest{SchemaVersion: 2, MediaType: mtOCIManifest,
			Config: ociDescriptor{MediaType: mtOCIConfig, Digest: cfg, Size: int64(len(config))}, Layers: []ociDescriptor{}})
		if st, body := putManifest(t, s.Client(), s.URL+"/v2/"+ns+"/app/manifests/v1", mtOCIManifest, manifest); st != http.StatusCreated {
			t.Fatalf("push: %d %s", st, body)
		}
		pull := func() int {
			resp, err := s.ClientAs("outsider", "outsider-pw").Get(s.URL + "/v2/" + ns + "/app/manifests/v1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if st := pull(); st != http.StatusNotFound {
			t.Fatalf("outsider's pull before the binding = %d, want 404 (hidden)", st)
		}
		outsider := kubectlEnv(t, s, version, oauthToken(t, s, "outsider", "outsider-pw"))
		if errOut := fails(t, outsider, "get", "is", "-n", ns); !strings.Contains(errOut, "Forbidden") {
			t.Fatalf("outsider get is before the binding: %q", errOut)
		}
		says(t, "rolebinding.rbac.authorization.k8s.io/pullers created",
			"create", "rolebinding", "pullers", "--clusterrole=system:image-puller", "--user=outsider", "-n", ns)
		if got := jsonpath(t, "{.roleRef.name} {.subjects[0].name}", "get", "rolebinding", "pullers", "-n", ns); got != "system:image-puller outsider" {
			t.Fatalf("the binding: %q", got)
		}
		if table := ok(t, "get", "rolebindings", "-n", ns, "-o", "wide"); !tableRow(table, "pullers", "ClusterRole/system:image-puller") {
			t.Fatalf("get rolebindings:\n%s", table)
		}
		if st := pull(); st != http.StatusOK {
			t.Fatalf("outsider's pull after the binding = %d, want 200", st)
		}
		if out := ok(t, "delete", "rolebinding", "pullers", "-n", ns); !strings.HasPrefix(out, `rolebinding.rbac.authorization.k8s.io "pullers" deleted`) {
			t.Fatalf("delete rolebinding: %q", out)
		}
		if st := pull(); st != http.StatusNotFound {
			t.Fatalf("outsider's pull after deleting the binding = %d, want 404", st)
		}
		says(t, "rolebinding.rbac.authorization.k8s.io/pullers created",
			"create", "rolebinding", "pullers", "--clusterrole=system:image-puller", "--user=outsider", "-n", ns)
	})

	// kubectl create sa and create token (protobuf on 1.33): the token logs
	// in to the registry and, as the project's service account, pulls.
	t.Run("create serviceaccount and token", func(t *testing.T) {
		says(t, "serviceaccount/robot created", "create", "serviceaccount", "robot", "-n", ns)
		// An account is an object like any: apply it twice, label it.
		sa := writeFile(t, "sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: deployer\n  namespace: "+ns+"\n")
		says(t, "serviceaccount/deployer created", "apply", "-f", sa)
		sa = writeFile(t, "sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: deployer\n  namespace: "+ns+"\n  labels:\n    tier: ci\n")
		says(t, "serviceaccount/deployer configured", "apply", "-f", sa)
		if got := jsonpath(t, "{.metadata.labels.tier}", "get", "sa", "deployer", "-n", ns); got != "ci" {
			t.Fatalf("label after apply: %q", got)
		}
		token := strings.TrimSpace(ok(t, "create", "token", "robot", "-n", ns, "--duration", "10m"))
		if !strings.HasPrefix(token, "sha256~") {
			t.Fatalf("create token printed %q", token)
		}
		c := s.AnonymousClient()
		c.Transport = headerTransport{next: c.Transport, name: "Authorization", value: "Bearer " + token}
		resp, err := c.Get(s.URL + "/v2/" + ns + "/app/manifests/v1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the service account's pull = %d, want 200", resp.StatusCode)
		}
	})

	// Role bindings are objects like any: apply (create, update, unchanged),
	// label, patch, get -w; their role cannot change, and a project admin
	// cannot grant more than they hold.
	t.Run("role bindings as objects", func(t *testing.T) {
		watchOut := &lockedBuffer{}
		ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
		defer cancel()
		watch := admin.start(ctx, watchOut, "get", "rolebindings", "-n", ns, "-w")
		defer func() { cancel(); _ = watch.Wait() }()

		binding := func(users ...string) string {
			y := "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: readers\n  namespace: " + ns +
				"\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: registry-viewer\nsubjects:\n"
			for _, u := range users {
				y += "- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: " + u + "\n"
			}
			return writeFile(t, "readers.yaml", y)
		}
		says(t, "rolebinding.rbac.authorization.k8s.io/readers created", "apply", "-f", binding("viewer"))
		says(t, "rolebinding.rbac.authorization.k8s.io/readers configured", "apply", "-f", binding("viewer", "outsider"))
		says(t, "rolebinding.rbac.authorization.k8s.io/readers unchanged", "apply", "-f", binding("viewer", "outsider"))
		if got := jsonpath(t, "{.subjects[*].name}", "get", "rolebinding", "readers", "-n", ns); got != "viewer outsider" {
			t.Fatalf("subjects after apply: %q", got)
		}
		says(t, "rolebinding.rbac.authorization.k8s.io/readers labeled", "label", "rolebinding", "readers", "team=qa", "-n", ns)
		if got := ok(t, "get", "rolebindings", "-l", "team=qa", "-n", ns, "-o", "name"); got != "rolebinding.rbac.authorization.k8s.io/readers\n" {
			t.Errorf("rolebindings labeled team=qa: %q", got)
		}
		errOut := fails(t, kc, "patch", "rolebinding", "readers", "-n", ns, "--type", "merge", "-p", `{"roleRef":{"name":"admin"}}`)
		if !strings.Contains(errOut, "cannot change roleRef") {
			t.Errorf("changing roleRef: %q", errOut)
		}
		owner := kubectlEnv(t, s, version, oauthToken(t, s, "owner", "owner-pw"))
		errOut = fails(t, owner, "create", "rolebinding", "root", "--clusterrole=cluster-admin", "--user=owner", "-n", ns)
		if !strings.Contains(errOut, "no escalation") {
			t.Errorf("a project admin granting cluster-admin: %q", errOut)
		}
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(watchOut.String(), "readers") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if !tableRow(watchOut.String(), "readers", "ClusterRole/registry-viewer") {
			t.Errorf("get rolebindings -w did not show readers:\n%s", watchOut.String())
		}
		ok(t, "delete", "rolebinding", "readers", "-n", ns)
	})

	// The reference's procedure, as written: enable the default route.
	t.Run("reference procedure: patch the defaultRoute", func(t *testing.T) {
		const config = "configs.imageregistry.operator.openshift.io/cluster"
		says(t, "config.imageregistry.operator.openshift.io/cluster patched",
			"patch", config, "--type", "merge", "-p", `{"spec":{"defaultRoute":true}}`)
		if got := jsonpath(t, "{.spec.defaultRoute} {.spec.managementState}", "get", config); got != "true Managed" {
			t.Fatalf("after the patch: %q, want \"true Managed\"", got)
		}
		// The status is the operator's, through its subresource: a status
		// that says something untrue is put right at once.
		says(t, "config.imageregistry.operator.openshift.io/cluster patched",
			"patch", config, "--subresource=status", "--type", "merge", "-p", `{"status":{"readyReplicas":7}}`)
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := jsonpath(t, "{.status.readyReplicas} {.spec.defaultRoute} {.status.observedGeneration} {.metadata.generation}", "get", config)
			if f := strings.Fields(got); len(f) == 4 && f[0] == "1" && f[1] == "true" && f[2] == f[3] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the operator did not restore the status: %q", got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		owner := kubectlEnv(t, s, version, oauthToken(t, s, "owner", "owner-pw"))
		errOut := fails(t, owner, "patch", config, "--type", "merge", "-p", `{"spec":{"readOnly":true}}`)
		if !strings.Contains(errOut, "Forbidden") {
			t.Errorf("a project admin patching the registry Config: %q, want Forbidden", errOut)
		}
	})
}

// A push is an API event: three pushes of one tag are three entries of
// the ImageStream's tag history, newest first, live in `get -w`; deleting
// the ImageStreamTag deletes the /v2 tag (the same row).
func TestKubectlImageStreams(t *testing.T) {
	crane := requireTool(t, "crane")
	for _, version := range kubectlVersions {
		t.Run(version, func(t *testing.T) {
			requireTool(t, filepath.Join(kubectlDir, "kubectl."+version))
			s := startServer(t)
			ns := "streams"
			s.newProject(ns)
			k := newKubectl(t, s, version, oauthToken(t, s, "admin", adminPassword))
			ok := func(args ...string) string {
				t.Helper()
				out, errOut, err := k.run(args...)
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errOut)
				}
				return out
			}
			dir := t.TempDir()
			env := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "SSL_CERT_FILE=" + s.CAFile()}
			runIn(t, dir, env, crane, "auth", "login", s.Addr, "-u", "admin", "-p", adminPassword)

			watchOut := &lockedBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			watch := k.start(ctx, watchOut, "get", "is", "-n", ns, "-w")
			defer func() { cancel(); _ = watch.Wait() }()

			var digests []string
			for i := range 3 {
				layer, _ := tarGz(t, "n.txt", []byte(fmt.Sprintf("push %d\n", i)))
				if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
					t.Fatal(err)
				}
				out := runIn(t, dir, env, crane, "append", "-f", "l.tgz", "-t", s.Addr+"/"+ns+"/app:v1")
				digests = append(digests, digestRE.FindString(out))
			}
			history := strings.Fields(ok("get", "is", "app", "-n", ns, "-o",
				`jsonpath={range .status.tags[?(@.tag=="v1")].items[*]}{.image} {end}`))
			want := []string{digests[2], digests[1], digests[0]}
			if strings.Join(history, " ") != strings.Join(want, " ") {
				t.Fatalf("v1 history = %v, want newest first %v", history, want)
			}
			if repo := ok("get", "is", "app", "-n", ns, "-o", "jsonpath={.status.dockerImageRepository}"); repo != s.Addr+"/"+ns+"/app" {
				t.Errorf("dockerImageRepository = %q", repo)
			}
			if img := ok("get", "istag", "app:v1", "-n", ns, "-o", "jsonpath={.image.metadata.name}"); img != digests[2] {
				t.Errorf("istag app:v1 image = %q, want %s", img, digests[2])
			}
			// The Image behind the tag, cluster-scoped, named by its digest.
			img := ok("get", "image", digests[2], "-o",
				"jsonpath={.dockerImageReference} {.dockerImageManifestMediaType} {.dockerImageMetadata.Id} {.dockerImageLayers[0].size}")
			manifest := getManifestJSON(t, s, ns+"/app", digests[2])
			if want := fmt.Sprintf("%s/%s/app@%s %s %s %d", s.Addr, ns, digests[2], manifest.MediaType, manifest.Config.Digest,
				manifest.Layers[0].Size); img != want {
				t.Errorf("image %s = %q, want %q", digests[2], img, want)
			}
			if table := ok("get", "is", "-n", ns); !tableRow(table, "app", s.Addr+"/"+ns+"/app", "v1") {
				t.Errorf("get is:\n%s", table)
			}
			deadline := time.Now().Add(15 * time.Second)
			for !strings.Contains(watchOut.String(), s.Addr+"/"+ns+"/app") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if !tableRow(watchOut.String(), "app", s.Addr+"/"+ns+"/app", "v1") {
				t.Errorf("get is -w did not show the push:\n%s", watchOut.String())
			}

			// kubectl explain reads the OpenAPI v3 schemas.
			explained := ok("explain", "is.status.tags.items")
			for _, want := range []string{"KIND:", "ImageStream", "dockerImageReference", "newest first"} {
				if !strings.Contains(explained, want) {
					t.Errorf("explain is.status.tags.items lacks %q:\n%s", want, explained)
				}
			}
			if explained := ok("explain", "configs.imageregistry.operator.openshift.io.spec.defaultRoute"); !strings.Contains(explained, "<boolean>") {
				t.Errorf("explain Config spec.defaultRoute:\n%s", explained)
			}

			// Sorted and paged by the server (kubectl sends limit=500): the
			// largest image first; the audit log and can-i answer kubectl.
			if names := ok("get", "istag", "-n", ns, "-o", "name"); !strings.Contains(names, "app:v1") {
				t.Errorf("get istag -o name:\n%s", names)
			}
			if audit := ok("get", "auditevents", "-n", ns); !strings.Contains(audit, "TIME") || !slices.ContainsFunc(strings.Split(audit, "\n"), func(line string) bool {
				f := strings.Fields(line)
				return len(f) >= 5 && f[1] == "admin" && f[2] == "push" && f[3] == "manifests" && f[4] == ns+"/app"
			}) {
				t.Errorf("get auditevents:\n%s", audit)
			}
			if can := ok("auth", "can-i", "delete", "imagestreamtags", "-n", ns); strings.TrimSpace(can) != "yes" {
				t.Errorf("auth can-i delete imagestreamtags = %q", can)
			}

			// Deleting the ImageStreamTag is deleting the /v2 tag.
			ok("delete", "istag", "app:v1", "-n", ns)
			if tags := tagList(t, s, ns+"/app"); slices.Contains(tags, "v1") {
				t.Errorf("after delete istag, /v2 tags = %v", tags)
			}
			if _, errOut, err := k.run("get", "istag", "app:v1", "-n", ns); err == nil || !strings.Contains(errOut, "NotFound") {
				t.Errorf("get istag after delete: %v %s", err, errOut)
			}
		})
	}
}

// getManifestJSON reads repo@dgst from /v2 as the admin.
func getManifestJSON(t *testing.T, s *server, repo, dgst string) ociManifest {
	t.Helper()
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/"+repo+"/manifests/"+dgst, manifestAccept)
	var m ociManifest
	if err := json.Unmarshal(body, &m); err != nil || st != http.StatusOK || len(m.Layers) == 0 {
		t.Fatalf("GET manifest %s@%s = %d %s", repo, dgst, st, body)
	}
	return m
}
