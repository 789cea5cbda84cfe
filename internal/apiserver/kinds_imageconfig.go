package apiserver

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The cluster's image settings (images.config.openshift.io/cluster), with
// the reference's JSON field names: the registries imports may reach, the
// ConfigMap of extra CAs to trust (a key per registry host, "host..port"
// for host:port), and the external host names of the registry. The
// reference's "add a CA" procedure edits it; import and pull-through read
// it when they arrive.

const groupConfig = "config.openshift.io"

// ImageConfig is config.openshift.io/v1 Image.
type ImageConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ImageConfigSpec   `json:"spec"`
	Status            ImageConfigStatus `json:"status,omitempty"`
}

// ImageConfigSpec is what an administrator sets.
type ImageConfigSpec struct {
	AllowedRegistriesForImport []RegistryLocation  `json:"allowedRegistriesForImport,omitempty"`
	ExternalRegistryHostnames  []string            `json:"externalRegistryHostnames,omitempty"`
	AdditionalTrustedCA        *ConfigMapReference `json:"additionalTrustedCA,omitempty"`
	RegistrySources            *RegistrySources    `json:"registrySources,omitempty"`
}

// RegistryLocation is a registry imports may reach.
type RegistryLocation struct {
	DomainName string `json:"domainName,omitempty"`
	Insecure   bool   `json:"insecure,omitempty"`
}

// ConfigMapReference names a ConfigMap in openshift-config.
type ConfigMapReference struct {
	Name string `json:"name"`
}

// RegistrySources says which registries are allowed, blocked or insecure.
type RegistrySources struct {
	InsecureRegistries               []string `json:"insecureRegistries,omitempty"`
	BlockedRegistries                []string `json:"blockedRegistries,omitempty"`
	AllowedRegistries                []string `json:"allowedRegistries,omitempty"`
	ContainerRuntimeSearchRegistries []string `json:"containerRuntimeSearchRegistries,omitempty"`
}

// ImageConfigStatus reports the registry's host names.
type ImageConfigStatus struct {
	InternalRegistryHostname  string   `json:"internalRegistryHostname,omitempty"`
	ExternalRegistryHostnames []string `json:"externalRegistryHostnames,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (c *ImageConfig) DeepCopyObject() runtime.Object { return deepCopyJSON(c) }

var imageConfigKind = &storedKind{
	info:      servedResource(groupConfig, "images"),
	new:       func() object { return &ImageConfig{} },
	hasStatus: true,
	validate: func(o object) []string {
		c := o.(*ImageConfig)
		problems := singletonName(c.Name)
		if ca := c.Spec.AdditionalTrustedCA; ca != nil {
			for _, msg := range validation.IsDNS1123Subdomain(ca.Name) {
				problems = append(problems, fmt.Sprintf("spec.additionalTrustedCA.name: Invalid value: %q: %s", ca.Name, msg))
			}
		}
		for i, r := range c.Spec.AllowedRegistriesForImport {
			if r.DomainName == "" {
				problems = append(problems, fmt.Sprintf("spec.allowedRegistriesForImport[%d].domainName: Required value", i))
			}
		}
		if src := c.Spec.RegistrySources; src != nil && len(src.AllowedRegistries) > 0 && len(src.BlockedRegistries) > 0 {
			problems = append(problems, "spec.registrySources: Invalid value: only one of allowedRegistries and blockedRegistries may be set")
		}
		return problems
	},
	columns: []metav1.TableColumnDefinition{columnName, columnAge},
	cells:   func(o object) []any { return []any{o.GetName(), age(o)} },
}
