package imageregistryv1

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ImagePruner is imagepruners.imageregistry.operator.openshift.io/v1: when
// and how the registry prunes images (berth adm prune images) on its own.
// Berth runs the pruning itself, under a lease, where the reference's
// operator makes a CronJob.
type ImagePruner struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ImagePrunerSpec   `json:"spec"`
	Status            ImagePrunerStatus `json:"status,omitempty"`
}

// DeepCopyObject implements runtime.Object by a JSON round trip.
func (p *ImagePruner) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(p)
	if err != nil {
		return nil
	}
	out := new(ImagePruner)
	if err := json.Unmarshal(b, out); err != nil {
		return nil
	}
	return out
}

// ImagePrunerSpec is the reference's, field for field; the pod placement
// fields are refused (Berth prunes in its own process).
type ImagePrunerSpec struct {
	Schedule                     string                       `json:"schedule,omitempty" description:"When to prune, a cron expression (minute hour day month weekday) in UTC; default 0 0 * * *."`
	Suspend                      *bool                        `json:"suspend,omitempty" description:"Do not prune on the schedule."`
	KeepTagRevisions             *int                         `json:"keepTagRevisions,omitempty" description:"Revisions of each tag's history to keep; default 3."`
	KeepYoungerThan              *time.Duration               `json:"keepYoungerThan,omitempty" description:"Deprecated (nanoseconds): keepYoungerThanDuration wins when both are set."`
	KeepYoungerThanDuration      *metav1.Duration             `json:"keepYoungerThanDuration,omitempty" description:"Keep history entries and images younger than this; default 60m."`
	Resources                    *corev1.ResourceRequirements `json:"resources,omitempty" description:"Not supported by Berth (it prunes in its own process): refused."`
	Affinity                     *corev1.Affinity             `json:"affinity,omitempty" description:"Not supported by Berth (it prunes in its own process): refused."`
	NodeSelector                 map[string]string            `json:"nodeSelector,omitempty" description:"Not supported by Berth (it prunes in its own process): refused."`
	Tolerations                  []corev1.Toleration          `json:"tolerations,omitempty" description:"Not supported by Berth (it prunes in its own process): refused."`
	SuccessfulJobsHistoryLimit   *int32                       `json:"successfulJobsHistoryLimit,omitempty" description:"Successful runs status.runs keeps; default 3."`
	FailedJobsHistoryLimit       *int32                       `json:"failedJobsHistoryLimit,omitempty" description:"Failed runs status.runs keeps; default 3."`
	IgnoreInvalidImageReferences bool                         `json:"ignoreInvalidImageReferences,omitempty" description:"Berth's references are digests in its store and never invalid: either value prunes the same."`
	LogLevel                     string                       `json:"logLevel,omitempty" description:"Normal logs each run; Debug, Trace and TraceAll also each repository pruned."`
}

// ImagePrunerStatus is what the registry reports of its pruning.
type ImagePrunerStatus struct {
	ObservedGeneration int64               `json:"observedGeneration,omitempty"`
	Conditions         []OperatorCondition `json:"conditions,omitempty"`
	// Runs are Berth's: the latest runs, newest first, as many of each
	// outcome as the history limits keep (the reference keeps Jobs).
	Runs []ImagePrunerRun `json:"runs,omitempty"`
}

// ImagePrunerRun is one scheduled pruning.
type ImagePrunerRun struct {
	Scheduled metav1.Time  `json:"scheduled"`
	Started   metav1.Time  `json:"started"`
	Finished  *metav1.Time `json:"finished,omitempty"`
	Succeeded bool         `json:"succeeded"`
	Message   string       `json:"message,omitempty"`
	// Revisions and Images are what it removed.
	Revisions int `json:"revisions"`
	Images    int `json:"images"`
}

// The reference's defaults of an ImagePruner.
const (
	DefaultPruneSchedule     = "0 0 * * *"
	DefaultKeepTagRevisions  = 3
	DefaultKeepYoungerThan   = 60 * time.Minute
	DefaultJobsHistoryLimit  = 3
	ConditionScheduled       = "Scheduled"
	ConditionFailed          = "Failed"
	ImagePrunerResource      = "imagepruners"
	ImagePrunerKind          = "ImagePruner"
	imagePrunerPlacementNote = "not supported by Berth (it prunes in its own process)"
)

// ParseSchedule reads a schedule: five cron fields, or a descriptor such
// as @daily.
func ParseSchedule(s string) (cron.Schedule, error) {
	return cron.ParseStandard(s)
}

// Effective is the spec with the reference's defaults filled in.
func (s ImagePrunerSpec) Effective() (schedule string, keepRevisions int, keepYounger time.Duration, succeeded, failed int) {
	schedule, keepRevisions, keepYounger = DefaultPruneSchedule, DefaultKeepTagRevisions, DefaultKeepYoungerThan
	succeeded, failed = DefaultJobsHistoryLimit, DefaultJobsHistoryLimit
	if s.Schedule != "" {
		schedule = s.Schedule
	}
	if s.KeepTagRevisions != nil {
		keepRevisions = *s.KeepTagRevisions
	}
	if s.KeepYoungerThan != nil {
		keepYounger = *s.KeepYoungerThan
	}
	if s.KeepYoungerThanDuration != nil {
		keepYounger = s.KeepYoungerThanDuration.Duration
	}
	if s.SuccessfulJobsHistoryLimit != nil {
		succeeded = int(*s.SuccessfulJobsHistoryLimit)
	}
	if s.FailedJobsHistoryLimit != nil {
		failed = int(*s.FailedJobsHistoryLimit)
	}
	return
}

// ValidateImagePruner returns why p is invalid (field: problem).
func ValidateImagePruner(p *ImagePruner) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if p.Name != ConfigName {
		add("metadata.name: Invalid value: %q: the registry honours only %q", p.Name, ConfigName)
	}
	spec := &p.Spec
	if spec.Schedule != "" {
		if _, err := ParseSchedule(spec.Schedule); err != nil {
			add("spec.schedule: Invalid value: %q: %v", spec.Schedule, err)
		}
	}
	if v := spec.KeepTagRevisions; v != nil && *v < 0 {
		add("spec.keepTagRevisions: Invalid value: %d: must be 0 or more", *v)
	}
	if v := spec.KeepYoungerThan; v != nil && *v < 0 {
		add("spec.keepYoungerThan: Invalid value: %d: must be 0 or more", *v)
	}
	if v := spec.KeepYoungerThanDuration; v != nil && v.Duration < 0 {
		add("spec.keepYoungerThanDuration: Invalid value: %q: must be 0s or more", v.Duration)
	}
	for field, v := range map[string]*int32{"spec.successfulJobsHistoryLimit": spec.SuccessfulJobsHistoryLimit, "spec.failedJobsHistoryLimit": spec.FailedJobsHistoryLimit} {
		if v != nil && (*v < 0 || *v > 100) {
			add("%s: Invalid value: %d: must be between 0 and 100", field, *v)
		}
	}
	if spec.LogLevel != "" && !slices.Contains([]string{LogNormal, LogDebug, LogTrace, LogTraceAll}, spec.LogLevel) {
		add("spec.logLevel: Unsupported value: %q: supported values: %q", spec.LogLevel, []string{LogNormal, LogDebug, LogTrace, LogTraceAll})
	}
	placement := []struct {
		field string
		set   bool
	}{{"spec.resources", spec.Resources != nil}, {"spec.affinity", spec.Affinity != nil},
		{"spec.nodeSelector", len(spec.NodeSelector) > 0}, {"spec.tolerations", len(spec.Tolerations) > 0}}
	for _, f := range placement {
		if f.set {
			add("%s: Forbidden: %s", f.field, imagePrunerPlacementNote)
		}
	}
	slices.Sort(problems)
	return problems
}
