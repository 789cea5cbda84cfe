package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/store"
)

// The registry's Config (configs.imageregistry.operator.openshift.io) is
// stored here like any kind; its types and rules are in
// internal/api/imageregistry/v1, and internal/operator acts on it.

const groupImageRegistry = imageregistryv1.GroupName

// ConfigName is the one object of the singleton kinds the registry
// honours (the registry Config, the cluster image settings).
const ConfigName = imageregistryv1.ConfigName

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
	new:       func() object { return &imageregistryv1.Config{} },
	hasStatus: true,
	spec:      func(o object) any { return o.(*imageregistryv1.Config).Spec },
	validate:  func(o object) []string { return imageregistryv1.Validate(o.(*imageregistryv1.Config)) },
	columns:   []metav1.TableColumnDefinition{columnName, columnAge},
	cells:     func(o object) []any { return []any{o.GetName(), age(o)} },
}

// The ImagePruner (imagepruners.imageregistry.operator.openshift.io),
// whose schedule internal/operator runs.
var imagePrunerKind = &storedKind{
	info:      servedResource(groupImageRegistry, "imagepruners"),
	new:       func() object { return &imageregistryv1.ImagePruner{} },
	hasStatus: true,
	spec:      func(o object) any { return o.(*imageregistryv1.ImagePruner).Spec },
	validate:  func(o object) []string { return imageregistryv1.ValidateImagePruner(o.(*imageregistryv1.ImagePruner)) },
	columns: []metav1.TableColumnDefinition{columnName,
		{Name: "Schedule", Type: "string", Description: "When the registry prunes images."},
		{Name: "Suspend", Type: "boolean", Description: "Whether scheduled pruning is suspended."}, columnAge},
	cells: func(o object) []any {
		p := o.(*imageregistryv1.ImagePruner)
		schedule, _, _, _, _ := p.Spec.Effective()
		return []any{p.Name, schedule, p.Spec.Suspend != nil && *p.Spec.Suspend, age(p)}
	},
}

// SystemProjects are the projects Berth keeps for itself, as the
// reference's cluster has them: openshift-config holds the ConfigMaps the
// cluster image settings name (additional CAs), openshift-image-registry
// the registry's own Secrets (storage credentials). Only cluster
// administrators see them.
var SystemProjects = []string{"openshift-config", "openshift-image-registry"}

// EnsureClusterObjects creates, on every start, what a cluster has from
// the beginning: the system projects and the cluster image settings
// (named "cluster"; the registry Config is the operator's). Existing objects are left
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
