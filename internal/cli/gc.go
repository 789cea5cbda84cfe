package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/gc"
)

const pathGarbageCollection = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster/garbagecollection"

func newGCCommand() *cobra.Command {
	var dryRun, confirm, quiet bool
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "gc [--confirm] [--grace=DURATION]",
		Short: "Delete the blobs and manifests nothing references (a dry run unless --confirm)",
		Long: `Delete the blobs and manifests nothing references any more, while the
registry serves: pushes and pulls go on. A manifest goes when no repository
links it, no tag's history names it and no stored index references it; a blob
goes when no stored manifest references it (an upload no manifest came for,
the layers of deleted images). Either is kept for the grace period after it
was last pushed, linked or uploaded (the server's --gc-grace, a day by
default), so that a push in progress never loses what it uploaded.

An image stays while a repository links it (it is pullable by digest) or a
tag's history names it (a rollback can go back to it). Deleting an image (a
DELETE of its manifest) unlinks it; its history entries stay until the
history passes the registry Config's spec.imageStreams.tagHistoryLimit (25
entries per tag by default).

Without --confirm this is a dry run: it lists what would be deleted, with the
bytes and the reason, and deletes nothing. The server also collects on its
own, every --gc-interval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dryRun && confirm {
				return errors.New("--dry-run and --confirm contradict each other")
			}
			_, c, err := session()
			if err != nil {
				return err
			}
			q := url.Values{}
			if !confirm {
				q.Set("dryRun", "All")
			}
			if cmd.Flags().Changed("grace") {
				if grace < 0 {
					return errors.New("--grace must be 0s or more")
				}
				q.Set("grace", grace.String())
			}
			path := pathGarbageCollection
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var rep gc.Report
			if err := runAction(cmd, c, path, "a garbage collection", &rep); err != nil {
				return err
			}
			printGCReport(cmd.OutOrStdout(), rep, quiet)
			return failIfErrors(cmd, rep.Errors, "garbage collection left some content for the next run")
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "delete; without it, only list what would be deleted")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be deleted, and delete nothing (the default)")
	cmd.Flags().DurationVar(&grace, "grace", 0, "keep what was pushed, linked or uploaded within this long (default: the server's --gc-grace)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the totals only, not each manifest and blob")
	return cmd
}

func printGCReport(out io.Writer, rep gc.Report, quiet bool) {
	verb := "Deleted"
	if rep.DryRun {
		verb = "Would delete"
	}
	if !quiet && len(rep.Items) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tDIGEST\tSIZE\tTOUCHED\tREASON")
		for _, it := range rep.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.Kind, it.Digest, formatSize(it.Size), it.Touched.Format(time.RFC3339), it.Reason)
		}
		tw.Flush()
		if rep.Unlisted > 0 {
			fmt.Fprintf(out, "(%d more not listed)\n", rep.Unlisted)
		}
	}
	fmt.Fprintf(out, "%s %d manifests and %d blobs, freeing %s (grace period %s).\n",
		verb, rep.ManifestsDeleted, rep.BlobsDeleted, formatSize(rep.BytesFreed), rep.Grace)
	if rep.PendingManifests+rep.PendingBlobs > 0 {
		fmt.Fprintf(out, "Within the grace period, kept for now: %d manifests and %d blobs.\n", rep.PendingManifests, rep.PendingBlobs)
	}
	if rep.DryRun {
		fmt.Fprintln(out, "This was a dry run: run again with --confirm to delete.")
	}
}

// formatSize is n bytes for people: 512 B, 3.4 MiB.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// runAction runs the administrative action at path (a POST whose answer
// may take long) and decodes its report, what, into rep.
func runAction(cmd *cobra.Command, c *apiClient, path, what string, rep any) error {
	resp, err := c.stream(cmd.Context(), http.MethodPost, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(rep); err != nil {
		return fmt.Errorf("the server's answer is not %s report: %w", what, err)
	}
	return nil
}

// failIfErrors prints a report's errors on stderr and fails with summary
// when there are any.
func failIfErrors(cmd *cobra.Command, errs []string, summary string) error {
	if len(errs) == 0 {
		return nil
	}
	for _, e := range errs {
		fmt.Fprintln(cmd.ErrOrStderr(), "error:", e)
	}
	return errors.New(summary)
}
