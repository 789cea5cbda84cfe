package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickstartCommand is one command of README.md's Quickstart: a line, or
// lines joined by trailing backslashes.
type quickstartCommand struct {
	line int // in README.md, from 1
	text string
}

// TestQuickstart runs the indented block under "## Quickstart" in
// README.md as a user pasting it would: in one bash, command by command, in
// an empty directory, offline (HTTP and HTTPS beyond loopback go to a
// proxy that is not there). What the test
// changes is only what it must: the berth binary it built stands in for
// `go build -o berth ./cmd/berth`, and the server listens on a free port
// instead of :5000 (every localhost:5000 follows). podman, skopeo and
// berth keep their configuration, credentials and image storage in the
// test's directory, through environment variables only, so the commands
// run exactly as written. Each command must exit 0, within a bound; the
// registry's catalog, listed at the end, must hold every repository the
// block pushed to.
func TestQuickstart(t *testing.T) {
	bash := requireTool(t, "bash")
	var path []string
	for _, tool := range []string{"podman", "skopeo", "curl", "tar"} {
		path = append(path, filepath.Dir(requireTool(t, tool)))
	}
	cmds := readQuickstart(t, filepath.Join("..", "..", "README.md"), "## Quickstart")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	replaced := map[string]string{
		"go build -o berth ./cmd/berth":       "cp " + shellQuote(berthBin) + " berth",
		"./berth serve --data ./berth-data &": "./berth serve --data ./berth-data --listen 127.0.0.1:" + port + " &",
	}
	run := substitute(t, "README.md's Quickstart", cmds, replaced, func(cmd string) string {
		return strings.ReplaceAll(cmd, "localhost:5000", "localhost:"+port)
	})

	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	sh := startQuickstartShell(t, bash, work, quickstartEnv(t, dir, path))
	for i, c := range cmds {
		out, err := sh.run(run[i], 3*time.Minute)
		if err != nil {
			t.Fatalf("README.md:%d: %s\n%v\noutput:\n%s", c.line, c.text, err, tail(out, 6000))
		}
		if strings.Contains(c.text, "/v2/_catalog") {
			// The server's log shares the output; the catalog is the JSON.
			catalog := catalogJSON.FindString(out)
			for _, repo := range pushedRepos(cmds[:i]) {
				if !strings.Contains(catalog, `"`+repo+`"`) {
					t.Errorf("README.md:%d: %s\nthe catalog %q lacks %s, which the commands above pushed; output:\n%s", c.line, c.text, catalog, repo, tail(out, 2000))
				}
			}
		}
	}
	t.Logf("README.md's Quickstart: %d commands, lines %d to %d, all ran", len(cmds), cmds[0].line, cmds[len(cmds)-1].line)
}

// substitute returns cmds as the test runs them: each command named in
// replaced swapped for its replacement, then every one passed through
// rewrite. A replaced command the block lacks fails the test (the doc
// changed, and the test must follow).
func substitute(t *testing.T, block string, cmds []quickstartCommand, replaced map[string]string, rewrite func(string) string) []string {
	t.Helper()
	run := make([]string, len(cmds))
	for i, c := range cmds {
		run[i] = c.text
		if r, ok := replaced[c.text]; ok {
			run[i] = r
			delete(replaced, c.text)
		}
		run[i] = rewrite(run[i])
	}
	for cmd := range replaced {
		t.Fatalf("%s has no command %q, which this test replaces; update the test with the doc", block, cmd)
	}
	return run
}

// readQuickstart returns the commands of the first indented block under
// heading in readme, comment lines and blank lines left out.
func readQuickstart(t *testing.T, readme, heading string) []quickstartCommand {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == heading {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s has no %q section", readme, heading)
	}
	var cmds []quickstartCommand
	var cur *quickstartCommand
	inBlock := false
	for i := start; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" && cur == nil {
			continue
		}
		if !strings.HasPrefix(l, "    ") {
			if cur != nil {
				t.Fatalf("%s:%d: the command continues with a backslash into a line that is not part of the block", readme, cur.line)
			}
			if !inBlock && !strings.HasPrefix(l, "#") {
				continue // text before the block
			}
			break // the first text after the block, or the next section
		}
		inBlock = true
		text := l[4:]
		switch {
		case cur != nil:
			cur.text += "\n" + text
		case strings.HasPrefix(strings.TrimSpace(text), "#"):
			continue
		default:
			cur = &quickstartCommand{line: i + 1, text: text}
		}
		if !strings.HasSuffix(text, `\`) {
			cmds = append(cmds, *cur)
			cur = nil
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("%s: no commands under %q", readme, heading)
	}
	return cmds
}

const offlineProxy = "http://127.0.0.1:9"

// quickstartEnv is the environment the block runs in: the test's own, with
// HOME, podman's and skopeo's configuration, credentials and storage (vfs)
// and berth's login moved under dir, and no way out but loopback. The
// signature policy in HOME accepts anything, as the usual system one does.
func quickstartEnv(t *testing.T, dir string, path []string) []string {
	t.Helper()
	home := filepath.Join(dir, "home")
	root, runRoot, tmp, runtime := filepath.Join(dir, "root"), filepath.Join(dir, "runroot"), filepath.Join(dir, "tmp"), filepath.Join(dir, "xdg")
	files := map[string]string{
		filepath.Join(dir, "registries.conf"):                       "",
		filepath.Join(dir, "storage.conf"):                          "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + root + "\"\nrunroot = \"" + runRoot + "\"\n",
		filepath.Join(dir, "containers.conf"):                       "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"" + tmp + "\"\n",
		filepath.Join(dir, "auth.json"):                             `{"auths":{}}`,
		filepath.Join(home, ".config", "containers", "policy.json"): `{"default":[{"type":"insecureAcceptAnything"}]}`,
	}
	for _, d := range []string{root, runRoot, tmp, runtime, filepath.Join(home, ".config", "containers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for _, e := range os.Environ() {
		name, _, _ := strings.Cut(e, "=")
		switch {
		case name == "HOME", name == "PATH", name == "REGISTRY_AUTH_FILE", name == "DOCKER_CONFIG", name == "KUBECONFIG",
			strings.HasPrefix(name, "XDG_"), strings.HasPrefix(name, "CONTAINERS_"), strings.HasPrefix(name, "BERTH_"),
			strings.HasSuffix(strings.ToLower(name), "_proxy"):
		default:
			env = append(env, e)
		}
	}
	return append(env,
		"PATH="+strings.Join(append(path, os.Getenv("PATH")), string(os.PathListSeparator)),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_RUNTIME_DIR="+runtime,
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(dir, "registries.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"),
		// Nothing listens on the discard port: a command that reaches
		// beyond the machine fails, even where the internet is reachable.
		"HTTPS_PROXY="+offlineProxy, "https_proxy="+offlineProxy, "HTTP_PROXY="+offlineProxy, "http_proxy="+offlineProxy,
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
	)
}

// quickstartShell is one bash reading commands from the test, as a
// terminal would give them, in its own process group so that the test can
// end it with everything it started (the server in the background).
type quickstartShell struct {
	cmd    *exec.Cmd
	input  *os.File
	output *os.File    // stdout and stderr of every command
	status chan string // each command's exit status, as bash reports it
	exited chan struct{}
}

func startQuickstartShell(t *testing.T, bash, dir string, env []string) *quickstartShell {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(filepath.Dir(dir), "output"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, "--noprofile", "--norc")
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, out, out
	cmd.ExtraFiles = []*os.File{statusW} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	statusW.Close()
	sh := &quickstartShell{cmd: cmd, input: inW, output: out, status: make(chan string, 1), exited: make(chan struct{})}
	go func() {
		defer statusR.Close()
		sc := bufio.NewScanner(statusR)
		for sc.Scan() {
			sh.status <- sc.Text()
		}
	}()
	go func() { _ = cmd.Wait(); close(sh.exited) }()
	t.Cleanup(sh.end)
	return sh
}

// run gives bash one command and waits for it; the command's output is
// returned either way. Its stdin is empty (nothing reads the commands
// that follow), and it does not hold the status pipe (so the server in
// the background does not either).
func (sh *quickstartShell) run(command string, timeout time.Duration) (string, error) {
	from, err := sh.output.Seek(0, 2)
	if err != nil {
		return "", err
	}
	output := func() string {
		b, err := os.ReadFile(sh.output.Name())
		if err != nil || int64(len(b)) < from {
			return fmt.Sprintf("(output unreadable: %v)", err)
		}
		return string(b[from:])
	}
	if _, err := fmt.Fprintf(sh.input, "{ %s\n} </dev/null 3>&-\necho \"$?\" >&3\n", command); err != nil {
		return output(), fmt.Errorf("give bash the command: %w", err)
	}
	select {
	case st := <-sh.status:
		if st != "0" {
			return output(), fmt.Errorf("exit status %s", st)
		}
		return output(), nil
	case <-sh.exited:
		return output(), errors.New("bash exited")
	case <-time.After(timeout):
		return output(), fmt.Errorf("still running after %v", timeout)
	}
}

// end stops bash and every process it started: SIGTERM to its process
// group (the server shuts down gracefully), SIGKILL to what is left after
// 30 seconds.
func (sh *quickstartShell) end() {
	sh.input.Close()
	pgid := sh.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(-pgid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // paces the polling
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-sh.exited
	sh.output.Close()
}

var catalogJSON = regexp.MustCompile(`\{"repositories":\[[^\]]*\]\}`)

// pushedTo finds the repository a podman push or skopeo copy sends to.
var pushedTo = regexp.MustCompile(`(?:docker://)?localhost:5000/([a-z0-9._-]+/[a-z0-9._-]+)[:@]`)

// pushedRepos returns the repositories the commands push to.
func pushedRepos(cmds []quickstartCommand) []string {
	var repos []string
	for _, c := range cmds {
		f := strings.Fields(c.text)
		if len(f) < 2 || !(f[0] == "podman" && f[1] == "push" || f[0] == "skopeo" && f[1] == "copy") {
			continue
		}
		if m := pushedTo.FindAllStringSubmatch(c.text, -1); m != nil {
			repos = append(repos, m[len(m)-1][1])
		}
	}
	return repos
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
