package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
)

// kubectl's commands are wired in whole: every subcommand returns errors
// instead of exiting the process, and its examples speak of berth.
func TestKubectlCommandsAreAdapted(t *testing.T) {
	root := NewRoot()
	seen := 0
	walkCommands(root, func(c *cobra.Command) {
		if c.Run != nil {
			t.Errorf("berth %s exits the process on errors (Run is set)", c.CommandPath())
		}
		if strings.Contains(c.Example, "kubectl ") {
			t.Errorf("berth %s examples name kubectl", c.CommandPath())
		}
		seen++
	})
	cm, _, err := root.Find([]string{"create", "configmap"})
	if err != nil || !strings.Contains(cm.Example, "berth create configmap") {
		t.Fatalf("create configmap: %v %q", err, cm.Example)
	}
	if seen < 40 {
		t.Errorf("only %d commands: kubectl's are missing", seen)
	}
}

// walkCommands calls visit on c and every command under it.
func walkCommands(c *cobra.Command, visit func(*cobra.Command)) {
	visit(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, visit)
	}
}

// client-go's clientcmd puts a user's token into the REST configuration
// only for a TLS server; berth sends it to a plain HTTP one too, as its own
// verbs do (a server started with --insecure-http).
func TestKubectlVerbsOverPlainHTTP(t *testing.T) {
	s := apiservertest.New(t, apiservertest.Options{})
	dir := t.TempDir()
	t.Setenv("BERTH_CONFIG", filepath.Join(dir, "config"))
	berth := func(args ...string) (string, string, error) {
		root := NewRoot()
		var out, errOut bytes.Buffer
		root.SetArgs(args)
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetIn(strings.NewReader(""))
		err := root.ExecuteContext(context.Background())
		return out.String(), errOut.String(), err
	}
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, err := berth(args...)
		if err != nil {
			t.Fatalf("berth %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
		}
		if strings.Contains(errOut, "warning") {
			t.Errorf("berth %s warns about a loopback server:\n%s", strings.Join(args, " "), errOut)
		}
		return out
	}
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("the server is not plain HTTP on loopback: %s", s.URL)
	}
	ok("login", s.URL, "-u", "admin", "-p", apiservertest.AdminPassword)
	ok("new-project", "plain")
	if out := ok("get", "projects"); !strings.Contains(out, "plain") {
		t.Fatalf("get projects:\n%s", out)
	}
	ok("create", "configmap", "x", "--from-literal=a=b", "-n", "plain")
	if out := ok("get", "configmap", "x", "-o", "yaml", "-n", "plain"); !strings.Contains(out, "a: b") {
		t.Fatalf("get configmap x -o yaml:\n%s", out)
	}
}

// The session's REST configuration carries the token for every server,
// and warns once, on standard error, when it goes unencrypted to a host
// other than this machine.
func TestKubeSessionTokenOverPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		server string
		warn   bool
	}{
		{"https://registry.example:5000", false},
		{"http://127.0.0.1:5000", false},
		{"http://127.9.8.7:5000", false},
		{"http://localhost:5000", false},
		{"http://LOCALHOST", false},
		{"http://[::1]:5000", false},
		{"http://registry.example:5000", true},
		{"http://10.1.2.3:5000", true},
		{"http://[2001:db8::1]:5000", true},
		{"http://localhost.example.com:5000", true},
	} {
		t.Run(tc.server, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config")
			t.Setenv("BERTH_CONFIG", path)
			cfg := &clientConfig{Server: tc.server, User: "admin", Token: "sha256~secret", path: path}
			if err := cfg.save(); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			s := &kubeSession{errOut: &stderr}
			for range 3 { // discovery and each client ask again
				rc, err := s.ToRESTConfig()
				if err != nil {
					t.Fatal(err)
				}
				if rc.BearerToken != "sha256~secret" {
					t.Fatalf("bearer token %q", rc.BearerToken)
				}
			}
			host := strings.TrimPrefix(strings.TrimPrefix(tc.server, "http://"), "https://")
			warnings := strings.Count(stderr.String(), "warning:")
			switch {
			case tc.warn && (warnings != 1 || !strings.Contains(stderr.String(), host) || !strings.Contains(stderr.String(), "unencrypted")):
				t.Errorf("want one warning naming %s, got:\n%s", host, stderr.String())
			case !tc.warn && stderr.Len() > 0:
				t.Errorf("want no warning, got:\n%s", stderr.String())
			}
		})
	}
}
