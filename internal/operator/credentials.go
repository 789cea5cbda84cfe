package operator

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	corev1 "k8s.io/api/core/v1"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// UserSecretKey is where the user's storage credentials are stored.
var UserSecretKey = store.ObjectKey{Resource: "secrets", Namespace: imageregistryv1.Namespace, Name: imageregistryv1.UserSecretName}

// credentialKeys are the keys of the user secret each storage type reads,
// and which of them the reference requires once the secret exists.
var credentialKeys = map[string]struct{ all, required []string }{
	"S3":    {[]string{"REGISTRY_STORAGE_S3_ACCESSKEY", "REGISTRY_STORAGE_S3_SECRETKEY"}, []string{"REGISTRY_STORAGE_S3_ACCESSKEY", "REGISTRY_STORAGE_S3_SECRETKEY"}},
	"GCS":   {[]string{"REGISTRY_STORAGE_GCS_KEYFILE"}, []string{"REGISTRY_STORAGE_GCS_KEYFILE"}},
	"Azure": {[]string{"REGISTRY_STORAGE_AZURE_ACCOUNTKEY"}, nil},
	"Swift": {[]string{"REGISTRY_STORAGE_SWIFT_USERNAME", "REGISTRY_STORAGE_SWIFT_PASSWORD", "REGISTRY_STORAGE_SWIFT_APPLICATIONCREDENTIALID",
		"REGISTRY_STORAGE_SWIFT_APPLICATIONCREDENTIALNAME", "REGISTRY_STORAGE_SWIFT_APPLICATIONCREDENTIALSECRET", "REGISTRY_STORAGE_SWIFT_TOKENID"}, nil},
}

// storageCredentials returns the credentials of the storage spec names:
// the server's environment variables of those names, overridden by the
// keys of the user secret (image-registry-private-configuration-user)
// when it exists; a secret that lacks a key the reference requires is an
// error naming it. The values never reach logs or status.
func (o *Operator) storageCredentials(ctx context.Context, s imageregistryv1.StorageConfig) (map[string]string, error) {
	types := s.StorageTypes()
	if len(types) != 1 {
		return nil, nil
	}
	keys, ok := credentialKeys[types[0]]
	if !ok {
		return nil, nil
	}
	creds := map[string]string{}
	for _, k := range keys.all {
		if v := os.Getenv(k); v != "" {
			creds[k] = v
		}
	}
	rec, err := o.opts.Store.GetObject(ctx, UserSecretKey)
	if errors.Is(err, errdefs.ErrNotFound) {
		return creds, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %q: %w", imageregistryv1.Namespace+"/"+imageregistryv1.UserSecretName, err)
	}
	var secret corev1.Secret
	if err := json.Unmarshal(rec.Body, &secret); err != nil {
		return nil, fmt.Errorf("decode secret %q: %w", imageregistryv1.Namespace+"/"+imageregistryv1.UserSecretName, err)
	}
	for _, k := range keys.required {
		if _, ok := secret.Data[k]; !ok {
			return nil, fmt.Errorf("secret %q does not contain required key %q", imageregistryv1.Namespace+"/"+imageregistryv1.UserSecretName, k)
		}
	}
	for k, v := range secret.Data {
		if slices.Contains(keys.all, k) {
			creds[k] = string(v)
		}
	}
	return creds, nil
}

// credentialsDigest stands for credentials in a comparison of snapshots.
func credentialsDigest(creds map[string]string) string {
	keys := make([]string, 0, len(creds))
	for k := range creds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, creds[k])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
