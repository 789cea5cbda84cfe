package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// The registry's Config (configs.imageregistry.operator.openshift.io), with
// the reference's JSON field names. It is stored here so the reference's
// procedures (patch the defaultRoute, edit the storage) work on it; the
// operator that reconciles it arrives with its own issue.

const groupImageRegistry = "imageregistry.operator.openshift.io"

// ConfigName is the one Config the registry honours.
const ConfigName = "cluster"

// RegistryConfig is configs.imageregistry.operator.openshift.io/v1 Config.
type RegistryConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RegistryConfigSpec   `json:"spec"`
	Status            RegistryConfigStatus `json:"status,omitempty"`
}

// RegistryConfigSpec is what the operator reconciles.
type RegistryConfigSpec struct {
	ManagementState  string            `json:"managementState,omitempty" description:"Managed: the operator runs the registry; Unmanaged: it leaves it alone; Removed: the registry is taken down."`
	LogLevel         string            `json:"logLevel,omitempty" description:"The registry's log level: Normal, Debug, Trace or TraceAll."`
	OperatorLogLevel string            `json:"operatorLogLevel,omitempty"`
	HTTPSecret       string            `json:"httpSecret,omitempty" description:"The secret the instances share to sign upload state; random by default."`
	Proxy            ConfigProxy       `json:"proxy,omitempty" description:"The proxy for pulls from upstream registries."`
	Storage          ConfigStorage     `json:"storage,omitempty" description:"Where blobs are kept: filesystem, emptyDir, s3, gcs, azure or swift."`
	ReadOnly         bool              `json:"readOnly,omitempty" description:"Refuse pushes and deletes; pulls go on."`
	DisableRedirect  bool              `json:"disableRedirect,omitempty" description:"Serve blobs through the registry instead of redirecting to object storage."`
	Requests         ConfigRequests    `json:"requests,omitempty" description:"Limits on concurrent and queued reads and writes."`
	DefaultRoute     bool              `json:"defaultRoute,omitempty" description:"Expose the registry on the default route host name."`
	Routes           []ConfigRoute     `json:"routes,omitempty" description:"Extra host names the registry is exposed on, with their TLS secrets."`
	Replicas         int32             `json:"replicas,omitempty" description:"How many registry instances run."`
	RolloutStrategy  string            `json:"rolloutStrategy,omitempty"`
	NodeSelector     map[string]string `json:"nodeSelector,omitempty"`
}

// ConfigProxy is the proxy for upstream registries.
type ConfigProxy struct {
	HTTP    string `json:"http,omitempty"`
	HTTPS   string `json:"https,omitempty"`
	NoProxy string `json:"noProxy,omitempty"`
}

// ConfigStorage names one storage backend.
type ConfigStorage struct {
	EmptyDir        *struct{}       `json:"emptyDir,omitempty"`
	PVC             *ConfigPVC      `json:"pvc,omitempty"`
	S3              json.RawMessage `json:"s3,omitempty"`
	GCS             json.RawMessage `json:"gcs,omitempty"`
	Azure           json.RawMessage `json:"azure,omitempty"`
	Swift           json.RawMessage `json:"swift,omitempty"`
	ManagementState string          `json:"managementState,omitempty"`
}

// ConfigPVC is a persistent volume claim (for Berth: the data directory).
type ConfigPVC struct {
	Claim string `json:"claim,omitempty"`
}

// ConfigRequests limits concurrent requests.
type ConfigRequests struct {
	Read  ConfigRequestLimits `json:"read,omitempty"`
	Write ConfigRequestLimits `json:"write,omitempty"`
}

// ConfigRequestLimits bounds one kind of request.
type ConfigRequestLimits struct {
	MaxRunning     int32  `json:"maxRunning,omitempty"`
	MaxInQueue     int32  `json:"maxInQueue,omitempty"`
	MaxWaitInQueue string `json:"maxWaitInQueue,omitempty"`
}

// ConfigRoute is an extra route.
type ConfigRoute struct {
	Name       string `json:"name"`
	Hostname   string `json:"hostname,omitempty"`
	SecretName string `json:"secretName,omitempty"`
}

// RegistryConfigStatus is what the operator reports.
type RegistryConfigStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	ReadyReplicas      int32              `json:"readyReplicas,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (c *RegistryConfig) DeepCopyObject() runtime.Object { return deepCopyJSON(c) }

// deepCopyJSON copies an object of Berth's own kinds by a JSON round trip:
// they are plain data, and copies are rare (kubectl's strategic merge
// does not apply to them).
func deepCopyJSON[T any](in *T) *T {
	b, _ := json.Marshal(in)
	out := new(T)
	_ = json.Unmarshal(b, out)
	return out
}

// singletonName is the problem with a name other than "cluster" for the
// kinds of which the registry honours one object.
func singletonName(name string) []string {
	if name == ConfigName {
		return nil
	}
	return []string{fmt.Sprintf("metadata.name: Invalid value: %q: the registry honours only %q", name, ConfigName)}
}

var configKind = &storedKind{
	info:      servedResource(groupImageRegistry, "configs"),
	new:       func() object { return &RegistryConfig{} },
	hasStatus: true,
	validate: func(o object) []string {
		c := o.(*RegistryConfig)
		problems := singletonName(c.Name)
		oneOf := func(field, v string, allowed ...string) {
			if v != "" && !slices.Contains(allowed, v) {
				problems = append(problems, fmt.Sprintf("%s: Unsupported value: %q: supported values: %q", field, v, allowed))
			}
		}
		oneOf("spec.managementState", c.Spec.ManagementState, "Managed", "Unmanaged", "Removed", "Force")
		oneOf("spec.logLevel", c.Spec.LogLevel, "Normal", "Debug", "Trace", "TraceAll")
		oneOf("spec.operatorLogLevel", c.Spec.OperatorLogLevel, "Normal", "Debug", "Trace", "TraceAll")
		oneOf("spec.rolloutStrategy", c.Spec.RolloutStrategy, "RollingUpdate", "Recreate")
		if c.Spec.Replicas < 0 {
			problems = append(problems, fmt.Sprintf("spec.replicas: Invalid value: %d: must be 0 or more", c.Spec.Replicas))
		}
		for i, r := range c.Spec.Routes {
			if r.Name == "" {
				problems = append(problems, fmt.Sprintf("spec.routes[%d].name: Required value", i))
			}
			if r.Hostname != "" {
				for _, msg := range validation.IsDNS1123Subdomain(r.Hostname) {
					problems = append(problems, fmt.Sprintf("spec.routes[%d].hostname: Invalid value: %q: %s", i, r.Hostname, msg))
				}
			}
		}
		for name, l := range map[string]ConfigRequestLimits{"read": c.Spec.Requests.Read, "write": c.Spec.Requests.Write} {
			if l.MaxRunning < 0 || l.MaxInQueue < 0 {
				problems = append(problems, fmt.Sprintf("spec.requests.%s: Invalid value: limits must be 0 or more", name))
			}
			if l.MaxWaitInQueue != "" {
				if _, err := time.ParseDuration(l.MaxWaitInQueue); err != nil {
					problems = append(problems, fmt.Sprintf("spec.requests.%s.maxWaitInQueue: Invalid value: %q: not a duration", name, l.MaxWaitInQueue))
				}
			}
		}
		return problems
	},
	columns: []metav1.TableColumnDefinition{columnName, columnAge},
	cells:   func(o object) []any { return []any{o.GetName(), age(o)} },
}

// SystemProjects are the projects Berth keeps for itself, as the
// reference's cluster has them: openshift-config holds the ConfigMaps the
// cluster image settings name (additional CAs), openshift-image-registry
// the registry's own Secrets (storage credentials). Only cluster
// administrators see them.
var SystemProjects = []string{"openshift-config", "openshift-image-registry"}

// EnsureClusterObjects creates, on every start, what a cluster has from
// the beginning, as the reference's operators do: the system projects,
// the registry Config (Managed, one replica, a random httpSecret) and the
// cluster image settings, both named "cluster". Existing objects are left
// as they are; an existing system project loses any grant in it.
func EnsureClusterObjects(ctx context.Context, st *store.Store, log *slog.Logger) error {
	for _, name := range SystemProjects {
		err := st.CreateProject(ctx, store.Project{Name: name, Created: time.Now().UTC()})
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			// Created by someone before the name was reserved: it holds the
			// registry's secrets, so it becomes an administrator's only.
			taken, err := st.ReclaimProject(ctx, name)
			if err != nil {
				return fmt.Errorf("reclaim system project %s: %w", name, err)
			}
			if len(taken) > 0 {
				log.Warn("a system project had grants; they are removed: only cluster administrators act there", "project", name, "removed", taken)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("create project %s: %w", name, err)
		}
	}
	secret := make([]byte, 64)
	_, _ = rand.Read(secret)
	registry := &RegistryConfig{Spec: RegistryConfigSpec{ManagementState: "Managed", LogLevel: "Normal", Replicas: 1,
		HTTPSecret: hex.EncodeToString(secret), RolloutStrategy: "RollingUpdate"}}
	if err := ensureObject(ctx, st, configKind, registry); err != nil {
		return fmt.Errorf("create the registry Config: %w", err)
	}
	if err := ensureObject(ctx, st, imageConfigKind, &ImageConfig{}); err != nil {
		return fmt.Errorf("create the cluster image settings: %w", err)
	}
	return nil
}

// ensureObject creates the cluster-scoped object "cluster" of kind k as
// obj, unless it exists.
func ensureObject(ctx context.Context, st *store.Store, k *storedKind, obj object) error {
	if _, err := st.GetObject(ctx, k.key("", ConfigName)); err == nil {
		return nil
	} else if !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	obj.SetName(ConfigName)
	obj.SetUID(types.UID(uuid.NewString()))
	obj.SetCreationTimestamp(metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
	rec, err := k.toStored(obj)
	if err != nil {
		return err
	}
	if _, err := st.CreateObject(ctx, rec); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		return err
	}
	return nil
}
