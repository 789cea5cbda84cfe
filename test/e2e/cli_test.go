package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// berthCLI runs the berth binary's client verbs with its own configuration
// file, as one user at one terminal would.
type berthCLI struct {
	t      testing.TB
	config string
	env    []string // added to the environment of the next commands
}

func newBerthCLI(t testing.TB) *berthCLI {
	return &berthCLI{t: t, config: filepath.Join(t.TempDir(), "berth", "config")}
}

// run runs berth with stdin and returns stdout, failing on an error.
func (c *berthCLI) run(stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.try(stdin, args...)
	if err != nil {
		c.t.Fatalf("berth %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (c *berthCLI) try(stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin) // not a terminal: berth reads a password line from it
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (c *berthCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, berthBin, args...)
	cmd.Env = append(append(os.Environ(), "BERTH_CONFIG="+c.config), c.env...)
	return cmd
}

// start runs a long berth command (get -w) in the background, writing its
// output to out, until ctx ends.
func (c *berthCLI) start(ctx context.Context, out io.Writer, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := c.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	return cmd
}

// writeHtpasswd writes an htpasswd file (bcrypt) of users and passwords.
func writeHtpasswd(t testing.TB, users map[string]string) string {
	t.Helper()
	var lines []string
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u+":"+string(h))
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// registryStatus sends GET path to the registry with a bearer token.
func registryStatus(t testing.TB, s *server, token, path string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.AnonymousClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCLI drives the reference's procedures with the berth binary against
// a real server: log in as the administrator, create a project, grant a
// user of the htpasswd provider registry-viewer there, mint a service
// account's token, put the user in a group granted another project, let
// him revoke his own token, log out.
func TestCLI(t *testing.T) {
	s := startServer(t, "--htpasswd", writeHtpasswd(t, map[string]string{"bob": "bob-Pa55"}))
	admin := newBerthCLI(t)

	if _, _, err := admin.try("", "whoami"); err == nil {
		t.Fatal("whoami before login succeeded")
	}
	_, errOut, _ := admin.try("", "whoami")
	if !strings.Contains(errOut, "not logged in: run berth login URL") {
		t.Fatalf("whoami before login: %s", errOut)
	}
	out := admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	if !strings.Contains(out, "Logged into "+s.URL+" as admin") {
		t.Fatalf("login: %s", out)
	}
	if st, err := os.Stat(admin.config); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file %s: %v %v", admin.config, st, err)
	}
	if out := admin.run("", "whoami"); strings.TrimSpace(out) != "admin" {
		t.Fatalf("whoami = %q", out)
	}
	token := strings.TrimSpace(admin.run("", "whoami", "-t"))
	if !strings.HasPrefix(token, "sha256~") {
		t.Fatalf("whoami -t = %q", token)
	}
	if code := registryStatus(t, s, token, "/v2/"); code != http.StatusOK {
		t.Fatalf("GET /v2/ with the login token = %d", code)
	}

	if out := admin.run("", "new-project", "cli-e2e"); !strings.Contains(out, `Now using project "cli-e2e"`) {
		t.Fatalf("new-project: %s", out)
	}
	if out := admin.run("", "project"); !strings.Contains(out, `Using project "cli-e2e"`) {
		t.Fatalf("project: %s", out)
	}
	if out := admin.run("", "get", "projects"); !strings.Contains(out, "cli-e2e") {
		t.Fatalf("get projects: %s", out)
	}
	// The reference's procedure, in the current project.
	if out := admin.run("", "policy", "add-role-to-user", "registry-viewer", "bob"); !strings.Contains(out, `registry-viewer added: "bob"`) {
		t.Fatalf("add-role-to-user: %s", out)
	}
	out = admin.run("", "policy", "who-can", "get", "imagestreams/layers")
	if !strings.Contains(out, "bob") || !strings.Contains(out, "admin") {
		t.Fatalf("who-can: %s", out)
	}
	// bob, an htpasswd user, logs in with the password on standard input
	// and now sees the project.
	bob := newBerthCLI(t)
	out = bob.run("bob-Pa55\n", "login", s.URL, "-u", "bob", "--certificate-authority", s.CAFile())
	if !strings.Contains(out, "as bob") || !strings.Contains(out, `Using project "cli-e2e"`) {
		t.Fatalf("bob's login: %s", out)
	}
	if _, errOut, err := bob.try("", "policy", "add-role-to-user", "admin", "bob"); err == nil || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("bob granting himself admin: %v %s", err, errOut)
	}

	// A robot: a service account and its token, which the registry takes.
	if out := admin.run("", "create", "serviceaccount", "robot"); !strings.Contains(out, "serviceaccount/robot created") {
		t.Fatalf("create serviceaccount: %s", out)
	}
	robot := strings.TrimSpace(admin.run("", "create", "token", "robot", "--duration", "24h", "-n", "cli-e2e"))
	if !strings.HasPrefix(robot, "sha256~") {
		t.Fatalf("create token = %q", robot)
	}
	if code := registryStatus(t, s, robot, "/v2/"); code != http.StatusOK {
		t.Fatalf("GET /v2/ with the robot's token = %d", code)
	}
	robotCLI := newBerthCLI(t)
	robotCLI.run("", "login", s.URL, "--token", robot, "--certificate-authority", s.CAFile())
	if out := robotCLI.run("", "whoami"); strings.TrimSpace(out) != "system:serviceaccount:cli-e2e:robot" {
		t.Fatalf("robot whoami = %q", out)
	}

	// A group: the administrator puts bob in it and grants it
	// registry-viewer in another project, which bob then sees.
	if out := admin.run("", "adm", "groups", "new", "cli-devs", "bob"); !strings.Contains(out, "group.user.openshift.io/cli-devs created") {
		t.Fatalf("adm groups new: %s", out)
	}
	if out := admin.run("", "get", "groups"); !strings.Contains(out, "cli-devs") || !strings.Contains(out, "bob") {
		t.Fatalf("get groups: %s", out)
	}
	admin.run("", "new-project", "cli-group")
	if out := bob.run("", "get", "projects"); strings.Contains(out, "cli-group") {
		t.Fatalf("bob sees cli-group before the grant: %s", out)
	}
	admin.run("", "policy", "add-role-to-group", "registry-viewer", "cli-devs", "-n", "cli-group")
	if out := admin.run("", "get", "rolebindings", "-n", "cli-group", "-o", "wide"); !tableRow(out, "registry-viewer", "ClusterRole/registry-viewer") || !strings.Contains(out, "cli-devs") {
		t.Fatalf("get rolebindings: %s", out)
	}
	if out := bob.run("", "get", "projects"); !strings.Contains(out, "cli-group") {
		t.Fatalf("bob, in cli-devs, does not see cli-group: %s", out)
	}
	if _, errOut, err := bob.try("", "adm", "groups", "add-users", "cli-devs", "carol"); err == nil || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("bob managing groups: %v %s", err, errOut)
	}

	// bob lists his tokens (his login, marked as the one in use) and
	// revokes it: his next command asks him to log in again.
	out = bob.run("", "get", "tokens")
	var bobToken string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "*" {
			bobToken = f[0]
		}
	}
	if bobToken == "" || !strings.Contains(out, "berth login") || strings.Contains(out, "sha256~") {
		t.Fatalf("bob's tokens:\n%s", out)
	}
	if _, _, err := bob.try("", "delete", "token", "nope"); err == nil {
		t.Fatal("deleting an unknown token succeeded")
	}
	// Deleted; kubectl's wait for the deletion is then refused already.
	out, errOut, err := bob.try("", "delete", "token", bobToken)
	if err == nil || !strings.Contains(out, `"`+bobToken+`" deleted`) || !strings.Contains(errOut, "log in again") {
		t.Fatalf("delete token: %v\n%s%s", err, out, errOut)
	}
	if _, errOut, err := bob.try("", "get", "projects"); err == nil || !strings.Contains(errOut, "log in again with berth login "+s.URL) {
		t.Fatalf("bob after revoking his token: %v %s", err, errOut)
	}
	if _, errOut, _ := bob.try("", "get", "projects"); strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("one error, one line; kubectl's internal logging shows too:\n%s", errOut)
	}

	// Logging out revokes the token at the server.
	if out := admin.run("", "logout"); !strings.Contains(out, `Logged "admin" out`) {
		t.Fatalf("logout: %s", out)
	}
	if code := registryStatus(t, s, token, "/v2/"); code != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ with the revoked token = %d, want 401", code)
	}
	if _, _, err := admin.try("", "whoami"); err == nil {
		t.Fatal("whoami after logout succeeded")
	}
}

// TestCLIPodmanLogin is the reference's registry login procedure, with
// berth in place of the platform CLI:
//
//	podman login -u kubeadmin -p $(berth whoami -t) HOST
//
// then a push into a project the user created and a pull back.
func TestCLIPodmanLogin(t *testing.T) {
	podman := requireTool(t, "podman")
	s := startServer(t)
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	admin.run("", "new-project", "podman-cli")
	token := strings.TrimSpace(admin.run("", "whoami", "-t"))

	ce := newContainersEnv(t)
	certs := s.CertDir()
	global := append(ce.storageFlags(), "--tmpdir", ce.TmpDir, "--cgroup-manager=cgroupfs", "--events-backend=file")
	pm := func(args ...string) string {
		t.Helper()
		return runIn(t, "", ce.Env, podman, append(global, args...)...)
	}
	out := pm("login", "--cert-dir", certs, "-u", "kubeadmin", "-p", token, s.Addr)
	if !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("podman login: %s", out)
	}

	content := []byte("pushed after berth login\n")
	img := newTestImage(t, "v1", "hello.txt", content)
	id, _ := loadIntoPodman(t, ce, pm, img)
	ref := s.Addr + "/podman-cli/app:v1"
	pm("tag", id, ref)
	pm("push", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)
	verifyRegistryImage(t, s, "podman-cli/app", "v1", "hello.txt", content)
	pm("rmi", "--all", "--force")
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, ref)

	// After berth logout the token no longer opens the registry.
	admin.run("", "logout")
	pm("logout", s.Addr)
	if _, err := tryPodmanLogin(ce, podman, global, certs, token, s.Addr); err == nil {
		t.Fatal("podman login with a revoked token succeeded")
	}
}

func tryPodmanLogin(ce *containersEnv, podman string, global []string, certs, token, host string) (string, error) {
	o, e, err := tryIn("", ce.Env, podman, append(global, "login", "--cert-dir", certs, "-u", "kubeadmin", "-p", token, host)...)
	return o + e, err
}

// TestCLIOverPlainHTTP: after berth login to a server started with
// --insecure-http, berth's kubectl verbs send the token too (client-go
// sends one only over TLS), without a warning for a loopback server.
func TestCLIOverPlainHTTP(t *testing.T) {
	s := startServer(t, "--insecure-http")
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("not a plain HTTP server on loopback: %s", s.URL)
	}
	c := newBerthCLI(t)
	run := func(args ...string) string {
		t.Helper()
		out, errOut, err := c.try("", args...)
		if err != nil {
			t.Fatalf("berth %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
		}
		if strings.Contains(errOut, "warning") {
			t.Errorf("berth %s warns about a loopback server:\n%s", strings.Join(args, " "), errOut)
		}
		return out
	}
	run("login", s.URL, "-u", "admin", "-p", adminPassword)
	if out := run("whoami"); out != "admin\n" {
		t.Fatalf("whoami = %q", out)
	}
	run("new-project", "plain")
	run("get", "is")
	if out := run("create", "configmap", "x", "--from-literal=a=b", "-n", "plain"); out != "configmap/x created\n" {
		t.Fatalf("create configmap: %q", out)
	}
	if out := run("get", "configmap", "x", "-o", "yaml"); !strings.Contains(out, "a: b") || !strings.Contains(out, "namespace: plain") {
		t.Fatalf("get configmap x -o yaml:\n%s", out)
	}
	run("patch", "configmap", "x", "--type", "merge", "-p", `{"data":{"a":"c"}}`, "-n", "plain")
	if out := run("get", "cm", "x", "-o", "jsonpath={.data.a}"); out != "c" {
		t.Fatalf("after patch a = %q", out)
	}
	if out := run("delete", "cm", "x"); !strings.HasPrefix(out, `configmap "x" deleted`) {
		t.Fatalf("delete: %q", out)
	}
}

// TestCLIUnknownSubcommand: a typo in a subcommand fails, as a script
// must see, instead of printing help and succeeding.
func TestCLIUnknownSubcommand(t *testing.T) {
	c := newBerthCLI(t)
	out, errOut, err := c.try("", "adm", "frobnicate", "images")
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || !strings.Contains(errOut, `unknown command "frobnicate" for "berth adm"`) {
		t.Fatalf("berth adm frobnicate images: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
}
