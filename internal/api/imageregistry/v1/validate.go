package imageregistryv1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/berth-registry/berth/internal/webhook"
)

// DeepCopyObject implements runtime.Object: the kind is plain data, so a
// JSON round trip copies it.
func (c *Config) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(c)
	if err != nil {
		return nil
	}
	out := new(Config)
	if err := json.Unmarshal(b, out); err != nil {
		return nil
	}
	return out
}

// StorageTypes are the names of the storage types spec sets, in the
// reference's order and spelling (EmptyDir, S3, Swift, GCS, IBMCOS, PVC,
// Azure, OSS).
func (s StorageConfig) StorageTypes() []string {
	var names []string
	add := func(set bool, name string) {
		if set {
			names = append(names, name)
		}
	}
	add(s.EmptyDir != nil, "EmptyDir")
	add(s.S3 != nil, "S3")
	add(s.Swift != nil, "Swift")
	add(s.GCS != nil, "GCS")
	add(s.IBMCOS != nil, "IBMCOS")
	add(s.PVC != nil, "PVC")
	add(s.Azure != nil, "Azure")
	add(s.OSS != nil, "OSS")
	return names
}

// StorageProblem is the reference's message for a storage section that
// does not name exactly one type ("" when it names one; a section naming
// none is not configured, which is a state, not an error).
func (s StorageConfig) StorageProblem() string {
	names := s.StorageTypes()
	if len(names) <= 1 {
		return ""
	}
	return fmt.Sprintf("exactly one storage type should be configured at the same time, got %d: %v", len(names), names)
}

var azureContainerName = regexp.MustCompile(`^[0-9a-z]+(-[0-9a-z]+)*$`)

// Validate returns why c may not be stored, as "field: problem" in
// Kubernetes' words; nil when it is valid. The API server refuses an
// invalid Config with 422, and the operator keeps the last good settings
// when it meets one stored before a rule existed.
func Validate(c *Config) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Name != ConfigName {
		add("metadata.name: Invalid value: %q: the registry honours only %q", c.Name, ConfigName)
	}
	spec := &c.Spec
	oneOf := func(field, v string, allowed ...string) {
		if v != "" && !slices.Contains(allowed, v) {
			add("%s: Unsupported value: %q: supported values: %q", field, v, allowed)
		}
	}
	oneOf("spec.managementState", spec.ManagementState, Managed, Unmanaged, Removed)
	oneOf("spec.logLevel", spec.LogLevel, LogNormal, LogDebug, LogTrace, LogTraceAll)
	oneOf("spec.operatorLogLevel", spec.OperatorLogLevel, LogNormal, LogDebug, LogTrace, LogTraceAll)
	oneOf("spec.rolloutStrategy", spec.RolloutStrategy, "RollingUpdate")
	if spec.Replicas < 0 {
		add("spec.replicas: Invalid value: %d: must be greater than or equal to 0", spec.Replicas)
	}
	for _, f := range []struct {
		field string
		raw   json.RawMessage
	}{{"spec.unsupportedConfigOverrides", spec.UnsupportedConfigOverrides}, {"spec.observedConfig", spec.ObservedConfig}} {
		if len(f.raw) > 0 && !bytes.Equal(bytes.TrimSpace(f.raw), []byte("null")) {
			add("%s: Forbidden: not supported by Berth", f.field)
		}
	}
	placement := map[string]bool{
		"spec.resources": spec.Resources != nil, "spec.nodeSelector": len(spec.NodeSelector) > 0,
		"spec.tolerations": len(spec.Tolerations) > 0, "spec.affinity": spec.Affinity != nil,
		"spec.topologySpreadConstraints": len(spec.TopologySpreadConstraints) > 0,
	}
	for _, field := range sortedKeys(placement) {
		if placement[field] {
			add("%s: Forbidden: Berth runs as processes that its deployment places (systemd unit, Helm chart values); set it there", field)
		}
	}
	problems = append(problems, validateProxy(spec.Proxy)...)
	problems = append(problems, validateStorage(spec.Storage)...)
	for _, l := range []struct {
		name string
		RequestLimits
	}{{"read", spec.Requests.Read}, {"write", spec.Requests.Write}} {
		if l.MaxRunning < 0 {
			add("spec.requests.%s.maxRunning: Invalid value: %d: must be greater than or equal to 0", l.name, l.MaxRunning)
		}
		if l.MaxInQueue < 0 {
			add("spec.requests.%s.maxInQueue: Invalid value: %d: must be greater than or equal to 0", l.name, l.MaxInQueue)
		}
		if l.MaxWaitInQueue.Duration < 0 {
			add("spec.requests.%s.maxWaitInQueue: Invalid value: %q: must be greater than or equal to 0", l.name, l.MaxWaitInQueue.Duration)
		}
	}
	if l := spec.ImageStreams.TagHistoryLimit; l < 0 || l > MaxTagHistoryLimit {
		add("spec.imageStreams.tagHistoryLimit: Invalid value: %d: must be between 0 (the default, %d) and %d", l, DefaultTagHistoryLimit, MaxTagHistoryLimit)
	}
	problems = append(problems, validateAllowedDestinations("spec.webhooks.allowedDestinations", spec.Webhooks.AllowedDestinations)...)
	problems = append(problems, validateAllowedDestinations("spec.imageStreams.allowedImportDestinations", spec.ImageStreams.AllowedImportDestinations)...)
	if len(spec.Routes) > MaxRoutes {
		add("spec.routes: Too many: %d: must have at most %d items", len(spec.Routes), MaxRoutes)
	}
	names := map[string]int{}
	hosts := map[string]int{}
	for i, r := range spec.Routes {
		field := fmt.Sprintf("spec.routes[%d]", i)
		switch {
		case r.Name == "":
			add("%s.name: Required value", field)
		case r.Name == DefaultRouteName:
			add("%s.name: Invalid value: %q: the name of the default route (spec.defaultRoute)", field, r.Name)
		default:
			for _, msg := range validation.IsDNS1123Subdomain(r.Name) {
				add("%s.name: Invalid value: %q: %s", field, r.Name, msg)
			}
			if j, dup := names[r.Name]; dup {
				add("%s.name: Duplicate value: %q: also spec.routes[%d].name", field, r.Name, j)
			}
			names[r.Name] = i
		}
		if r.Hostname == "" {
			continue // the route gets <name>-openshift-image-registry.<base domain>
		}
		for _, msg := range validation.IsDNS1123Subdomain(r.Hostname) {
			add("%s.hostname: Invalid value: %q: %s", field, r.Hostname, msg)
		}
		if j, dup := hosts[r.Hostname]; dup {
			add("%s.hostname: Duplicate value: %q: also spec.routes[%d].hostname", field, r.Hostname, j)
		}
		hosts[r.Hostname] = i
		if r.SecretName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(r.SecretName) {
				add("%s.secretName: Invalid value: %q: %s", field, r.SecretName, msg)
			}
		}
	}
	return problems
}

func validateProxy(p ProxyConfig) []string {
	var problems []string
	for field, v := range map[string]string{"spec.proxy.http": p.HTTP, "spec.proxy.https": p.HTTPS} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || !slices.Contains([]string{"http", "https", "socks5"}, u.Scheme) {
			problems = append(problems, fmt.Sprintf("%s: Invalid value: %q: a proxy URL: http://, https:// or socks5://HOST:PORT", field, redactUserinfo(v)))
		}
	}
	slices.Sort(problems)
	return problems
}

// redactUserinfo hides the password of a proxy URL that is quoted back:
// the message may reach status and the ClusterOperator, which more people
// read than the spec.
func redactUserinfo(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 || (strings.Contains(rest[:at], "/")) {
		return v
	}
	return scheme + "://" + "REDACTED@" + rest[at+1:]
}

// validateAllowedDestinations checks each entry of
// spec.webhooks.allowedDestinations by the rules the webhook sender
// applies them with, so that what is stored is what takes effect.
func validateAllowedDestinations(field string, entries []string) []string {
	var problems []string
	for i, e := range entries {
		if _, err := webhook.NewDestinations([]string{e}); err != nil {
			// The sender's message names the entry; the field path does here.
			why := strings.TrimPrefix(err.Error(), fmt.Sprintf("webhook allowed destination %q: ", e))
			problems = append(problems, fmt.Sprintf("%s[%d]: Invalid value: %q: %s", field, i, e, why))
		}
	}
	return problems
}

// MaxRoutes bounds spec.routes: each is a host the operator serves and
// checks at every pass.
const MaxRoutes = 100

func validateStorage(s StorageConfig) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if msg := s.StorageProblem(); msg != "" {
		add("spec.storage: Invalid value: %s", msg)
	}
	if s.ManagementState != "" && s.ManagementState != Managed && s.ManagementState != Unmanaged {
		add("spec.storage.managementState: Unsupported value: %q: supported values: %q", s.ManagementState, []string{Managed, Unmanaged})
	}
	if s.IBMCOS != nil {
		add("spec.storage.ibmcos: Forbidden: Berth has no IBM Cloud Object Storage driver; use s3 with its regionEndpoint")
	}
	if s.OSS != nil {
		add("spec.storage.oss: Forbidden: Berth has no Alibaba OSS driver; use s3 with its regionEndpoint")
	}
	if s.PVC != nil && s.PVC.Claim != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.PVC.Claim) {
			add("spec.storage.pvc.claim: Invalid value: %q: %s", s.PVC.Claim, msg)
		}
	}
	if sw := s.Swift; sw != nil && sw.AuthURL != "" {
		if u, err := url.Parse(sw.AuthURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			add("spec.storage.swift.authURL: Invalid value: %q: a URL with scheme http or https", redactUserinfo(sw.AuthURL))
		} else if u.User != nil {
			add("spec.storage.swift.authURL: Invalid value: a URL with credentials in it: put them in the secret %s/%s", Namespace, UserSecretName)
		}
	}
	if s3 := s.S3; s3 != nil {
		if s3.ChunkSizeMiB != 0 && (s3.ChunkSizeMiB < 5 || s3.ChunkSizeMiB > 5120) {
			add("spec.storage.s3.chunkSizeMiB: Invalid value: %d: must be between 5 and 5120", s3.ChunkSizeMiB)
		}
		if s3.RegionEndpoint != "" {
			if u, err := url.Parse(s3.RegionEndpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				add("spec.storage.s3.regionEndpoint: Invalid value: %q: a URL with scheme http or https", redactUserinfo(s3.RegionEndpoint))
			} else if u.User != nil {
				// Credentials belong in the user secret: a URL is logged,
				// shown in status and recorded with every blob.
				add("spec.storage.s3.regionEndpoint: Invalid value: a URL with credentials in it: put them in the secret %s/%s", Namespace, UserSecretName)
			}
		}
		if s3.KeyID != "" && !s3.Encrypt {
			// The reference ignores keyID then; a key named and not used
			// is a setting silently ignored, so it is refused.
			add("spec.storage.s3.keyID: Invalid value: %q: a KMS key is used only with encrypt: true; set encrypt, or remove keyID", s3.KeyID)
		}
		if cf := s3.CloudFront; cf != nil {
			if cf.BaseURL == "" {
				add("spec.storage.s3.cloudFront.baseURL: Required value")
			} else if u, err := url.Parse(cf.BaseURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.RawQuery != "" {
				add("spec.storage.s3.cloudFront.baseURL: Invalid value: %q: an http or https URL without credentials or query", redactUserinfo(cf.BaseURL))
			}
			if cf.Duration.Duration < 0 || cf.Duration.Duration > 7*24*time.Hour {
				add("spec.storage.s3.cloudFront.duration: Invalid value: %q: between 0 (the default, 20m) and 168h", cf.Duration.Duration)
			}
			if cf.KeypairID == "" {
				add("spec.storage.s3.cloudFront.keypairID: Required value")
			}
			if cf.PrivateKey.Name == "" || cf.PrivateKey.Key == "" {
				add("spec.storage.s3.cloudFront.privateKey: Required value: a Secret name and key")
			}
		}
		if s3.TrustedCA.Name != "" {
			for _, msg := range validation.IsDNS1123Subdomain(s3.TrustedCA.Name) {
				add("spec.storage.s3.trustedCA.name: Invalid value: %q: %s", s3.TrustedCA.Name, msg)
			}
		}
	}
	if az := s.Azure; az != nil {
		if c := az.Container; c != "" && (len(c) < 3 || len(c) > 63 || !azureContainerName.MatchString(c)) {
			add("spec.storage.azure.container: Invalid value: %q: 3 to 63 lower-case letters, digits and single hyphens", c)
		}
		if na := az.NetworkAccess; na != nil {
			if na.Type != "" && na.Type != "Internal" && na.Type != "External" {
				add("spec.storage.azure.networkAccess.type: Unsupported value: %q: supported values: %q", na.Type, []string{"Internal", "External"})
			}
			if len(na.Internal) > 0 && na.Type != "Internal" {
				add("spec.storage.azure.networkAccess: Invalid value: internal is forbidden when type is not Internal")
			}
		}
	}
	return problems
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// LogLevelName is the level spec asks for, as the reference maps it:
// Debug, Trace and TraceAll as named; Normal by the deprecated logging
// field (1: warn, 0, 2, 3: info, anything else: debug).
func (s ConfigSpec) LogLevelName() string {
	switch s.LogLevel {
	case LogDebug, LogTrace, LogTraceAll:
		return strings.ToLower(s.LogLevel)
	}
	switch s.Logging {
	case 1:
		return "warn"
	case 0, 2, 3:
		return "info"
	}
	return "debug"
}
