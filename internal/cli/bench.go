package cli

import "github.com/spf13/cobra"

func newBenchCommand() *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Benchmark a registry (not yet built)", Hidden: true}
}
