package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runRoot runs a fresh command tree with args, as the berth binary would,
// with no configuration.
func runRoot(t *testing.T, args ...string) (output string, err error) {
	return runRootIn(t, "", args...)
}

// runRootIn is runRoot with stdin.
func runRootIn(t *testing.T, stdin string, args ...string) (output string, err error) {
	t.Setenv("BERTH_CONFIG", filepath.Join(t.TempDir(), "config"))
	root := NewRoot()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err = root.Execute()
	return out.String() + errOut.String(), err
}

// Every command that holds subcommands and has no flags of its own only
// dispatches: an unknown subcommand is an error in cobra's words (not its
// help and success, which hid typos in scripts), and no subcommand shows
// its help. The others with subcommands still refuse an unknown one.
func TestCommandGroupsRefuseUnknownSubcommands(t *testing.T) {
	var groups, others []string
	walkCommands(NewRoot(), func(c *cobra.Command) {
		if !c.HasSubCommands() {
			return
		}
		path := strings.Fields(c.CommandPath())[1:]
		if c.LocalNonPersistentFlags().HasFlags() {
			others = append(others, strings.Join(path, " "))
		} else {
			groups = append(groups, strings.Join(path, " "))
		}
	})
	for _, want := range []string{"", "adm", "adm groups", "adm policy", "policy", "completion", "create secret", "create service"} {
		if !slices.Contains(groups, want) {
			t.Errorf("berth %s is not among the command groups %q", want, groups)
		}
	}
	for _, g := range groups {
		args := strings.Fields(g)
		out, err := runRoot(t, append(args, "frobnicate", "images")...)
		want := `unknown command "frobnicate" for "` + strings.TrimSpace("berth "+g) + `"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("berth %s frobnicate images: error %v, want %q\n%s", g, err, want, out)
		}
		out, err = runRoot(t, args...)
		if err != nil || !strings.Contains(out, "Available Commands:") {
			t.Errorf("berth %s: %v, want its help:\n%s", g, err, out)
		}
	}
	for _, o := range others {
		if _, err := runRoot(t, append(strings.Fields(o), "frobnicate")...); err == nil {
			t.Errorf("berth %s frobnicate succeeded", o)
		}
	}
	// A near miss names the subcommand meant.
	if _, err := runRoot(t, "adm", "group"); err == nil || !strings.Contains(err.Error(), "Did you mean this?\n\tgroups") {
		t.Errorf("berth adm group: %v", err)
	}
}

// The binary's exit status: what a script sees.
func TestExecuteUnknownSubcommandExitsNonZero(t *testing.T) {
	stderr, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	t.Setenv("BERTH_CONFIG", filepath.Join(t.TempDir(), "config"))
	oldArgs, oldStderr, oldStdout := os.Args, os.Stderr, os.Stdout
	os.Args, os.Stderr, os.Stdout = []string{"berth", "adm", "frobnicate", "images"}, stderr, stderr
	code := Execute()
	os.Args, os.Stderr, os.Stdout = oldArgs, oldStderr, oldStdout
	if _, err := stderr.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	msg, err := io.ReadAll(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.Contains(string(msg), `berth: unknown command "frobnicate" for "berth adm"`) {
		t.Fatalf("berth adm frobnicate images: exit %d\n%s", code, msg)
	}
}
