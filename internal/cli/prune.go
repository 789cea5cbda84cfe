package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/prune"
)

const pathImagePrune = "/apis/imageregistry.operator.openshift.io/v1/imagepruners/cluster/prune"

func newPruneCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove images and history the registry no longer needs",
	}
	cmd.AddCommand(newPruneImagesCommand())
	return cmd
}

func newPruneImagesCommand() *cobra.Command {
	var confirm bool
	var keepRevisions int
	var keepYounger time.Duration
	cmd := &cobra.Command{
		Use:   "images [--keep-tag-revisions=N] [--keep-younger-than=DURATION] [--confirm]",
		Short: "Trim tag histories and remove the images nothing kept names (a dry run unless --confirm)",
		Long: `Prune images, as the reference's oc adm prune images does, in every repository:

- each tag's history keeps its newest --keep-tag-revisions revisions (3) and
  every entry younger than --keep-younger-than (60m); the current image of a
  tag always stays;
- an image the repository holds goes when no kept history entry names it, it
  was pushed before --keep-younger-than, no kept index lists it and it refers
  to no kept image (a signature or an SBOM of a kept image stays).

Without --confirm this is a dry run listing what would go; with it, the same
is removed (a run is planned and carried out per repository while pushes to
it wait). The images' blobs are freed by garbage collection once nothing
else references them (berth adm gc). Needs the system:image-pruner role
everywhere (berth adm policy add-cluster-role-to-user system:image-pruner USER).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keepRevisions < 0 || keepYounger < 0 {
				return errors.New("--keep-tag-revisions and --keep-younger-than must not be negative")
			}
			_, c, err := session()
			if err != nil {
				return err
			}
			q := url.Values{"keepTagRevisions": {strconv.Itoa(keepRevisions)}, "keepYoungerThan": {keepYounger.String()}}
			if !confirm {
				q.Set("dryRun", "All")
			}
			var rep prune.Report
			if err := runAction(cmd, c, pathImagePrune+"?"+q.Encode(), "an image pruning", &rep); err != nil {
				return err
			}
			printPruneReport(cmd.OutOrStdout(), rep)
			return failIfErrors(cmd, rep.Errors, "image pruning left some repositories as they were")
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "remove; without it, only list what would be removed")
	cmd.Flags().IntVar(&keepRevisions, "keep-tag-revisions", prune.DefaultKeepTagRevisions, "revisions of each tag's history to keep")
	cmd.Flags().DurationVar(&keepYounger, "keep-younger-than", prune.DefaultKeepYoungerThan, "keep history entries and images younger than this")
	return cmd
}

func printPruneReport(out io.Writer, rep prune.Report) {
	if len(rep.Repositories) > 0 {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REPOSITORY\tWHAT\tIMAGE\tCREATED\tDETAIL")
		for _, r := range rep.Repositories {
			for _, rev := range r.Revisions {
				image := string(rev.Digest)
				if image == "" {
					image = "(tag deleted)"
				}
				fmt.Fprintf(tw, "%s\thistory\t%s\t%s\t%s, revision %d\n", r.Repository, image, rev.Created.Format(time.RFC3339), rev.Tag, rev.Revision)
			}
			for _, im := range r.Images {
				fmt.Fprintf(tw, "%s\timage\t%s\t%s\t%s manifest\n", r.Repository, im.Digest, im.Created.Format(time.RFC3339), formatSize(im.Size))
			}
		}
		tw.Flush()
		if rep.Unlisted > 0 {
			fmt.Fprintf(out, "(%d more not listed)\n", rep.Unlisted)
		}
	}
	verb := "Removed"
	if !rep.Confirm {
		verb = "Would remove"
	}
	fmt.Fprintf(out, "%s %d history entries and %d images in %d repositories (keeping %d tag revisions and what is younger than %s).\n",
		verb, rep.Revisions, rep.Images, len(rep.Repositories), rep.KeepTagRevisions, rep.KeepYoungerThan)
	if !rep.Confirm {
		fmt.Fprintln(out, "This was a dry run: run again with --confirm to remove.")
	} else if rep.Images > 0 {
		fmt.Fprintln(out, "Garbage collection frees their blobs once nothing else references them (berth adm gc).")
	}
}
