package apiserver

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	configv1 "github.com/berth-registry/berth/internal/api/config/v1"
)

// ClusterOperators are written by the operator (internal/operator), which
// reports the registry's health through image-registry as the reference's
// does; `berth get co` prints them as `oc get co` does.
var clusterOperatorKind = &storedKind{
	info:      servedResource(groupConfig, "clusteroperators"),
	new:       func() object { return &configv1.ClusterOperator{} },
	hasStatus: true,
	columns: []metav1.TableColumnDefinition{columnName,
		{Name: "Version", Type: "string", Description: "The operator's version."},
		{Name: "Available", Type: "string", Description: "Whether the registry serves."},
		{Name: "Progressing", Type: "string", Description: "Whether a change is being applied."},
		{Name: "Degraded", Type: "string", Description: "Whether something is wrong."},
		{Name: "Since", Type: "string", Description: "The time since a condition last changed."},
		{Name: "Message", Type: "string", Priority: 1, Description: "What is wrong, when something is."},
	},
	cells: func(o object) []any {
		co := o.(*configv1.ClusterOperator)
		version := ""
		for _, v := range co.Status.Versions {
			if v.Name == "operator" {
				version = v.Version
			}
		}
		status := map[string]string{}
		var since time.Time
		var messages []string
		for _, c := range co.Status.Conditions {
			status[c.Type] = c.Status
			if c.LastTransitionTime.After(since) {
				since = c.LastTransitionTime.Time
			}
			if c.Message != "" && (c.Type == "Degraded" && c.Status == "True" || c.Type == "Available" && c.Status != "True") {
				messages = append(messages, c.Message)
			}
		}
		age := ""
		if !since.IsZero() {
			age = duration.HumanDuration(time.Since(since))
		}
		return []any{co.Name, version, status["Available"], status["Progressing"], status["Degraded"], age, strings.Join(messages, "; ")}
	},
}
