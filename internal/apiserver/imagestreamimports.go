package apiserver

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/imagestream"
)

// ImageStreamImports (create only): import images of other registries
// into a stream, as `berth import-image` asks. The answer reports each
// image's outcome; a failed image is in the answer (and on its tag), not
// an error of the request.

var resImageStreamImports = auth.Resource{Group: groupImage, Resource: "imagestreamimports"}

// Importer runs ImageStreamImports (the image-stream service).
type Importer interface {
	Import(ctx context.Context, project string, isi *imagev1.ImageStreamImport, checkImportList bool) (imagestream.ImportOutcome, error)
}

func (s *Server) createImageStreamImport(w http.ResponseWriter, r *http.Request) error {
	ns := r.PathValue("ns")
	if err := s.authorize(r, "create", resImageStreamImports, ns); err != nil {
		return err
	}
	if err := s.requireProject(r, ns); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var isi imagev1.ImageStreamImport
	if err := decodeJSONOrYAML(r, body, &isi); err != nil {
		return err
	}
	if isi.Kind != "" && (isi.Kind != "ImageStreamImport" || isi.APIVersion != groupImage+"/v1") {
		return badRequest("the body is a %s %s, not an %s/v1 ImageStreamImport", isi.APIVersion, isi.Kind, groupImage)
	}
	if isi.Namespace != "" && isi.Namespace != ns {
		return badRequest("the namespace of the provided object (%q) does not match the namespace sent on the request (%q)", isi.Namespace, ns)
	}
	isi.Namespace = ns
	if isi.Spec.Import {
		// Writing the result creates or changes the stream.
		verb := "update"
		if _, err := s.streams.Named(r.Context(), registryHost(r), ns, isi.Name); errors.Is(err, errdefs.ErrNotFound) {
			verb = "create"
		}
		if err := s.authorize(r, verb, resImageStreams, ns); err != nil {
			return err
		}
		if err := refuseWhenReadOnly(r, "images cannot be imported"); err != nil {
			return err
		}
	}
	// The reference applies allowedRegistriesForImport to callers who
	// may not create images (administrators and the registry's own
	// integrations skip it).
	checkList := s.authorize(r, "create", resImages, "") != nil
	outcome, err := s.streams.Import(r.Context(), ns, &isi, checkList)
	if err != nil {
		if errors.Is(err, errdefs.ErrInvalidArgument) {
			return invalid("ImageStreamImport.image.openshift.io %q is invalid: %s", isi.Name, imagestream.WithoutClass(err))
		}
		return err
	}
	isi.Status = imagev1.ImageStreamImportStatus{}
	for _, res := range outcome.Images {
		isi.Status.Images = append(isi.Status.Images, s.importStatus(r, res))
	}
	if isi.Spec.Repository != nil {
		rs := &imagev1.RepositoryImportStatus{Status: imagestream.ImportStatus(outcome.RepositoryErr), AdditionalTags: outcome.AdditionalTags}
		failed := 0
		for _, res := range outcome.Repository {
			st := s.importStatus(r, res)
			if res.Err != nil {
				failed++
			}
			rs.Images = append(rs.Images, st)
		}
		if outcome.RepositoryErr == nil && failed > 0 {
			rs.Status = imagestream.ImportStatus(&imagestream.ImportError{Reason: "ImportFailed",
				Message: strings.TrimSpace(plural(failed, "of the images from this repository failed to import"))})
		}
		isi.Status.Repository = rs
	}
	if isi.Spec.Import {
		if is, err := s.streams.Named(r.Context(), registryHost(r), ns, isi.Name); err == nil {
			isi.Status.Import = is
		}
	}
	isi.Kind, isi.APIVersion = "ImageStreamImport", groupImage+"/v1"
	return writeJSONOrYAML(w, r, http.StatusCreated, &isi)
}

func plural(n int, what string) string {
	if n == 1 {
		return "one " + what
	}
	return strconv.Itoa(n) + " " + what
}

// importStatus is the status of one imported image, with its Image.
func (s *Server) importStatus(r *http.Request, res imagestream.ImportResult) imagev1.ImageImportStatus {
	st := imagev1.ImageImportStatus{Status: imagestream.ImportStatus(res.Err), Tag: res.Tag}
	if res.Err != nil || len(res.Fetched.Manifests) == 0 {
		return st
	}
	for i, m := range res.Fetched.Manifests {
		sm, err := s.opts.Store.StoredManifestByDigest(r.Context(), m.Digest)
		if err != nil {
			// A dry run records nothing: the Image is described from the
			// fetched manifest alone.
			sm.Manifest, sm.Size, sm.Created = m, int64(len(m.Payload)), time.Now()
		}
		img := s.image(r.Context(), r, sm, true)
		img.DockerImageReference = res.Fetched.Source + "@" + string(m.Digest)
		if i == 0 {
			st.Image = img
		} else {
			st.Manifests = append(st.Manifests, *img)
		}
	}
	return st
}
