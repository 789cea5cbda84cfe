package apiserver

import (
	"context"
	"errors"
	"net/http"
	"strings"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/imagestream"
	"github.com/berth-registry/berth/internal/store"
)

// Writes of ImageStreams: create (an empty stream, or one whose spec tags
// name images to tag), update and patch (spec tags added, retargeted,
// removed; labels and annotations, which kubectl apply keeps its last
// configuration in) and delete (tags and history go; blobs stay for GC).

// StreamWriter is what the writes ask of the image-stream service.
type StreamWriter interface {
	CreateStream(ctx context.Context, host, project string, is *imagev1.ImageStream, uid string, o imagestream.WriteOptions) (*imagev1.ImageStream, error)
	UpdateStream(ctx context.Context, host, project, name string, is *imagev1.ImageStream, expect string, o imagestream.WriteOptions) (*imagev1.ImageStream, error)
	DeleteStream(ctx context.Context, project, name string) (store.ProjectDeletion, error)
}

func (s *Server) imageStreamWriteRoutes() {
	const base = "/apis/" + groupImage + "/v1/namespaces/{ns}/imagestreams"
	s.handleDryRun("POST "+base, s.createImageStream)
	s.handleDryRun("PUT "+base+"/{name}", s.updateImageStream)
	s.handleDryRun("PATCH "+base+"/{name}", s.patchImageStream)
	s.handle("DELETE "+base+"/{name}", s.deleteImageStream)
}

// readImageStream decodes the request's ImageStream, which must be in ns.
func readImageStream(w http.ResponseWriter, r *http.Request, ns string) (*imagev1.ImageStream, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	var is imagev1.ImageStream
	if err := decodeJSONOrYAML(r, body, &is); err != nil {
		return nil, err
	}
	return &is, checkImageStream(&is, ns)
}

func checkImageStream(is *imagev1.ImageStream, ns string) error {
	if is.Kind != "" && (is.Kind != "ImageStream" || is.APIVersion != groupImage+"/v1") {
		return badRequest("the body is a %s %s, not an %s/v1 ImageStream", is.APIVersion, is.Kind, groupImage)
	}
	if is.Namespace != "" && is.Namespace != ns {
		return badRequest("the namespace of the provided object (%q) does not match the namespace sent on the request (%q)", is.Namespace, ns)
	}
	return nil
}

// authorizeSources checks that the caller may pull what the spec tags of
// is name in other projects.
func (s *Server) authorizeSources(r *http.Request, ns string, is *imagev1.ImageStream) error {
	for _, src := range imagestream.Sources(ns, is) {
		if src.Kind != imagev1.KindDockerImage && src.Namespace != ns {
			if err := s.authorize(r, "get", auth.ImageStreamLayers, src.Namespace); err != nil {
				return err
			}
		}
	}
	return nil
}

// streamWriteOptions are the options of a stream write by r's caller:
// allowedRegistriesForImport applies to those who may not create images
// (the reference's rule), as for an ImageStreamImport.
func (s *Server) streamWriteOptions(r *http.Request) imagestream.WriteOptions {
	return imagestream.WriteOptions{DryRun: isDryRun(r), CheckImportList: s.authorize(r, "create", resImages, "") != nil}
}

// streamError answers the service's errors in the API's words.
func streamError(err error, name string) error {
	switch {
	case errors.Is(err, errdefs.ErrAlreadyExists):
		return &StatusError{http.StatusConflict, "AlreadyExists", `imagestreams.image.openshift.io "` + name + `" already exists`}
	case errors.Is(err, errdefs.ErrConflict):
		return &StatusError{http.StatusConflict, "Conflict", `Operation cannot be fulfilled on imagestreams.image.openshift.io "` + name +
			`": the object has been modified; please apply your changes to the latest version and try again`}
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return invalid("ImageStream.image.openshift.io %q is invalid: %s", name, imagestream.WithoutClass(err))
	case errors.Is(err, errdefs.ErrNotFound):
		return &StatusError{http.StatusNotFound, "NotFound", strings.TrimSuffix(err.Error(), ": "+errdefs.ErrNotFound.Error())}
	}
	return err
}

func (s *Server) createImageStream(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	if err := s.authorize(r, "create", resImageStreams, ns); err != nil {
		return err
	}
	if err := s.requireProject(r, ns); err != nil {
		return err
	}
	is, err := readImageStream(w, r, ns)
	if err != nil {
		return err
	}
	if is.Name == "" && is.GenerateName != "" {
		is.Name = is.GenerateName + randomSuffix()
	}
	if err := s.authorizeSources(r, ns, is); err != nil {
		return err
	}
	if err := refuseWhenReadOnly(r, "image streams cannot be created"); err != nil {
		return err
	}
	out, err := s.streams.CreateStream(r.Context(), registryHost(r), ns, is, newUID(), s.streamWriteOptions(r))
	if err != nil {
		return streamError(err, is.Name)
	}
	return writeJSONOrYAML(w, r, http.StatusCreated, out)
}

func (s *Server) updateImageStream(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "update", resImageStreams, ns); err != nil {
		return err
	}
	is, err := readImageStream(w, r, ns)
	if err != nil {
		return err
	}
	if is.Name != "" && is.Name != name {
		return badRequest("the name of the object (%s) does not match the name on the URL (%s)", is.Name, name)
	}
	return s.replaceImageStream(w, r, ns, name, is, is.ResourceVersion)
}

func (s *Server) replaceImageStream(w http.ResponseWriter, r *http.Request, ns, name string, is *imagev1.ImageStream, expect string) error {
	if err := s.authorizeSources(r, ns, is); err != nil {
		return err
	}
	if err := refuseWhenReadOnly(r, "image streams cannot be changed"); err != nil {
		return err
	}
	out, err := s.streams.UpdateStream(r.Context(), registryHost(r), ns, name, is, expect, s.streamWriteOptions(r))
	if errors.Is(err, errdefs.ErrNotFound) && !strings.Contains(err.Error(), ".from") {
		return &StatusError{http.StatusNotFound, "NotFound", `imagestreams.image.openshift.io "` + name + `" not found`}
	}
	if err != nil {
		return streamError(err, name)
	}
	return writeJSONOrYAML(w, r, http.StatusOK, out)
}

// patchImageStream applies a JSON merge patch or JSON patch (what
// kubectl apply, edit and patch send for a kind it has no Go type of) to
// the stream as it is, and writes the result as an update.
func (s *Server) patchImageStream(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "patch", resImageStreams, ns); err != nil {
		return err
	}
	patch, err := readBody(w, r)
	if err != nil {
		return err
	}
	cur, err := s.streams.Named(r.Context(), registryHost(r), ns, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &StatusError{http.StatusNotFound, "NotFound", `imagestreams.image.openshift.io "` + name + `" not found`}
	}
	if err != nil {
		return err
	}
	doc := mustJSON(cur)
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	patched, err := applyPatch(strings.TrimSpace(ct), doc, patch, nil)
	if err != nil {
		return err
	}
	var is imagev1.ImageStream
	if err := decodeStrictJSON(patched, &is, false); err != nil {
		return err
	}
	if err := checkImageStream(&is, ns); err != nil {
		return err
	}
	if is.Name != name {
		return invalid("metadata.name: Invalid value: %q: field is immutable", is.Name)
	}
	// A patch that names a resourceVersion is a precondition; one that
	// does not applies to the stream as read.
	expect := ""
	if is.ResourceVersion != cur.ResourceVersion {
		expect = is.ResourceVersion
	}
	return s.replaceImageStream(w, r, ns, name, &is, expect)
}

func (s *Server) deleteImageStream(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "delete", resImageStreams, ns); err != nil {
		return err
	}
	if err := refuseWhenReadOnly(r, "image streams cannot be deleted"); err != nil {
		return err
	}
	gone, err := s.streams.DeleteStream(r.Context(), ns, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &StatusError{http.StatusNotFound, "NotFound", `imagestreams.image.openshift.io "` + name + `" not found`}
	}
	if err != nil {
		return err
	}
	if s.opts.Blobs != nil {
		for _, u := range gone.Uploads {
			if err := s.opts.Blobs.AbortUpload(context.WithoutCancel(r.Context()), u); err != nil {
				s.log.Warn("discard an upload of a deleted image stream", "stream", ns+"/"+name, "upload", u.ID, "err", err)
			}
		}
	}
	s.log.Info("image stream deleted", "stream", ns+"/"+name, "by", caller(r).User.Name, "uploads", len(gone.Uploads))
	writeSuccess(w, name, groupImage, "imagestreams")
	return nil
}
