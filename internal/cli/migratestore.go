package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/internal/server"
	"github.com/berth-registry/berth/internal/store"
)

func newMigrateStoreCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate-store --from sqlite:DATA --to postgres://USER@HOST/DB",
		Short: "Copy the metadata of an installation on SQLite into PostgreSQL, for instances to share",
		Long: `Copy everything the metadata store of an installation holds (repositories,
manifests, tags and their history, projects, users, tokens, role bindings,
Secrets and the other API objects, upload sessions, webhook queues, the event
log) from its SQLite database into a new, empty PostgreSQL database, in one
transaction: interrupted, it leaves PostgreSQL as it was. It then counts the
rows of every table on both sides and fails if they differ.

Stop the berth that serves DATA first (the copy takes its data directory's
lock). Blobs are not copied: serve them from the same storage. Secrets stay
encrypted as they are: start the new instances with the same key
(--secret-encryption-key-file DATA/secret-encryption.key, or the files the
old server was given).

Then start berth serve --store with the same PostgreSQL URL (or
$BERTH_STORE_DSN), and as many instances as you like.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, ok := strings.CutPrefix(from, "sqlite:")
			if !ok || dir == "" {
				return fmt.Errorf("--from %q: want sqlite:DATA, the data directory of the installation", from)
			}
			if !store.Shared(to) {
				return fmt.Errorf("--to %q: want a postgres:// URL", store.Redact(to))
			}
			path := filepath.Join(dir, "metadata.db")
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("--from %s: %w", from, err)
			}
			unlock, err := server.LockDataDir(dir, false)
			if err != nil {
				return fmt.Errorf("%w: stop the berth that serves it first", err)
			}
			defer unlock()
			ctx := cmd.Context()
			src, err := store.OpenSQLite(ctx, path)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := store.Open(ctx, to)
			if err != nil {
				return err
			}
			defer dst.Close()
			tty := false
			if f, ok := cmd.ErrOrStderr().(*os.File); ok {
				tty = term.IsTerminal(int(f.Fd()))
			}
			bar := progressBar{w: cmd.ErrOrStderr(), tty: tty, lastTenth: -1}
			current := ""
			counts, err := src.CopyTo(ctx, dst, func(table string, done, total int64) {
				if table != current {
					bar.end()
					current, bar.lastTenth = table, -1
				}
				frac := 1.0
				if total > 0 {
					frac = float64(done) / float64(total)
				}
				bar.show(frac, fmt.Sprintf("%d/%d rows  %s", done, total, table))
			})
			bar.end()
			if counts != nil {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TABLE\tSQLITE\tPOSTGRESQL")
				var rows int64
				for _, c := range counts {
					fmt.Fprintf(tw, "%s\t%d\t%d\n", c.Table, c.Source, c.Destination)
					rows += c.Destination
				}
				tw.Flush()
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "Copied %d rows of %d tables into %s; every count matches.\n", rows, len(counts), store.Redact(to))
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "sqlite:DATA, the data directory of the installation to copy")
	cmd.Flags().StringVar(&to, "to", "", "postgres:// URL of a new, empty database ($BERTH_STORE_DSN)")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) {
		if to == "" {
			to = os.Getenv("BERTH_STORE_DSN")
		}
	}
	return cmd
}
