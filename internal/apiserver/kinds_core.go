package apiserver

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/google/uuid"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

type schemaGVK = schema.GroupVersionKind

// storedKinds are the kinds the generic handlers serve.
var storedKinds = []*storedKind{configMapKind, secretKind, configKind, clusterOperatorKind, imageConfigKind, routeKind, roleBindingKind, clusterRoleBindingKind, groupKind, serviceAccountKind, webhookKind, clusterWebhookKind, proxyCacheKind, imagePrunerKind, resourceQuotaKind, limitRangeKind}

// protobufSchemes register the built-in types kubectl may send as
// protobuf.
var protobufSchemes = []func(*runtime.Scheme) error{corev1.AddToScheme, rbacv1.AddToScheme, authenticationv1.AddToScheme, authorizationv1.AddToScheme}

func newUID() string { return uuid.NewString() }

// maxDataBytes bounds the data of a ConfigMap or Secret, as Kubernetes
// does (1 MiB).
const maxDataBytes = 1 << 20

var configMapKind = &storedKind{
	info:    servedResource("", "configmaps"),
	new:     func() object { return &corev1.ConfigMap{} },
	builtin: true,
	validate: func(o object) []string {
		cm := o.(*corev1.ConfigMap)
		var problems []string
		size := 0
		for key, v := range cm.Data {
			problems = append(problems, keyProblems("data", key)...)
			if _, dup := cm.BinaryData[key]; dup {
				problems = append(problems, fmt.Sprintf("data: Invalid value: %q: duplicate of a key in binaryData", key))
			}
			size += len(key) + len(v)
		}
		for key, v := range cm.BinaryData {
			problems = append(problems, keyProblems("binaryData", key)...)
			size += len(key) + len(v)
		}
		if size > maxDataBytes {
			problems = append(problems, fmt.Sprintf("[]: Too long: may not be more than %d bytes", maxDataBytes))
		}
		return problems
	},
	validateUpdate: func(old, new object) []string {
		o, n := old.(*corev1.ConfigMap), new.(*corev1.ConfigMap)
		if o.Immutable != nil && *o.Immutable && (!reflect.DeepEqual(o.Data, n.Data) ||
			!reflect.DeepEqual(o.BinaryData, n.BinaryData) || n.Immutable == nil || !*n.Immutable) {
			return []string{"data: Forbidden: field is immutable when `immutable` is set"}
		}
		return nil
	},
	columns: []metav1.TableColumnDefinition{columnName,
		{Name: "Data", Type: "integer", Description: "The number of keys in data and binaryData."}, columnAge},
	cells: func(o object) []any {
		cm := o.(*corev1.ConfigMap)
		return []any{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), age(cm)}
	},
}

// Secret types and the keys they require.
var secretTypeKeys = map[corev1.SecretType][]string{
	corev1.SecretTypeOpaque:           nil,
	corev1.SecretTypeTLS:              {corev1.TLSCertKey, corev1.TLSPrivateKeyKey},
	corev1.SecretTypeDockerConfigJson: {corev1.DockerConfigJsonKey},
	corev1.SecretTypeDockercfg:        {corev1.DockerConfigKey},
	corev1.SecretTypeBasicAuth:        nil,
	corev1.SecretTypeSSHAuth:          {corev1.SSHAuthPrivateKey},
}

var secretKind = &storedKind{
	info:    servedResource("", "secrets"),
	new:     func() object { return &corev1.Secret{} },
	builtin: true,
	prepare: func(o object) {
		s := o.(*corev1.Secret)
		if s.Type == "" {
			s.Type = corev1.SecretTypeOpaque
		}
		// stringData is write-only: it lands in data, as on Kubernetes.
		for k, v := range s.StringData {
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	},
	validate: func(o object) []string {
		s := o.(*corev1.Secret)
		var problems []string
		size := 0
		for key, v := range s.Data {
			problems = append(problems, keyProblems("data", key)...)
			size += len(key) + len(v)
		}
		if size > maxDataBytes {
			problems = append(problems, fmt.Sprintf("data: Too long: may not be more than %d bytes", maxDataBytes))
		}
		required, known := secretTypeKeys[s.Type]
		if !known {
			types := make([]string, 0, len(secretTypeKeys))
			for t := range secretTypeKeys {
				types = append(types, string(t))
			}
			sort.Strings(types)
			problems = append(problems, fmt.Sprintf("type: Unsupported value: %q: supported values: %v", s.Type, types))
		}
		for _, key := range required {
			if _, ok := s.Data[key]; !ok {
				problems = append(problems, fmt.Sprintf("data[%s]: Required value: a %s secret needs it", key, s.Type))
			}
		}
		return problems
	},
	validateUpdate: func(old, new object) []string {
		o, n := old.(*corev1.Secret), new.(*corev1.Secret)
		var problems []string
		if n.Type != o.Type {
			problems = append(problems, fmt.Sprintf("type: Invalid value: %q: field is immutable", n.Type))
		}
		if o.Immutable != nil && *o.Immutable && (!reflect.DeepEqual(o.Data, n.Data) || n.Immutable == nil || !*n.Immutable) {
			problems = append(problems, "data: Forbidden: field is immutable when `immutable` is set")
		}
		return problems
	},
	columns: []metav1.TableColumnDefinition{columnName,
		{Name: "Type", Type: "string", Description: "The type of secret."},
		{Name: "Data", Type: "integer", Description: "The number of keys in data."}, columnAge},
	cells: func(o object) []any {
		s := o.(*corev1.Secret)
		return []any{s.Name, string(s.Type), int64(len(s.Data)), age(s)}
	},
}

func keyProblems(field, key string) []string {
	var out []string
	for _, msg := range validation.IsConfigMapKey(key) {
		out = append(out, fmt.Sprintf("%s[%s]: Invalid value: %q: %s", field, key, key, msg))
	}
	return out
}
