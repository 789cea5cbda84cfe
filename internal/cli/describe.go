package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	kdescribe "k8s.io/kubectl/pkg/describe"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
)

// describerFor is kubectl's describer choice, with Berth's own for the
// image streams kubectl does not know (kubectl would print the fields
// generically; the reference's CLI shows tags, history and where to pull).
func describerFor(getter genericclioptions.RESTClientGetter, mapping *meta.RESTMapping) (kdescribe.ResourceDescriber, error) {
	if mapping.GroupVersionKind.Group == imagev1.GroupName && mapping.GroupVersionKind.Kind == "ImageStream" {
		rc, err := getter.ToRESTConfig()
		if err != nil {
			return nil, err
		}
		client, err := dynamic.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		return imageStreamDescriber{client: client, mapping: mapping}, nil
	}
	return kdescribe.Describer(getter, mapping)
}

type imageStreamDescriber struct {
	client  dynamic.Interface
	mapping *meta.RESTMapping
}

func (d imageStreamDescriber) Describe(namespace, name string, _ kdescribe.DescriberSettings) (string, error) {
	u, err := d.client.Resource(d.mapping.Resource).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	raw, err := u.MarshalJSON()
	if err != nil {
		return "", err
	}
	var is imagev1.ImageStream
	if err := json.Unmarshal(raw, &is); err != nil {
		return "", fmt.Errorf("read imagestream %s/%s: %w", namespace, name, err)
	}
	var buf bytes.Buffer
	describeImageStream(&buf, &is, time.Now())
	return buf.String(), nil
}

// describeImageStream writes what `oc describe is` shows: the stream, then
// each tag with its history, newest first, the current image marked *.
func describeImageStream(out io.Writer, is *imagev1.ImageStream, now time.Time) {
	w := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	images := map[string]bool{}
	for _, t := range is.Status.Tags {
		for _, ev := range t.Items {
			images[ev.Image] = true
		}
	}
	fmt.Fprintf(w, "Name:\t%s\n", is.Name)
	fmt.Fprintf(w, "Namespace:\t%s\n", is.Namespace)
	fmt.Fprintf(w, "Created:\t%s ago\n", since(is.CreationTimestamp.Time, now))
	fmt.Fprintf(w, "Labels:\t%s\n", keyValues(is.Labels))
	fmt.Fprintf(w, "Annotations:\t%s\n", keyValues(is.Annotations))
	fmt.Fprintf(w, "Image Repository:\t%s\n", orNone(is.Status.DockerImageRepository))
	if is.Status.PublicDockerImageRepository != "" {
		fmt.Fprintf(w, "Public Repository:\t%s\n", is.Status.PublicDockerImageRepository)
	}
	fmt.Fprintf(w, "Image Lookup:\tlocal=%t\n", is.Spec.LookupPolicy.Local)
	fmt.Fprintf(w, "Unique Images:\t%d\n", len(images))
	fmt.Fprintf(w, "Tags:\t%d\n", len(is.Status.Tags))
	_ = w.Flush()
	for _, t := range is.Status.Tags {
		fmt.Fprintf(out, "\n%s\n  pushed image\n\n", t.Tag)
		for i, ev := range t.Items {
			mark := " "
			if i == 0 {
				mark = "*"
			}
			fmt.Fprintf(out, "  %s %s\n      %s ago\n", mark, ev.DockerImageReference, since(ev.Created.Time, now))
		}
	}
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// keyValues prints labels or annotations as kubectl does on one line:
// key=value, sorted, "<none>" for none.
func keyValues(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
