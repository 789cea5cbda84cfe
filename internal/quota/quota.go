// Package quota is what a project's ResourceQuota and LimitRange objects
// mean to the registry: which of their fields bound its pushes, the
// limits the store enforces from them, and the usage their status shows.
// Berth enforces every field it accepts; the others are refused when the
// object is written, never stored and ignored.
package quota

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/berth-registry/berth/internal/store"
)

// The resources a ResourceQuota may bound, and the LimitRange type and
// resource an image's size is bounded by (the reference's names; the
// storage quota is Berth's own).
const (
	// ImageStreams counts a project's image streams (repositories).
	ImageStreams corev1.ResourceName = "openshift.io/imagestreams"
	// Storage is the bytes of the blobs and manifests a project's
	// repositories link, each counted once however many link it.
	Storage corev1.ResourceName = "berth.io/storage"
	// LimitTypeImage bounds each image pushed to a project.
	LimitTypeImage corev1.LimitType = "openshift.io/Image"
	// ImageStorage is the bound of an image's size: its layers and config.
	ImageStorage corev1.ResourceName = corev1.ResourceStorage
)

// Resources the API serves for quotas, in the core group.
const (
	ResourceQuotas = "resourcequotas"
	LimitRanges    = "limitranges"
)

var quotaResources = []corev1.ResourceName{ImageStreams, Storage}

// Policy is the store's view of the quota objects.
func Policy() store.LimitsPolicy {
	return store.LimitsPolicy{Group: "", Resources: []string{ResourceQuotas, LimitRanges}, Decide: Decide}
}

// Decide returns the limits a project's quota objects set: where several
// bound the same thing, the tightest.
func Decide(objects []store.Object) (store.Limits, error) {
	var l store.Limits
	for _, o := range objects {
		switch o.Resource {
		case ResourceQuotas:
			var q corev1.ResourceQuota
			if err := json.Unmarshal(o.Body, &q); err != nil {
				return store.Limits{}, fmt.Errorf("decode resourcequota %s: %w", o.Name, err)
			}
			by := fmt.Sprintf("quota: %s", q.Name)
			if v, ok := q.Spec.Hard[ImageStreams]; ok {
				l.ImageStreams = l.ImageStreams.Tighter(store.Limit{Max: v.Value(), By: by, Resource: string(ImageStreams)})
			}
			if v, ok := q.Spec.Hard[Storage]; ok {
				l.Storage = l.Storage.Tighter(store.Limit{Max: v.Value(), By: by, Resource: string(Storage)})
			}
		case LimitRanges:
			var lr corev1.LimitRange
			if err := json.Unmarshal(o.Body, &lr); err != nil {
				return store.Limits{}, fmt.Errorf("decode limitrange %s: %w", o.Name, err)
			}
			for _, item := range lr.Spec.Limits {
				if v, ok := item.Max[ImageStorage]; ok && item.Type == LimitTypeImage {
					l.ImageSize = l.ImageSize.Tighter(store.Limit{Max: v.Value(),
						By: fmt.Sprintf("limit range %s (%s max)", lr.Name, LimitTypeImage), Resource: string(ImageStorage)})
				}
			}
		}
	}
	return l, nil
}

// ValidateQuota returns why q cannot be stored: a bound Berth does not
// enforce, or one that is not a whole, non-negative count of its unit.
func ValidateQuota(q *corev1.ResourceQuota) []string {
	var problems []string
	if len(q.Spec.Scopes) > 0 {
		problems = append(problems, "spec.scopes: Forbidden: Berth's quotas bound the whole project; scopes select pods, and Berth runs none")
	}
	if q.Spec.ScopeSelector != nil {
		problems = append(problems, "spec.scopeSelector: Forbidden: Berth's quotas bound the whole project; scopes select pods, and Berth runs none")
	}
	for _, name := range sortedNames(q.Spec.Hard) {
		v := q.Spec.Hard[name]
		field := fmt.Sprintf("spec.hard[%s]", name)
		if !slices.Contains(quotaResources, name) {
			problems = append(problems, fmt.Sprintf("%s: Unsupported value: %q: Berth enforces %s", field, name, joinNames(quotaResources)))
			continue
		}
		problems = append(problems, quantityProblems(field, v)...)
	}
	return problems
}

// ValidateLimitRange returns why lr cannot be stored: Berth enforces the
// max storage of an image and nothing else.
func ValidateLimitRange(lr *corev1.LimitRange) []string {
	var problems []string
	for i, item := range lr.Spec.Limits {
		field := fmt.Sprintf("spec.limits[%d]", i)
		if item.Type != LimitTypeImage {
			problems = append(problems, fmt.Sprintf("%s.type: Unsupported value: %q: Berth enforces limits of type %s", field, item.Type, LimitTypeImage))
			continue
		}
		for what, list := range map[string]corev1.ResourceList{"min": item.Min, "default": item.Default,
			"defaultRequest": item.DefaultRequest, "maxLimitRequestRatio": item.MaxLimitRequestRatio} {
			if len(list) > 0 {
				problems = append(problems, fmt.Sprintf("%s.%s: Forbidden: Berth enforces only max %s of an image", field, what, ImageStorage))
			}
		}
		for _, name := range sortedNames(item.Max) {
			if name != ImageStorage {
				problems = append(problems, fmt.Sprintf("%s.max[%s]: Unsupported value: %q: an image's limit is its %s", field, name, name, ImageStorage))
				continue
			}
			problems = append(problems, quantityProblems(fmt.Sprintf("%s.max[%s]", field, name), item.Max[name])...)
		}
	}
	slices.Sort(problems)
	return problems
}

func quantityProblems(field string, v resource.Quantity) []string {
	if v.Sign() < 0 {
		return []string{fmt.Sprintf("%s: Invalid value: %q: must be greater than or equal to 0", field, v.String())}
	}
	if _, ok := v.AsInt64(); !ok {
		return []string{fmt.Sprintf("%s: Invalid value: %q: must be a whole number", field, v.String())}
	}
	return nil
}

// Status fills q's status with its bounds and what the project holds of
// each.
func Status(q *corev1.ResourceQuota, u store.Usage) {
	q.Status.Hard = q.Spec.Hard.DeepCopy()
	q.Status.Used = corev1.ResourceList{}
	for name := range q.Spec.Hard {
		switch name {
		case ImageStreams:
			q.Status.Used[name] = *resource.NewQuantity(u.ImageStreams, resource.DecimalSI)
		case Storage:
			q.Status.Used[name] = *resource.NewQuantity(u.StorageBytes, resource.BinarySI)
		}
	}
}

func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func joinNames(names []corev1.ResourceName) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, " and ")
}
