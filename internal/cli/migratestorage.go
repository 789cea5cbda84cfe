package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/storagemigration"
)

const pathStorageMigration = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster/storagemigration"

func newMigrateStorageCommand() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "migrate-storage",
		Short: "Move the blobs left in storages the registry was switched away from into the storage in effect",
		Long: `Move the blobs left in storages the registry was switched away from (listed by
the registry Config's StorageMigrationPending condition) into the storage in
effect. The server copies each blob, checks its digest, records it in the
storage in effect and deletes it from the older storage; images stay pullable
throughout. A blob whose bytes do not match its digest is left where it was
and reported. An emptied storage is no longer read.

The migration runs while this command does: interrupted, it is resumed by
running it again. --dry-run reports what would move.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := session()
			if err != nil {
				return err
			}
			path := pathStorageMigration
			if dryRun {
				path += "?dryRun=All"
			}
			resp, err := c.stream(cmd.Context(), http.MethodPost, path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return followMigration(resp.Body, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would move, and move nothing")
	return cmd
}

// followMigration reads a migration's stream, draws its progress on
// progress (a bar redrawn in place on a terminal, a line per tenth
// otherwise), and prints its report on out.
func followMigration(body io.Reader, out, progress io.Writer) error {
	tty := false
	if f, ok := progress.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	bar := progressBar{w: progress, tty: tty, lastTenth: -1}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev apiserver.MigrationEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("the server's answer is not a storage migration's progress: %w", err)
		}
		switch ev.Type {
		case "Progress":
			if ev.Progress != nil {
				bar.draw(*ev.Progress)
			}
		case "Done", "Error":
			bar.end()
			if ev.Report != nil {
				printMigrationReport(out, *ev.Report)
			}
			if ev.Type == "Error" {
				return errors.New(ev.Message)
			}
			if ev.Report != nil && len(ev.Report.Failures) > 0 {
				return fmt.Errorf("%d blobs could not be moved and were left where they were (listed above)", int64(len(ev.Report.Failures))+ev.Report.MoreFailures)
			}
			if ev.Report != nil && !ev.Report.DryRun {
				for _, s := range ev.Report.Storages {
					if s.Unreadable != "" {
						return fmt.Errorf("%s could not be read: its blobs were left there (see the registry's Degraded condition)", s.Name)
					}
				}
			}
			return nil
		}
	}
	bar.end()
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the migration's progress stopped: %w; run berth adm migrate-storage again to resume", err)
	}
	return errors.New("the server ended the migration without a report; run berth adm migrate-storage again to resume")
}

// progressBar draws a migration's progress.
type progressBar struct {
	w         io.Writer
	tty       bool
	drawn     bool
	lastTenth int64
}

func (b *progressBar) draw(p storagemigration.Progress) {
	if p.TotalBlobs == 0 {
		return
	}
	done := p.Bytes
	total := p.TotalBytes
	if total == 0 {
		done, total = p.Blobs, p.TotalBlobs
	}
	frac := float64(done) / float64(total)
	frac = min(max(frac, 0), 1)
	b.show(frac, fmt.Sprintf("%d/%d blobs, %s/%s  %s",
		p.Blobs, p.TotalBlobs, storagemigration.Size(p.Bytes), storagemigration.Size(p.TotalBytes), p.Storage))
}

// show draws the bar at frac (0 to 1) with what follows it.
func (b *progressBar) show(frac float64, what string) {
	line := fmt.Sprintf("%3.0f%% |%-30s| %s", frac*100, strings.Repeat("█", int(frac*30)), what)
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
		b.drawn = true
		return
	}
	if tenth := int64(frac * 10); tenth != b.lastTenth {
		b.lastTenth = tenth
		fmt.Fprintln(b.w, line)
	}
}

func (b *progressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

func printMigrationReport(w io.Writer, rep storagemigration.Report) {
	if len(rep.Storages) == 0 {
		fmt.Fprintln(w, "every blob is in the storage in effect: nothing to migrate")
		return
	}
	for _, s := range rep.Storages {
		switch {
		case s.Unreadable != "":
			fmt.Fprintf(w, "%s: %d blobs (%s) not moved: %s\n", s.Name, s.Blobs, storagemigration.Size(s.Bytes), s.Unreadable)
		case rep.DryRun:
			fmt.Fprintf(w, "%s: %d blobs (%s) would move\n", s.Name, s.Blobs, storagemigration.Size(s.Bytes))
		case s.SamePlace:
			fmt.Fprintf(w, "%s: the same place as the storage in effect: %d blobs' records moved, nothing copied or deleted", s.Name, s.Deduplicated)
		default:
			fmt.Fprintf(w, "%s: %d blobs copied (%s), %d already in the storage in effect", s.Name, s.Copied, storagemigration.Size(s.CopiedBytes), s.Deduplicated)
		}
		if s.Unreadable == "" && !rep.DryRun {
			if s.Emptied {
				fmt.Fprint(w, "; emptied")
			}
			fmt.Fprintln(w)
			if s.KeptOldBytes != "" {
				fmt.Fprintf(w, "  its old bytes were kept: %s\n", s.KeptOldBytes)
			}
		}
	}
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "left in %s: %s: %s\n", f.Storage, f.Digest, f.Error)
	}
	if rep.MoreFailures > 0 {
		fmt.Fprintf(w, "and %d more blobs left behind (the registry's log lists each)\n", rep.MoreFailures)
	}
}
