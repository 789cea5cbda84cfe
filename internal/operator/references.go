package operator

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/store"
)

// configNamespace holds the ConfigMaps the Config names (CA bundles).
const configNamespace = "openshift-config"

// caBundleKey is the key of a trusted-CA ConfigMap the reference reads.
const caBundleKey = "ca-bundle.crt"

// trustedCA returns the CA bundle spec.storage.s3.trustedCA names (nil
// when it names none), or an error that names what is missing.
func (o *Operator) trustedCA(ctx context.Context, s imageregistryv1.StorageConfig) ([]byte, error) {
	if s.S3 == nil || s.S3.TrustedCA.Name == "" {
		return nil, nil
	}
	name := s.S3.TrustedCA.Name
	rec, err := o.opts.Store.GetObject(ctx, store.ObjectKey{Resource: "configmaps", Namespace: configNamespace, Name: name})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("configmap %q named by spec.storage.s3.trustedCA does not exist: create it with the CA bundle under the key %s", configNamespace+"/"+name, caBundleKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read configmap %q: %w", configNamespace+"/"+name, err)
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(rec.Body, &cm); err != nil {
		return nil, fmt.Errorf("decode configmap %q: %w", configNamespace+"/"+name, err)
	}
	bundle, ok := cm.Data[caBundleKey]
	if !ok {
		return nil, fmt.Errorf("configmap %q named by spec.storage.s3.trustedCA has no key %s", configNamespace+"/"+name, caBundleKey)
	}
	if !x509.NewCertPool().AppendCertsFromPEM([]byte(bundle)) {
		return nil, fmt.Errorf("configmap %q: %s holds no PEM certificate", configNamespace+"/"+name, caBundleKey)
	}
	return []byte(bundle), nil
}

// storageSecrets returns the values of the Secrets spec.storage names, by
// field: the CloudFront private key of spec.storage.s3.cloudFront, from
// its Secret in openshift-image-registry. A missing Secret or key is an
// error naming it.
func (o *Operator) storageSecrets(ctx context.Context, s imageregistryv1.StorageConfig) (map[string][]byte, error) {
	if s.S3 == nil || s.S3.CloudFront == nil {
		return nil, nil
	}
	sel := s.S3.CloudFront.PrivateKey
	full := imageregistryv1.Namespace + "/" + sel.Name
	rec, err := o.opts.Store.GetObject(ctx, store.ObjectKey{Resource: "secrets", Namespace: imageregistryv1.Namespace, Name: sel.Name})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("secret %q named by spec.storage.s3.cloudFront.privateKey does not exist: create it with the PEM private key under the key %s", full, sel.Key)
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %q: %w", full, err)
	}
	var secret corev1.Secret
	if err := json.Unmarshal(rec.Body, &secret); err != nil {
		return nil, fmt.Errorf("decode secret %q: %w", full, err)
	}
	key, ok := secret.Data[sel.Key]
	if !ok {
		return nil, fmt.Errorf("secret %q named by spec.storage.s3.cloudFront.privateKey has no key %s", full, sel.Key)
	}
	return map[string][]byte{storage.SecretCloudFrontKey: key}, nil
}
