package registry

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/names"
	"github.com/berth-registry/berth/internal/store"
)

const (
	// maxPage caps n for tags and the catalog; a larger n gets this many
	// and a Link to the rest.
	maxPage = 10000
	// defaultCatalogPage is the catalog's page when the client names no n.
	defaultCatalogPage = 1000
	// defaultReferrersPage bounds one referrers answer; a Link leads on.
	defaultReferrersPage = 1000
)

// pageParams reads n and last. n is def when absent.
func pageParams(req *http.Request, def int) (n int, last string, err error) {
	q := req.URL.Query()
	n = def
	if s := q.Get("n"); s != "" {
		n, err = strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, "", newError(codePaginationInvalid, "n must be a non-negative integer, got %q", s)
		}
	}
	return min(n, maxPage), q.Get("last"), nil
}

func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // after the header a failed write is the client's hang-up
	return nil
}

func setNextLink(w http.ResponseWriter, path string, q url.Values) {
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

func pageQuery(last string, n int) url.Values {
	return url.Values{"last": {last}, "n": {strconv.Itoa(n)}}
}

// namePage reads n and last (n defaults to def), fetches one page of
// names and sets a Link to the next when there is one. The list is never
// nil, so it encodes as [].
func namePage(w http.ResponseWriter, req *http.Request, def int, fetch func(last string, n int) ([]string, bool, error)) ([]string, error) {
	n, last, err := pageParams(req, def)
	if err != nil || n == 0 {
		return []string{}, err
	}
	names, more, err := fetch(last, n)
	if err != nil {
		return nil, err
	}
	if more {
		setNextLink(w, req.URL.Path, pageQuery(names[len(names)-1], n))
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// listTags serves GET /v2/<name>/tags/list. Without n it lists up to
// maxPage tags, with a Link to the rest.
func (r *Registry) listTags(w http.ResponseWriter, req *http.Request, repo string) error {
	tags, err := namePage(w, req, maxPage, func(last string, n int) ([]string, bool, error) {
		return r.meta.Tags(req.Context(), repo, last, n)
	})
	if err != nil {
		return fromClass(err, codeNameUnknown, "repository "+repo)
	}
	return writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo, tags})
}

// catalog serves GET /v2/_catalog: the repositories the caller may pull.
func (r *Registry) catalog(w http.ResponseWriter, req *http.Request, _ string) error {
	ctx := req.Context()
	projects, all, err := r.visibleProjects(ctx, auth.IdentityFrom(ctx).User)
	if err != nil {
		return err
	}
	repos, err := namePage(w, req, defaultCatalogPage, func(last string, n int) ([]string, bool, error) {
		if all {
			return r.meta.Repositories(ctx, last, n)
		}
		return r.projects.RepositoriesIn(ctx, projects, last, n)
	})
	if err != nil {
		return err
	}
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}

// errNoReferrers stands, in place of a refusal, for the empty answer a
// repository that does not exist gives.
var errNoReferrers = errors.New("answer with an empty referrers list")

// listReferrers serves GET /v2/<name>/referrers/<digest>[?artifactType=].
func (r *Registry) listReferrers(w http.ResponseWriter, req *http.Request, repo string) error {
	return r.listReferrersOf(w, req, repo, false)
}

// listReferrersOf answers for repo, or, when hidden, as for a repository
// that does not exist (after the same checks of the request).
func (r *Registry) listReferrersOf(w http.ResponseWriter, req *http.Request, repo string, hidden bool) error {
	dgst, err := names.Digest(req.PathValue("digest"))
	if err != nil {
		return newError(codeDigestInvalid, "invalid digest %q: %v", req.PathValue("digest"), err)
	}
	n, last, err := pageParams(req, defaultReferrersPage)
	if err != nil {
		return err
	}
	artifactType := req.URL.Query().Get("artifactType")
	var refs []store.Descriptor
	var more bool
	if !hidden {
		if refs, more, err = r.meta.Referrers(req.Context(), repo, dgst, artifactType, last, n); err != nil {
			return err
		}
	}
	if refs == nil {
		refs = []store.Descriptor{}
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if more {
		q := pageQuery(string(refs[len(refs)-1].Digest), n)
		if artifactType != "" {
			q.Set("artifactType", artifactType)
		}
		setNextLink(w, req.URL.Path, q)
	}
	return writeJSON(w, v1.MediaTypeImageIndex, struct {
		SchemaVersion int                `json:"schemaVersion"`
		MediaType     string             `json:"mediaType"`
		Manifests     []store.Descriptor `json:"manifests"`
	}{2, v1.MediaTypeImageIndex, refs})
}

func sortedStrings(s []string) []string {
	slices.Sort(s)
	return s
}
