package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/upstream"
	"github.com/berth-registry/berth/internal/webhook"
)

// What imports and pull-through read of the cluster: the project's pull
// secrets, the image config's trusted CAs and registry policy; and where
// they put what they fetch: the storage in effect.

// imageConfigKey is the cluster image config (images.config.openshift.io/cluster).
var imageConfigKey = store.ObjectKey{Group: "config.openshift.io", Resource: "images", Name: "cluster"}

// trustNamespace holds the ConfigMap additionalTrustedCA names.
const trustNamespace = "openshift-config"

// clusterImages reads the cluster's image settings from the store.
type clusterImages struct{ meta *store.Store }

func (c clusterImages) config(ctx context.Context) (apiserver.ImageConfig, error) {
	var cfg apiserver.ImageConfig
	o, err := c.meta.GetObject(ctx, imageConfigKey)
	if errors.Is(err, errdefs.ErrNotFound) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read the cluster image config: %w", err)
	}
	if err := json.Unmarshal(o.Body, &cfg); err != nil {
		return cfg, fmt.Errorf("decode the cluster image config: %w", err)
	}
	return cfg, nil
}

// Secrets are project's pull secrets (dockerconfigjson and dockercfg).
func (c clusterImages) Secrets(ctx context.Context, project string) ([]corev1.Secret, error) {
	var out []corev1.Secret
	q := store.ObjectQuery{Resource: "secrets", Namespace: project, Limit: 500}
	for {
		objs, more, _, err := c.meta.ListObjects(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list the secrets of %s: %w", project, err)
		}
		for _, o := range objs {
			var sec corev1.Secret
			if err := json.Unmarshal(o.Body, &sec); err != nil {
				continue // not a secret anyone can use
			}
			if sec.Type == corev1.SecretTypeDockerConfigJson || sec.Type == corev1.SecretTypeDockercfg {
				out = append(out, sec)
			}
		}
		if !more || len(objs) == 0 {
			return out, nil
		}
		q.After = store.ObjectCursor{Namespace: objs[len(objs)-1].Namespace, Name: objs[len(objs)-1].Name}
	}
}

// Trust is the data of the ConfigMap additionalTrustedCA names: a PEM
// bundle per registry ("host" or "host..port").
func (c clusterImages) Trust(ctx context.Context) (map[string][]byte, error) {
	cfg, err := c.config(ctx)
	if err != nil || cfg.Spec.AdditionalTrustedCA == nil || cfg.Spec.AdditionalTrustedCA.Name == "" {
		return nil, err
	}
	name := cfg.Spec.AdditionalTrustedCA.Name
	o, err := c.meta.GetObject(ctx, store.ObjectKey{Resource: "configmaps", Namespace: trustNamespace, Name: name})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("the trusted CA configmap %s/%s of images.config.openshift.io/cluster does not exist", trustNamespace, name)
	}
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := json.Unmarshal(o.Body, &cm); err != nil {
		return nil, fmt.Errorf("decode configmap %s/%s: %w", trustNamespace, name, err)
	}
	out := map[string][]byte{}
	for k, v := range cm.Data {
		out[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		out[k] = v
	}
	return out, nil
}

// Policy is the cluster's registry policy.
func (c clusterImages) Policy(ctx context.Context) (upstream.Policy, error) {
	cfg, err := c.config(ctx)
	if err != nil {
		return upstream.Policy{}, err
	}
	var p upstream.Policy
	if l := cfg.Spec.AllowedRegistriesForImport; l != nil {
		p.AllowedRegistriesForImport = []upstream.Location{}
		for _, loc := range l {
			p.AllowedRegistriesForImport = append(p.AllowedRegistriesForImport, upstream.Location{DomainName: loc.DomainName, Insecure: loc.Insecure})
		}
	}
	if rs := cfg.Spec.RegistrySources; rs != nil {
		p.Blocked, p.Allowed, p.Insecure = rs.BlockedRegistries, rs.AllowedRegistries, rs.InsecureRegistries
	}
	return p, nil
}

// importBlobs puts what imports fetch (config blobs) into the storage in
// effect, checked against their digest and size, and links them.
type importBlobs struct {
	storages *blobStorages
	meta     *store.Store
}

func (b importBlobs) PutBlob(ctx context.Context, repo string, dgst digest.Digest, size int64, r io.Reader) error {
	st := settings.From(ctx).Storage
	if st.Driver == nil {
		st = b.storages.inEffect()
	}
	if st.Driver == nil {
		return fmt.Errorf("store blob %s: no storage in effect: %w", dgst, errdefs.ErrUnavailable)
	}
	if settings.From(ctx).ReadOnly {
		return fmt.Errorf("store blob %s: the registry is read-only: %w", dgst, errdefs.ErrUnavailable)
	}
	if n, err := b.meta.BlobSize(ctx, store.Only(st.ID), repo, dgst); err == nil && n == size {
		return nil // already here
	}
	return registry.Ingest(ctx, st, b.meta, repo, dgst, size, r)
}

// importDestinations are the addresses of the cluster's own network that
// imports and pull-through may reach, from the settings of the request
// (or of the scheduler's pass): the Config's
// spec.imageStreams.allowedImportDestinations, public addresses besides.
func importDestinations(ctx context.Context) (*webhook.Destinations, string, error) {
	allowed := settings.From(ctx).ImportDestinations
	d, err := webhook.NewDestinations(allowed)
	if err != nil {
		return nil, "", fmt.Errorf("spec.imageStreams.allowedImportDestinations: %w", err)
	}
	return d, strings.Join(allowed, "\n"), nil
}
