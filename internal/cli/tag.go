package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/imagestream"
)

const pathImageAPI = "/apis/" + imagev1.GroupName + "/v1"

// tagRef is [project/]stream:tag or [project/]stream@digest.
type tagRef struct {
	project, stream, ref string
	byDigest             bool
}

func (t tagRef) String() string {
	sep := ":"
	if t.byDigest {
		sep = "@"
	}
	return t.project + "/" + t.stream + sep + t.ref
}

func (t tagRef) name() string { return t.stream + ":" + t.ref }

// parseTagRef reads [project/]stream:tag (and stream@digest when
// digestOK), in project unless it names one.
func parseTagRef(s, project string, digestOK bool) (tagRef, error) {
	t := tagRef{project: project}
	rest := s
	if p, r, ok := strings.Cut(s, "/"); ok {
		t.project, rest = p, r
	}
	if stream, d, ok := strings.Cut(rest, "@"); ok && digestOK {
		t.stream, t.ref, t.byDigest = stream, d, true
	} else if stream, tag, ok := strings.Cut(rest, ":"); ok {
		t.stream, t.ref = stream, tag
	}
	if t.ref == "" {
		t.stream = ""
	}
	if t.project == "" && t.stream != "" {
		return tagRef{}, fmt.Errorf("%q names no project: write PROJECT/%s, pass -n PROJECT, or choose a current one with berth project NAME", s, rest)
	}
	if t.project == "" || t.stream == "" || t.ref == "" || strings.ContainsAny(t.stream, "/:@") {
		want := "[PROJECT/]STREAM:TAG"
		if digestOK {
			want += " or [PROJECT/]STREAM@DIGEST"
		}
		return tagRef{}, fmt.Errorf("%q is not %s", s, want)
	}
	return t, nil
}

// optionalProjectSession is session for a command whose arguments may
// name their projects: the project is -n, else the current one, else "".
func optionalProjectSession(flag string) (*apiClient, string, error) {
	cfg, c, err := session()
	if err != nil {
		return nil, "", err
	}
	ns, _ := projectOf(cfg, flag)
	return c, ns, nil
}

func istagPath(t tagRef) string {
	return pathImageAPI + "/namespaces/" + url.PathEscape(t.project) + "/imagestreamtags/" + url.PathEscape(t.name())
}

func newTagCommand() *cobra.Command {
	var project, source string
	var alias, del bool
	cmd := &cobra.Command{
		Use:   "tag [--source=imagestreamtag|imagestreamimage|docker] SOURCE DEST [DEST...] | tag -d DEST...",
		Short: "Point tags at an image already in the registry, or make them follow another tag",
		Long: `Point each DEST ([PROJECT/]STREAM:TAG) at the image SOURCE names now:
[PROJECT/]STREAM:TAG or [PROJECT/]STREAM@sha256:… (or, with --source=docker, a pull
spec of another registry, brought in by an import). With --alias, DEST follows the
SOURCE tag: it moves whenever SOURCE moves. Each change is one more entry of the
tag's history (berth rollback goes back). -d deletes the DEST tags.`,
		Example: `  berth tag team/app:latest team/app:prod
  berth tag app@sha256:5f0c… app:v1 app:stable
  berth tag --alias app:latest app:edge
  berth tag -d app:old`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := optionalProjectSession(project)
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if del {
				for _, a := range args {
					t, err := parseTagRef(a, ns, false)
					if err != nil {
						return err
					}
					if err := c.do(ctx, http.MethodDelete, istagPath(t), nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(out, "Deleted tag %s.\n", t)
				}
				return nil
			}
			if len(args) < 2 {
				return errors.New("name a SOURCE and at least one DEST (or -d DEST to delete)")
			}
			var dsts []tagRef
			for _, a := range args[1:] {
				dst, err := parseTagRef(a, ns, false)
				if err != nil {
					return err
				}
				dsts = append(dsts, dst)
			}
			if alias {
				src, err := parseTagRef(args[0], ns, true)
				if err != nil {
					return err
				}
				for _, dst := range dsts {
					if dst.project != src.project || dst.stream != src.stream {
						return fmt.Errorf("--alias follows a tag of the same image stream: %s is in another stream than %s", dst, src)
					}
				}
			}
			from, shown, err := tagSource(cmd, c, ns, args[0], source, alias)
			if err != nil {
				return err
			}
			for _, dst := range dsts {
				body := map[string]any{"apiVersion": imagev1.GroupName + "/v1", "kind": "ImageStreamTag",
					"metadata": map[string]any{"name": dst.name(), "namespace": dst.project},
					"tag":      map[string]any{"name": dst.ref, "from": from}}
				if err := c.do(ctx, http.MethodPut, istagPath(dst), body, nil); err != nil {
					return err
				}
				if alias {
					fmt.Fprintf(out, "Tag %s set up to track %s.\n", dst, shown)
				} else {
					fmt.Fprintf(out, "Tag %s set to %s.\n", dst, shown)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "what SOURCE is: imagestreamtag, imagestreamimage or docker (default: from its form)")
	cmd.Flags().BoolVar(&alias, "alias", false, "make DEST follow the SOURCE tag instead of taking its image once")
	cmd.Flags().BoolVarP(&del, "delete", "d", false, "delete the named tags")
	addProjectFlag(cmd, &project)
	return cmd
}

// tagSource is the from of the tags berth tag writes, and how to show it.
// A tag without --alias is resolved to its image now, as the reference's
// oc tag does: DEST takes the image, not the tag.
func tagSource(cmd *cobra.Command, c *apiClient, ns, arg, kind string, alias bool) (map[string]any, string, error) {
	if kind == "docker" {
		if alias {
			return nil, "", errors.New("--alias follows a tag of this registry, not a --source=docker image")
		}
		return map[string]any{"kind": imagev1.KindDockerImage, "name": arg}, arg, nil
	}
	src, err := parseTagRef(arg, ns, true)
	if err != nil {
		return nil, "", err
	}
	switch kind {
	case "", "imagestreamtag", "istag", "imagestreamimage", "isimage":
	default:
		return nil, "", fmt.Errorf("--source is imagestreamtag, imagestreamimage or docker, not %q", kind)
	}
	if src.byDigest != (kind == "imagestreamimage" || kind == "isimage") && kind != "" {
		return nil, "", fmt.Errorf("SOURCE %q does not match --source=%s", arg, kind)
	}
	ref := func(k, name string) map[string]any {
		return map[string]any{"kind": k, "namespace": src.project, "name": name}
	}
	switch {
	case src.byDigest && alias:
		return nil, "", errors.New("--alias follows a tag, not an image by digest")
	case src.byDigest:
		return ref(imagev1.KindImageStreamImage, src.stream+"@"+src.ref), src.String(), nil
	case alias:
		return ref(imagev1.KindImageStreamTag, src.name()), src.String(), nil
	}
	var ist imagev1.ImageStreamTag
	if err := c.do(cmd.Context(), http.MethodGet, istagPath(src), nil, &ist); err != nil {
		return nil, "", err
	}
	image := ist.Image.Name
	return ref(imagev1.KindImageStreamImage, src.stream+"@"+image), src.project + "/" + src.stream + "@" + image, nil
}

func newRollbackCommand() *cobra.Command {
	var project, to string
	cmd := &cobra.Command{
		Use:   "rollback [PROJECT/]STREAM:TAG [--to N|--to sha256:…]",
		Short: "Point a tag back at an earlier image of its history",
		Long: `Point the tag at an earlier entry of its history: by default the newest image
other than the current one; --to N takes entry N as status.tags[].items lists it
(0 is the current one, 1 the one before), --to sha256:… the entry with that image.
The rollback is one more history entry: nothing is rewritten, and rolling back
again goes forward.`,
		Example: `  berth rollback app:latest
  berth rollback team/app:latest --to 3
  berth rollback app:latest --to sha256:5f0c…`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := optionalProjectSession(project)
			if err != nil {
				return err
			}
			t, err := parseTagRef(args[0], ns, false)
			if err != nil {
				return err
			}
			var is imagev1.ImageStream
			path := pathImageAPI + "/namespaces/" + url.PathEscape(t.project) + "/imagestreams/" + url.PathEscape(t.stream)
			if err := c.do(cmd.Context(), http.MethodGet, path, nil, &is); err != nil {
				return err
			}
			var items []imagev1.TagEvent
			for _, tag := range is.Status.Tags {
				if tag.Tag == t.ref {
					items = tag.Items
				}
			}
			if len(items) == 0 {
				return fmt.Errorf("tag %s has no history to roll back", t)
			}
			image, err := imagestream.RollbackTarget(items, to)
			if err != nil {
				return fmt.Errorf("roll back %s: %w", t, err)
			}
			if image == items[0].Image {
				fmt.Fprintf(cmd.OutOrStdout(), "Tag %s already points at %s.\n", t, image)
				return nil
			}
			body := map[string]any{"apiVersion": imagev1.GroupName + "/v1", "kind": "ImageStreamTag",
				"metadata": map[string]any{"name": t.name(), "namespace": t.project},
				"tag": map[string]any{"name": t.ref, "from": map[string]any{
					"kind": imagev1.KindImageStreamImage, "name": t.stream + "@" + image}}}
			if err := c.do(cmd.Context(), http.MethodPut, istagPath(t), body, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Rolled back %s to %s.\n", t, image)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the entry to go back to: its number (0 is the current one) or its image digest")
	addProjectFlag(cmd, &project)
	return cmd
}
