// Package imagev1 holds the image.openshift.io/v1 kinds Berth serves
// (Image, ImageStream, ImageStreamTag) with the reference's JSON field
// names, shared by the API server and the CLI that prints them.
package imagev1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GroupName is the API group of these kinds.
const GroupName = "image.openshift.io"

// ImageStream is image.openshift.io/v1 ImageStream.
type ImageStream struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ImageStreamSpec   `json:"spec"`
	Status            ImageStreamStatus `json:"status"`
}

// ImageStreamSpec holds the stream's spec tags: the tags that follow or
// were set from other images (tag, alias, import); pushed tags are in
// status only.
type ImageStreamSpec struct {
	LookupPolicy ImageLookupPolicy `json:"lookupPolicy"`
	Tags         []TagReference    `json:"tags,omitempty" description:"Tags that follow or were set from other images (tag, alias, import); pushed tags are in status only."`
}

// TagReference is a spec tag: where the tag's image comes from.
type TagReference struct {
	Name        string            `json:"name" description:"The tag."`
	Annotations map[string]string `json:"annotations,omitempty"`
	From        *ObjectReference  `json:"from,omitempty" description:"The image: an ImageStreamTag (the tag follows it), an ImageStreamImage (stream@digest, set once) or a DockerImage (imported)."`
	// Reference, for a DockerImage, records the pull spec without
	// importing anything.
	Reference       bool               `json:"reference,omitempty" description:"For a DockerImage: record the external pull spec only, fetch nothing."`
	Generation      *int64             `json:"generation,omitempty" description:"The stream generation this tag was last set at; set it to 0 (or omit) to ask for it to be set again."`
	ImportPolicy    TagImportPolicy    `json:"importPolicy,omitzero"`
	ReferencePolicy TagReferencePolicy `json:"referencePolicy,omitzero"`
}

// ObjectReference names the source of a spec tag.
type ObjectReference struct {
	Kind      string `json:"kind" description:"ImageStreamTag, ImageStreamImage or DockerImage."`
	Namespace string `json:"namespace,omitempty" description:"The project of an ImageStreamTag or ImageStreamImage (the stream's own when empty)."`
	Name      string `json:"name" description:"stream:tag, stream@sha256:..., or a pull spec."`
}

// TagImportPolicy says how a DockerImage tag is imported.
type TagImportPolicy struct {
	Insecure   bool   `json:"insecure,omitempty" description:"Allow HTTP or an unverified certificate for this import."`
	Scheduled  bool   `json:"scheduled,omitempty" description:"Import again periodically."`
	ImportMode string `json:"importMode,omitempty" description:"Legacy (one platform of an index) or PreserveOriginal (the whole index)."`
}

// TagReferencePolicy says how pulls of the tag are referred: Source (the
// upstream pull spec) or Local (through this registry, pull-through).
type TagReferencePolicy struct {
	Type string `json:"type,omitempty" description:"Source or Local."`
}

// The kinds a spec tag's from names.
const (
	KindImageStreamTag   = "ImageStreamTag"
	KindImageStreamImage = "ImageStreamImage"
	KindDockerImage      = "DockerImage"
)

// ImageLookupPolicy says whether the stream's tags resolve locally.
type ImageLookupPolicy struct {
	Local bool `json:"local"`
}

// ImageStreamStatus is where the stream is pulled from and its tags'
// histories.
type ImageStreamStatus struct {
	DockerImageRepository       string              `json:"dockerImageRepository" description:"Where to pull the stream from: the registry's host and <project>/<name>."`
	PublicDockerImageRepository string              `json:"publicDockerImageRepository,omitempty" description:"Where to pull the stream from outside the cluster, when a route exposes the registry."`
	Tags                        []NamedTagEventList `json:"tags,omitempty" description:"Each tag and its history."`
}

// NamedTagEventList is one tag and its history, newest first.
type NamedTagEventList struct {
	Tag        string              `json:"tag"`
	Items      []TagEvent          `json:"items" description:"The tag's history, newest first: the first entry is what the tag points at."`
	Conditions []TagEventCondition `json:"conditions,omitempty" description:"ImportSuccess False when the tag's last import failed (the image before stays current)."`
}

// TagEventCondition is a condition of a tag: ImportSuccess.
type TagEventCondition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
	Reason             string      `json:"reason,omitempty" description:"NotFound, Unauthorized, Forbidden, BadRequest, InternalError, …"`
	Message            string      `json:"message,omitempty"`
	Generation         int64       `json:"generation"`
}

// TagEvent is one entry of a tag's history.
type TagEvent struct {
	Created              metav1.Time `json:"created" description:"When the tag was set to this image."`
	DockerImageReference string      `json:"dockerImageReference" description:"The image by digest, ready to pull."`
	Image                string      `json:"image" description:"The digest of the image (the name of its Image)."`
	Generation           int64       `json:"generation" description:"The stream generation that set this entry."`
	// Actor and Reason are Berth's: who made the entry and why.
	Actor  string `json:"actor,omitempty" description:"Berth: the user who made this entry (empty for Berth itself, as a scheduled import)."`
	Reason string `json:"reason,omitempty" description:"Berth: why the tag moved: empty for a push, or Tagged, Alias, Rollback, Imported."`
}

// ImageStreamTag is image.openshift.io/v1 ImageStreamTag: one tag of a
// stream and the image it points at.
type ImageStreamTag struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Tag               *TagReference     `json:"tag"`
	Generation        int64             `json:"generation"`
	LookupPolicy      ImageLookupPolicy `json:"lookupPolicy" description:"Whether the stream's tags resolve for workloads of its project."`
	Image             ImageRef          `json:"image"`
}

// ImageRef is the image an ImageStreamTag points at.
type ImageRef struct {
	metav1.ObjectMeta            `json:"metadata"`
	DockerImageReference         string `json:"dockerImageReference"`
	DockerImageManifestMediaType string `json:"dockerImageManifestMediaType,omitempty"`
}

// Image is image.openshift.io/v1 Image.
type Image struct {
	metav1.TypeMeta              `json:",inline"`
	metav1.ObjectMeta            `json:"metadata,omitempty"`
	DockerImageReference         string          `json:"dockerImageReference,omitempty"`
	DockerImageMetadata          *DockerImage    `json:"dockerImageMetadata,omitempty"`
	DockerImageMetadataVersion   string          `json:"dockerImageMetadataVersion,omitempty"`
	DockerImageLayers            []ImageLayer    `json:"dockerImageLayers"`
	DockerImageManifestMediaType string          `json:"dockerImageManifestMediaType,omitempty"`
	DockerImageManifests         []ImageManifest `json:"dockerImageManifests,omitempty"`
}

// DockerImage is the image's metadata, from its config (the reference's
// "1.0" metadata, whose fields are capitalized).
type DockerImage struct {
	Kind         string        `json:"kind"`
	APIVersion   string        `json:"apiVersion"`
	ID           string        `json:"Id"`
	Created      *metav1.Time  `json:"Created,omitempty"`
	Config       *DockerConfig `json:"Config,omitempty"`
	Architecture string        `json:"Architecture,omitempty"`
	OS           string        `json:"Os,omitempty"`
	Size         int64         `json:"Size,omitempty"`
}

// DockerConfig is the run configuration of an image.
type DockerConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

// ImageLayer is one layer.
type ImageLayer struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

// ImageManifest is one child of an image index.
type ImageManifest struct {
	Digest       string `json:"digest"`
	MediaType    string `json:"mediaType"`
	ManifestSize int64  `json:"manifestSize"`
	Architecture string `json:"architecture,omitempty"`
	OS           string `json:"os,omitempty"`
	Variant      string `json:"variant,omitempty"`
}

// ImageStreamImport is image.openshift.io/v1 ImageStreamImport: a request
// (create only) to import images from other registries into the stream
// of its name, answered with the outcome of each.
type ImageStreamImport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ImageStreamImportSpec   `json:"spec"`
	Status            ImageStreamImportStatus `json:"status"`
}

// ImageStreamImportSpec is what to import.
type ImageStreamImportSpec struct {
	// Import writes the result into the stream (creating it); false only
	// looks the images up (a dry run).
	Import     bool                  `json:"import" description:"Write the result into the stream (creating it); false looks the images up only."`
	Repository *RepositoryImportSpec `json:"repository,omitempty" description:"Import every tag of an upstream repository, up to the server's maximum."`
	Images     []ImageImportSpec     `json:"images,omitempty" description:"Import these images, each to a tag."`
}

// RepositoryImportSpec imports a whole upstream repository.
type RepositoryImportSpec struct {
	From            ObjectReference    `json:"from" description:"A DockerImage naming the upstream repository."`
	ImportPolicy    TagImportPolicy    `json:"importPolicy,omitzero"`
	ReferencePolicy TagReferencePolicy `json:"referencePolicy,omitzero"`
	IncludeManifest bool               `json:"includeManifest,omitempty"`
}

// ImageImportSpec imports one image.
type ImageImportSpec struct {
	From            ObjectReference       `json:"from" description:"A DockerImage: the upstream pull spec, by tag or digest."`
	To              *LocalObjectReference `json:"to,omitempty" description:"The tag to set; none only looks the image up."`
	ImportPolicy    TagImportPolicy       `json:"importPolicy,omitzero"`
	ReferencePolicy TagReferencePolicy    `json:"referencePolicy,omitzero"`
	IncludeManifest bool                  `json:"includeManifest,omitempty"`
}

// LocalObjectReference names a tag of the stream.
type LocalObjectReference struct {
	Name string `json:"name"`
}

// ImageStreamImportStatus is the outcome of an import.
type ImageStreamImportStatus struct {
	Import     *ImageStream            `json:"import,omitempty" description:"The stream after the import."`
	Repository *RepositoryImportStatus `json:"repository,omitempty"`
	Images     []ImageImportStatus     `json:"images,omitempty" description:"One per spec.images entry, in order."`
}

// RepositoryImportStatus is the outcome of a repository import.
type RepositoryImportStatus struct {
	Status         metav1.Status       `json:"status"`
	Images         []ImageImportStatus `json:"images,omitempty"`
	AdditionalTags []string            `json:"additionalTags,omitempty" description:"Upstream tags beyond the server's maximum, not imported."`
}

// ImageImportStatus is the outcome of one image's import.
type ImageImportStatus struct {
	Status    metav1.Status `json:"status"`
	Image     *Image        `json:"image,omitempty"`
	Tag       string        `json:"tag,omitempty"`
	Manifests []Image       `json:"manifests,omitempty" description:"An index's images, when the import preserved it."`
}
