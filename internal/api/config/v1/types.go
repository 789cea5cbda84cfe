// Package configv1 holds the config.openshift.io/v1 kinds the operator
// writes: the ClusterOperator through which the registry reports its
// health, as on the reference platform.
package configv1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// GroupName is the API group of these kinds.
const GroupName = "config.openshift.io"

// ImageRegistryOperator is the name of the registry's ClusterOperator.
const ImageRegistryOperator = "image-registry"

// ClusterOperator is config.openshift.io/v1 ClusterOperator.
type ClusterOperator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct{}              `json:"spec"`
	Status            ClusterOperatorStatus `json:"status,omitempty"`
}

// ClusterOperatorStatus is what the operator reports.
type ClusterOperatorStatus struct {
	Conditions     []ClusterOperatorCondition `json:"conditions,omitempty" description:"Available, Progressing and Degraded: the union of the registry Config's conditions."`
	Versions       []OperandVersion           `json:"versions,omitempty"`
	RelatedObjects []ObjectReference          `json:"relatedObjects,omitempty"`
}

// ClusterOperatorCondition is one condition.
type ClusterOperatorCondition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
	Reason             string      `json:"reason,omitempty"`
	Message            string      `json:"message,omitempty"`
}

// OperandVersion is the version of a component.
type OperandVersion struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// ObjectReference names an object the operator manages.
type ObjectReference struct {
	Group     string `json:"group"`
	Resource  string `json:"resource"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// DeepCopyObject implements runtime.Object by a JSON round trip.
func (c *ClusterOperator) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(c)
	if err != nil {
		return nil
	}
	out := new(ClusterOperator)
	if err := json.Unmarshal(b, out); err != nil {
		return nil
	}
	return out
}
