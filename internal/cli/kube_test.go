package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
