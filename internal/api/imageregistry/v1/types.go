// Package imageregistryv1 holds the imageregistry.operator.openshift.io/v1
// kinds: the registry's Config, with the reference's JSON field names. The
// API server stores it, the operator (internal/operator) reconciles it,
// and the CLI prints it; the rules that refuse an invalid one
// (validate.go) are shared so the API and the operator agree.
package imageregistryv1

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupName is the API group of these kinds.
const GroupName = "imageregistry.operator.openshift.io"

// Fixed names of the reference's operator.
const (
	// ConfigName is the one Config the registry honours.
	ConfigName = "cluster"
	// Namespace is the registry's own project: its Secrets (storage
	// credentials, route certificates), pods and routes.
	Namespace = "openshift-image-registry"
	// UserSecretName is the Secret in Namespace whose keys override the
	// storage credentials.
	UserSecretName = "image-registry-private-configuration-user"
	// DefaultClaim is the volume a pvc storage without a claim gets.
	DefaultClaim = "image-registry-storage"
	// DefaultRouteName is the Route spec.defaultRoute makes.
	DefaultRouteName = "default-route"
)

// Management states of the Config and of its storage.
const (
	Managed   = "Managed"
	Unmanaged = "Unmanaged"
	Removed   = "Removed"
	Force     = "Force"
)

// Log levels of spec.logLevel.
const (
	LogNormal   = "Normal"
	LogDebug    = "Debug"
	LogTrace    = "Trace"
	LogTraceAll = "TraceAll"
)

// Condition types the operator reports.
const (
	ConditionAvailable     = "Available"
	ConditionProgressing   = "Progressing"
	ConditionDegraded      = "Degraded"
	ConditionRemoved       = "Removed"
	ConditionStorageExists = "StorageExists"
	// ConditionStorageMigrationPending is Berth's: blobs are left in
	// storages the registry was switched away from (read from there until
	// berth adm migrate-storage moves them).
	ConditionStorageMigrationPending = "StorageMigrationPending"
)

// Config is configs.imageregistry.operator.openshift.io/v1 Config.
type Config struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConfigSpec   `json:"spec"`
	Status            ConfigStatus `json:"status,omitempty"`
}

// ConfigSpec is what the operator reconciles. Every field takes effect
// live or is refused (docs/OPERATOR.md has each one).
type ConfigSpec struct {
	ManagementState  string `json:"managementState,omitempty" description:"Managed: the operator applies changes; Unmanaged: changes are stored, not applied; Removed: /v2 answers 503 and storage Berth provisioned is removed."`
	LogLevel         string `json:"logLevel,omitempty" description:"The registry's log level: Normal (info), Debug, Trace or TraceAll."`
	OperatorLogLevel string `json:"operatorLogLevel,omitempty" description:"The operator's own log level: Normal, Debug, Trace or TraceAll."`
	// Logging is deprecated in the reference; with logLevel Normal it
	// picks the level as the reference does (1: warn, 0-3: info, other:
	// debug).
	Logging                    int64           `json:"logging,omitempty" description:"Deprecated: with logLevel Normal, 1 means warn, 0, 2 and 3 info, anything else debug."`
	UnsupportedConfigOverrides json.RawMessage `json:"unsupportedConfigOverrides,omitempty" description:"Not supported by Berth: refused unless null."`
	ObservedConfig             json.RawMessage `json:"observedConfig,omitempty" description:"Not supported by Berth: refused unless null."`
	HTTPSecret                 string          `json:"httpSecret,omitempty" description:"The secret instances share for what they sign; generated (64 random bytes, hex) when empty."`
	Proxy                      ProxyConfig     `json:"proxy,omitempty" description:"The proxy every outbound connection (imports, pull-through, object storage) goes through."`
	Storage                    StorageConfig   `json:"storage,omitempty" description:"Where blobs are kept: exactly one of emptyDir, pvc, s3, gcs, azure, swift."`
	ReadOnly                   bool            `json:"readOnly,omitempty" description:"Refuse pushes and deletes (405 UNSUPPORTED); pulls go on."`
	DisableRedirect            bool            `json:"disableRedirect,omitempty" description:"Stream blobs through the registry instead of redirecting clients to object storage."`
	Requests                   Requests        `json:"requests,omitempty" description:"Limits on concurrent and queued reads and writes, per instance."`
	DefaultRoute               bool            `json:"defaultRoute,omitempty" description:"Expose the registry on the default route host name."`
	Routes                     []Route         `json:"routes,omitempty" description:"Extra host names the registry serves, each with the certificate of its TLS secret."`
	Replicas                   int32           `json:"replicas,omitempty" description:"How many registry instances should run; more than one needs shared storage and the PostgreSQL store."`
	RolloutStrategy            string          `json:"rolloutStrategy,omitempty" description:"RollingUpdate (Berth applies changes live; Recreate is refused)."`
	// ImageStreams and Webhooks are Berth's: the reference has no such
	// fields (its image streams are the cluster's, and it sends no
	// webhooks).
	ImageStreams ImageStreamsConfig `json:"imageStreams,omitempty" description:"How image streams keep their history."`
	Webhooks     WebhooksConfig     `json:"webhooks,omitempty" description:"Where webhooks (berth.io Webhook and ClusterWebhook) may send events."`
	// The placement fields of the reference's pods: Berth runs as
	// processes its deployment places, so a value is refused, not ignored.
	Resources                 *corev1.ResourceRequirements      `json:"resources,omitempty" description:"Not supported by Berth (set by its deployment): refused."`
	NodeSelector              map[string]string                 `json:"nodeSelector,omitempty" description:"Not supported by Berth (set by its deployment): refused."`
	Tolerations               []corev1.Toleration               `json:"tolerations,omitempty" description:"Not supported by Berth (set by its deployment): refused."`
	Affinity                  *corev1.Affinity                  `json:"affinity,omitempty" description:"Not supported by Berth (set by its deployment): refused."`
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty" description:"Not supported by Berth (set by its deployment): refused."`
}

// ProxyConfig is the proxy for outbound connections; an empty field falls
// back to the server's environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).
type ProxyConfig struct {
	HTTP    string `json:"http,omitempty"`
	HTTPS   string `json:"https,omitempty"`
	NoProxy string `json:"noProxy,omitempty"`
}

// StorageConfig names one storage backend.
type StorageConfig struct {
	EmptyDir *EmptyDirStorage `json:"emptyDir,omitempty" description:"Blobs in memory, gone when the instance stops (tests and trials)."`
	S3       *S3Storage       `json:"s3,omitempty"`
	GCS      *GCSStorage      `json:"gcs,omitempty"`
	Swift    *SwiftStorage    `json:"swift,omitempty"`
	PVC      *PVCStorage      `json:"pvc,omitempty" description:"A named volume: a directory Berth manages under its data directory."`
	Azure    *AzureStorage    `json:"azure,omitempty"`
	IBMCOS   *IBMCOSStorage   `json:"ibmcos,omitempty" description:"Not supported by Berth."`
	OSS      *OSSStorage      `json:"oss,omitempty" description:"Not supported by Berth."`
	// ManagementState Managed lets the operator remove the storage when
	// the registry is Removed; Unmanaged storage is never removed.
	ManagementState string `json:"managementState,omitempty" description:"Managed: Berth provisioned it and may remove it when the registry is Removed; Unmanaged: never removed."`
}

// EmptyDirStorage has no settings.
type EmptyDirStorage struct{}

// PVCStorage is a named volume.
type PVCStorage struct {
	Claim string `json:"claim,omitempty"`
}

// S3Storage is an S3 or S3-compatible bucket.
type S3Storage struct {
	Bucket             string            `json:"bucket,omitempty"`
	Region             string            `json:"region,omitempty"`
	RegionEndpoint     string            `json:"regionEndpoint,omitempty"`
	ChunkSizeMiB       int32             `json:"chunkSizeMiB,omitempty"`
	Encrypt            bool              `json:"encrypt,omitempty"`
	KeyID              string            `json:"keyID,omitempty"`
	VirtualHostedStyle bool              `json:"virtualHostedStyle,omitempty"`
	CloudFront         *S3CloudFront     `json:"cloudFront,omitempty"`
	TrustedCA          S3TrustedCASource `json:"trustedCA,omitempty"`
}

// S3CloudFront signs redirect URLs for a CloudFront distribution.
type S3CloudFront struct {
	BaseURL    string                   `json:"baseURL"`
	PrivateKey corev1.SecretKeySelector `json:"privateKey"`
	KeypairID  string                   `json:"keypairID"`
	Duration   metav1.Duration          `json:"duration,omitempty"`
}

// S3TrustedCASource names a ConfigMap of openshift-config with the CA
// bundle (key ca-bundle.crt) of an S3-compatible endpoint.
type S3TrustedCASource struct {
	Name string `json:"name"`
}

// GCSStorage is a Google Cloud Storage bucket.
type GCSStorage struct {
	Bucket    string `json:"bucket,omitempty"`
	Region    string `json:"region,omitempty"`
	ProjectID string `json:"projectID,omitempty"`
	KeyID     string `json:"keyID,omitempty"`
}

// SwiftStorage is an OpenStack Swift container.
type SwiftStorage struct {
	AuthURL     string `json:"authURL,omitempty"`
	AuthVersion string `json:"authVersion,omitempty"`
	Container   string `json:"container,omitempty"`
	Domain      string `json:"domain,omitempty"`
	DomainID    string `json:"domainID,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	TenantID    string `json:"tenantID,omitempty"`
	RegionName  string `json:"regionName,omitempty"`
}

// AzureStorage is an Azure Blob container.
type AzureStorage struct {
	AccountName   string              `json:"accountName,omitempty"`
	Container     string              `json:"container,omitempty"`
	CloudName     string              `json:"cloudName,omitempty"`
	NetworkAccess *AzureNetworkAccess `json:"networkAccess,omitempty"`
}

// AzureNetworkAccess is how the registry reaches the storage account.
type AzureNetworkAccess struct {
	Type     string          `json:"type,omitempty"`
	Internal json.RawMessage `json:"internal,omitempty"`
}

// IBMCOSStorage is IBM Cloud Object Storage (not supported by Berth; kept
// so that a Config naming it is refused with a clear message).
type IBMCOSStorage struct {
	Bucket             string `json:"bucket,omitempty"`
	Location           string `json:"location,omitempty"`
	ResourceGroupName  string `json:"resourceGroupName,omitempty"`
	ResourceKeyCRN     string `json:"resourceKeyCRN,omitempty"`
	ServiceInstanceCRN string `json:"serviceInstanceCRN,omitempty"`
}

// OSSStorage is Alibaba Cloud OSS (not supported by Berth).
type OSSStorage struct {
	Bucket                string          `json:"bucket,omitempty"`
	Region                string          `json:"region,omitempty"`
	EndpointAccessibility string          `json:"endpointAccessibility,omitempty"`
	Encryption            json.RawMessage `json:"encryption,omitempty"`
}

// ImageStreamsConfig is how image streams keep their history.
type ImageStreamsConfig struct {
	// TagHistoryLimit bounds each tag's history (status.tags[].items): a
	// change of the tag beyond it drops the oldest entry. 0 means
	// DefaultTagHistoryLimit. A lower limit trims a history at the tag's
	// next change, not at once.
	TagHistoryLimit int32 `json:"tagHistoryLimit,omitempty" description:"How many entries each tag's history keeps, 0 to 1000; 0 means the default, 25. A lowered limit trims a tag's history at its next change."`
	// AllowedImportDestinations are the addresses in the cluster's own
	// network (private, loopback, link-local) that imports, pull-through
	// and proxy caches may reach; public addresses need no entry.
	AllowedImportDestinations []string `json:"allowedImportDestinations,omitempty" description:"CIDRs, addresses or host names of the cluster's own network (private, loopback, link-local) that imports, pull-through and proxy caches may reach; public registries need no entry."`
}

// Bounds of spec.imageStreams.tagHistoryLimit.
const (
	// DefaultTagHistoryLimit is the limit 0 stands for (the store's
	// DefaultTagHistory).
	DefaultTagHistoryLimit = 25
	// MaxTagHistoryLimit bounds the limit: each entry is a row the image
	// stream's views read.
	MaxTagHistoryLimit = 1000
)

// WebhooksConfig is where webhooks may send events.
type WebhooksConfig struct {
	// AllowedDestinations are the CIDRs ("10.0.0.0/8"), addresses
	// ("127.0.0.1") and host names ("hooks.internal.example", matched
	// exactly, whatever it resolves to) that webhooks may reach although
	// they are not public addresses. Public addresses need no entry.
	AllowedDestinations []string `json:"allowedDestinations,omitempty" description:"CIDRs, IP addresses or host names (matched exactly) that webhooks may reach although they are not public addresses; private, loopback and link-local destinations are refused otherwise."`
}

// Requests limits concurrent requests, per instance.
type Requests struct {
	Read  RequestLimits `json:"read,omitempty"`
	Write RequestLimits `json:"write,omitempty"`
}

// RequestLimits bounds one kind of request: at most MaxRunning at once,
// at most MaxInQueue waiting, each for at most MaxWaitInQueue (0: no
// limit). MaxRunning 0 turns the limit off.
type RequestLimits struct {
	MaxRunning     int32           `json:"maxRunning,omitempty"`
	MaxInQueue     int32           `json:"maxInQueue,omitempty"`
	MaxWaitInQueue metav1.Duration `json:"maxWaitInQueue,omitempty"`
}

// Route is an extra host name the registry serves.
type Route struct {
	Name       string `json:"name"`
	Hostname   string `json:"hostname,omitempty"`
	SecretName string `json:"secretName,omitempty"`
}

// ConfigStatus is what the operator reports: what is in effect.
type ConfigStatus struct {
	ObservedGeneration int64               `json:"observedGeneration,omitempty"`
	Conditions         []OperatorCondition `json:"conditions,omitempty"`
	ReadyReplicas      int32               `json:"readyReplicas"`
	// Storage is the storage in effect (not the spec's when that could
	// not be applied).
	Storage        StorageConfig `json:"storage"`
	StorageManaged bool          `json:"storageManaged"`
	Version        string        `json:"version,omitempty"`
}

// OperatorCondition is one condition, as operators report them.
type OperatorCondition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
	Reason             string      `json:"reason,omitempty"`
	Message            string      `json:"message,omitempty"`
}
