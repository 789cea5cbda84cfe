package apiserver

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-registry/berth/internal/quota"
)

// A project's ResourceQuotas and LimitRanges bound its pushes (the store
// enforces them as content arrives). Only cluster administrators write
// them: the project's own roles read them, as on Kubernetes. A quota's
// status is not stored but read from the store whenever it is shown, so
// `used` is what the project holds at that moment.
var resourceQuotaKind = &storedKind{
	info:    servedResource("", quota.ResourceQuotas),
	new:     func() object { return &corev1.ResourceQuota{} },
	builtin: true,
	prepare: func(o object) { o.(*corev1.ResourceQuota).Status = corev1.ResourceQuotaStatus{} },
	validate: func(o object) []string {
		return quota.ValidateQuota(o.(*corev1.ResourceQuota))
	},
	present: func(ctx context.Context, s *Server, o object) error {
		q := o.(*corev1.ResourceQuota)
		u, err := s.opts.Store.ProjectUsage(ctx, q.Namespace)
		if err != nil {
			return fmt.Errorf("usage of %s: %w", q.Namespace, err)
		}
		quota.Status(q, u)
		return nil
	},
	columns: []metav1.TableColumnDefinition{columnName, columnAge,
		column("Request", "What the project holds of each bound, and the bound (used/hard).", 0)},
	cells: func(o object) []any {
		q := o.(*corev1.ResourceQuota)
		var parts []string
		for name, hard := range q.Status.Hard {
			used := q.Status.Used[name]
			parts = append(parts, fmt.Sprintf("%s: %s/%s", name, used.String(), hard.String()))
		}
		slices.Sort(parts)
		return []any{q.Name, age(q), strings.Join(parts, ", ")}
	},
}

var limitRangeKind = &storedKind{
	info:    servedResource("", quota.LimitRanges),
	new:     func() object { return &corev1.LimitRange{} },
	builtin: true,
	validate: func(o object) []string {
		return quota.ValidateLimitRange(o.(*corev1.LimitRange))
	},
	columns: []metav1.TableColumnDefinition{columnName, {Name: "Created At", Type: "date",
		Description: "When the limit range was created."}},
	cells: func(o object) []any {
		return []any{o.GetName(), o.GetCreationTimestamp().UTC().Format("2006-01-02T15:04:05Z")}
	},
}
