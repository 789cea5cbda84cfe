package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/buildinfo"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1 "github.com/berth-registry/berth/internal/api/config/v1"
	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// ClusterOperatorKey is where the registry's ClusterOperator is stored.
var ClusterOperatorKey = store.ObjectKey{Group: configv1.GroupName, Resource: "clusteroperators", Name: configv1.ImageRegistryOperator}

// unionConditions derives the ClusterOperator's Available, Progressing and
// Degraded from the Config's conditions as the reference does: each takes
// every condition whose type ends with its name; its status is the first
// abnormal one found (or Unknown), its reason the non-trivial reasons
// prefixed by what precedes the name, and its message every message
// prefixed by its condition's type.
func unionConditions(conds []imageregistryv1.OperatorCondition) []configv1.ClusterOperatorCondition {
	normal := []struct{ typ, status string }{{"Available", "True"}, {"Progressing", "False"}, {"Degraded", "False"}}
	var out []configv1.ClusterOperatorCondition
	for _, n := range normal {
		c := configv1.ClusterOperatorCondition{Type: n.typ, Status: n.status}
		var reasons, messages []string
		unknown, abnormal := false, ""
		for _, in := range conds {
			if !strings.HasSuffix(in.Type, n.typ) {
				continue
			}
			switch {
			case in.Status == "Unknown":
				unknown = true
			case in.Status != n.status && abnormal == "":
				abnormal = in.Status
			}
			if in.Reason != "" && in.Reason != "AsExpected" {
				reasons = append(reasons, strings.TrimSuffix(in.Type, n.typ)+in.Reason)
			}
			for _, line := range strings.Split(in.Message, "\n") {
				if line != "" {
					messages = append(messages, in.Type+": "+line)
				}
			}
			if in.LastTransitionTime.After(c.LastTransitionTime.Time) {
				c.LastTransitionTime = in.LastTransitionTime
			}
		}
		switch {
		case abnormal != "":
			c.Status = abnormal
		case unknown:
			c.Status = "Unknown"
		}
		slices.Sort(reasons)
		c.Reason = strings.Join(reasons, "::")
		if c.Reason == "" && c.Status == n.status {
			c.Reason = "AsExpected"
		}
		c.Message = strings.Join(messages, "\n")
		out = append(out, c)
	}
	return out
}

// imagePrunerConditions are the ImagePruner's conditions as the
// ClusterOperator takes them, their types prefixed (ImagePrunerDegraded);
// none while it has none (or cannot be read: the next pass reads again).
func (o *Operator) imagePrunerConditions(ctx context.Context) []imageregistryv1.OperatorCondition {
	rec, err := o.opts.Store.GetObject(ctx, ImagePrunerKey)
	if err != nil {
		return nil
	}
	p := &imageregistryv1.ImagePruner{}
	if err := json.Unmarshal(rec.Body, p); err != nil {
		return nil
	}
	out := make([]imageregistryv1.OperatorCondition, 0, len(p.Status.Conditions))
	for _, c := range p.Status.Conditions {
		c.Type = "ImagePruner" + c.Type
		out = append(out, c)
	}
	return out
}

// writeClusterOperator stores the ClusterOperator for the Config's
// conditions and the ImagePruner's, unless it already says that.
func (o *Operator) writeClusterOperator(ctx context.Context, conds []imageregistryv1.OperatorCondition) error {
	want := configv1.ClusterOperatorStatus{
		Conditions: unionConditions(append(slices.Clone(conds), o.imagePrunerConditions(ctx)...)),
		Versions:   []configv1.OperandVersion{{Name: "operator", Version: Version()}},
		RelatedObjects: []configv1.ObjectReference{
			{Group: imageregistryv1.GroupName, Resource: "configs", Name: imageregistryv1.ConfigName},
			{Group: imageregistryv1.GroupName, Resource: imageregistryv1.ImagePrunerResource, Name: imageregistryv1.ConfigName},
			{Group: "", Resource: "namespaces", Name: imageregistryv1.Namespace},
		},
	}
	rec, err := o.opts.Store.GetObject(ctx, ClusterOperatorKey)
	co := &configv1.ClusterOperator{}
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
		co.Name = configv1.ImageRegistryOperator
		co.UID = typesUID()
		co.CreationTimestamp = metav1.NewTime(o.opts.Now().UTC().Truncate(time.Second))
	case err != nil:
		return fmt.Errorf("read the ClusterOperator: %w", err)
	default:
		if err := json.Unmarshal(rec.Body, co); err != nil {
			return fmt.Errorf("decode the ClusterOperator: %w", err)
		}
		if normalizeJSON(co.Status) == normalizeJSON(want) {
			return nil
		}
	}
	co.Status = want
	co.APIVersion, co.Kind = configv1.GroupName+"/v1", "ClusterOperator"
	co.ResourceVersion, co.ManagedFields = "", nil
	body, err := json.Marshal(co)
	if err != nil {
		return err
	}
	out := store.Object{ObjectKey: ClusterOperatorKey, UID: string(co.UID), Created: co.CreationTimestamp.Time, Labels: co.Labels, Body: body}
	if rec.ResourceVersion == 0 {
		_, err = o.opts.Store.CreateObject(ctx, out)
	} else {
		_, err = o.opts.Store.UpdateObject(ctx, out, rec.ResourceVersion)
	}
	if errors.Is(err, errdefs.ErrConflict) || errors.Is(err, errdefs.ErrAlreadyExists) || errors.Is(err, errdefs.ErrNotFound) {
		return nil // written meanwhile: the next pass compares again
	}
	if err != nil {
		return fmt.Errorf("write the ClusterOperator: %w", err)
	}
	return nil
}

func normalizeJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Version is Berth's version as the ClusterOperator reports it: the
// module version, or the VCS revision of a development build.
func Version() string {
	bi := buildinfo.Read()
	if bi.Version != "" {
		return strings.TrimPrefix(bi.Version, "v")
	}
	if !bi.Recorded {
		return "unknown"
	}
	if bi.Revision == "" {
		return "0.0.0-dev"
	}
	rev := bi.ShortRevision()
	if bi.Modified {
		rev += "-dirty"
	}
	return "0.0.0-" + rev
}
