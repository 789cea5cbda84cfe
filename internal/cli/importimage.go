package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
)

func newImportImageCommand() *cobra.Command {
	var project, from, referencePolicy, importMode string
	var confirm, all, insecure, scheduled, dryRun bool
	cmd := &cobra.Command{
		Use:   "import-image STREAM[:TAG] [--from=REGISTRY/REPO[:TAG|@DIGEST]] [--confirm] [--all]",
		Short: "Import images from another registry into an image stream",
		Long: `Import an image (or, with --all, every tag of a repository, up to the server's
maximum) from another registry into the image stream STREAM of the project. The
manifests and configs are fetched now; the layers are fetched from the upstream on
the first pull (pull-through). --confirm creates the stream if it does not exist.
Without --from, the tag's existing source is imported again (--all: every tag
whose source is another registry). The project's kubernetes.io/dockerconfigjson
secrets are the credentials; the cluster image config's additional trusted CAs
and registry sources apply.`,
		Example: `  berth import-image busybox:1.36 --from=docker.io/library/busybox:1.36 --confirm
  berth import-image app --from=registry.example.com:5000/team/app --all --confirm
  berth import-image app:stable --scheduled   # re-imported every 15 minutes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := projectSession(project)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			target := args[0]
			if strings.Contains(target, "@") {
				return errors.New("to import an image by digest into a tag, use berth tag --source=docker")
			}
			stream, tag, hasTag := strings.Cut(target, ":")
			if hasTag && all {
				return errors.New("--all imports every tag: name the stream without a tag")
			}
			if !hasTag {
				tag = "latest"
			}
			switch strings.ToLower(referencePolicy) {
			case "", "source":
				referencePolicy = "Source"
			case "local":
				referencePolicy = "Local"
			default:
				return fmt.Errorf("--reference-policy is source or local, not %q", referencePolicy)
			}
			switch importMode {
			case "", "Legacy", "PreserveOriginal":
			default:
				return fmt.Errorf("--import-mode is Legacy or PreserveOriginal, not %q", importMode)
			}
			var is imagev1.ImageStream
			path := pathImageAPI + "/namespaces/" + url.PathEscape(ns) + "/imagestreams/" + url.PathEscape(stream)
			exists := true
			if err := c.do(ctx, http.MethodGet, path, nil, &is); err != nil {
				if !isNotFound(err) {
					return err
				}
				exists = false
			}
			if !exists && !confirm {
				return fmt.Errorf("no image stream named %q exists in project %q: pass --confirm to create it and import", stream, ns)
			}
			policy := imagev1.TagImportPolicy{Insecure: insecure, Scheduled: scheduled, ImportMode: importMode}
			refPolicy := imagev1.TagReferencePolicy{Type: referencePolicy}
			isi := imagev1.ImageStreamImport{
				TypeMeta:   metaType("ImageStreamImport"),
				ObjectMeta: metav1.ObjectMeta{Name: stream, Namespace: ns},
				Spec:       imagev1.ImageStreamImportSpec{Import: !dryRun},
			}
			switch {
			case all && from != "":
				isi.Spec.Repository = &imagev1.RepositoryImportSpec{From: imagev1.ObjectReference{Kind: imagev1.KindDockerImage, Name: from},
					ImportPolicy: policy, ReferencePolicy: refPolicy}
			case all:
				for _, t := range is.Spec.Tags {
					if t.From != nil && t.From.Kind == imagev1.KindDockerImage {
						isi.Spec.Images = append(isi.Spec.Images, imageImport(t.Name, t.From.Name, mergePolicy(t.ImportPolicy, policy, cmd), refPolicy))
					}
				}
				if len(isi.Spec.Images) == 0 {
					return fmt.Errorf("image stream %q has no tag imported from another registry: pass --from", stream)
				}
			default:
				var spec *imagev1.TagReference
				for i := range is.Spec.Tags {
					if is.Spec.Tags[i].Name == tag {
						spec = &is.Spec.Tags[i]
					}
				}
				switch {
				case spec != nil && spec.From != nil && spec.From.Kind != imagev1.KindDockerImage:
					return fmt.Errorf("tag %q points to existing %s %q, it cannot be re-imported", tag, spec.From.Kind, spec.From.Name)
				case spec != nil && spec.From != nil && from != "" && from != spec.From.Name:
					return fmt.Errorf("tag %q already imports %q: change its source in the stream's spec (berth edit is %s -n %s)", tag, spec.From.Name, stream, ns)
				case spec != nil && spec.From != nil:
					from = spec.From.Name
					policy = mergePolicy(spec.ImportPolicy, policy, cmd)
				case from == "":
					return fmt.Errorf("tag %q of %q imports nothing yet: pass --from=REGISTRY/REPO[:TAG]", tag, stream)
				}
				isi.Spec.Images = []imagev1.ImageImportSpec{imageImport(tag, from, policy, refPolicy)}
			}
			if isTerminal(cmd.ErrOrStderr()) {
				what := from
				if what == "" {
					what = fmt.Sprintf("%d tags", len(isi.Spec.Images))
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Importing %s into %s/%s…\n", what, ns, stream)
			}
			start := time.Now()
			var out imagev1.ImageStreamImport
			if err := c.do(ctx, http.MethodPost, pathImageAPI+"/namespaces/"+url.PathEscape(ns)+"/imagestreamimports", isi, &out); err != nil {
				return err
			}
			return printImport(cmd, ns, stream, &out, dryRun, time.Since(start))
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the image (or, with --all, the repository) to import: REGISTRY/REPO[:TAG|@DIGEST]")
	cmd.Flags().BoolVar(&confirm, "confirm", false, "create the image stream if it does not exist")
	cmd.Flags().BoolVar(&all, "all", false, "import every tag of the repository (up to the server's maximum)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP or an unverified certificate for this import")
	cmd.Flags().BoolVar(&scheduled, "scheduled", false, "import again periodically (the server's scheduled-import interval)")
	cmd.Flags().StringVar(&referencePolicy, "reference-policy", "source", "how the tag's images are referred to: source (the upstream) or local (pulled through this registry)")
	cmd.Flags().StringVar(&importMode, "import-mode", "", "Legacy (one platform of an index) or PreserveOriginal (the whole index)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "look the images up without importing them")
	addProjectFlag(cmd, &project)
	return cmd
}

// mergePolicy is a tag's import policy with the flags given on the
// command line over it.
func mergePolicy(cur, flags imagev1.TagImportPolicy, cmd *cobra.Command) imagev1.TagImportPolicy {
	if cmd.Flags().Changed("insecure") {
		cur.Insecure = flags.Insecure
	}
	if cmd.Flags().Changed("scheduled") {
		cur.Scheduled = flags.Scheduled
	}
	if cmd.Flags().Changed("import-mode") {
		cur.ImportMode = flags.ImportMode
	}
	return cur
}

func imageImport(tag, from string, policy imagev1.TagImportPolicy, ref imagev1.TagReferencePolicy) imagev1.ImageImportSpec {
	return imagev1.ImageImportSpec{From: imagev1.ObjectReference{Kind: imagev1.KindDockerImage, Name: from},
		To: &imagev1.LocalObjectReference{Name: tag}, ImportPolicy: policy, ReferencePolicy: ref}
}

// printImport reports each tag's outcome; any failure makes the command
// fail, as the reference's does.
func printImport(cmd *cobra.Command, ns, stream string, isi *imagev1.ImageStreamImport, dryRun bool, took time.Duration) error {
	out := cmd.OutOrStdout()
	results := isi.Status.Images
	var additional []string
	if r := isi.Status.Repository; r != nil {
		if r.Status.Status == "Failure" && len(r.Images) == 0 {
			return fmt.Errorf("import of %s/%s failed: %s", ns, stream, r.Status.Message)
		}
		results = append(results, r.Images...)
		additional = r.AdditionalTags
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TAG\tIMAGE\tFROM")
	var failed []string
	for _, res := range results {
		if res.Status.Status != "Success" {
			failed = append(failed, fmt.Sprintf("tag %s failed: %s", res.Tag, res.Status.Message))
			continue
		}
		if res.Image != nil {
			fmt.Fprintf(w, "%s\t%s\t%s\n", res.Tag, res.Image.Name, res.Image.DockerImageReference)
		}
	}
	w.Flush()
	verb := "imported into"
	if dryRun {
		verb = "found for (dry run)"
	}
	fmt.Fprintf(out, "%d of %d images %s %s/%s in %s.\n", len(results)-len(failed), len(results), verb, ns, stream, took.Round(time.Millisecond))
	if len(additional) > 0 {
		fmt.Fprintf(out, "The remote repository contained %d additional tags which were not imported: %s\n", len(additional), strings.Join(additional, ", "))
	}
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintln(cmd.ErrOrStderr(), "error: "+f)
		}
		return errors.New("import completed with errors")
	}
	return nil
}

func metaType(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: imagev1.GroupName + "/v1", Kind: kind}
}
