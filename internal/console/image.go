package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
)

// An image of a stream: its layers with the history that made them, its
// config, an index's children, its referrers (signatures, SBOMs,
// attestations), and the raw manifest and config. The Image comes from
// the management API; the manifest, config and referrers from /v2, read
// as the user pulls them.

// manifestAccept is every manifest type /v2 serves.
const manifestAccept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// maxConfigShown bounds the config blob the page reads.
const maxConfigShown = 1 << 20

type layerRow struct {
	Digest, MediaType string
	Size              int64
	CreatedBy         string
}

type historyRow struct {
	CreatedBy, Comment string
	Empty              bool
}

type imageData struct {
	Project, Stream, Digest string
	Image                   imagev1.Image
	Layers                  []layerRow
	EmptyHistory            []historyRow
	Config                  *ocispec.ImageConfig
	Platform                string
	Labels, Ports           []string
	Children                []imagev1.ImageManifest
	Referrers               []ocispec.Descriptor
	RawManifest, RawConfig  string
	ConfigError             string
	Size                    int64
	Tabs                    projectTabs
}

func (c *Console) imagePage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, stream, dgst := r.PathValue("ns"), r.PathValue("stream"), r.PathValue("digest")
	repo := ns + "/" + stream
	d := imageData{Project: ns, Stream: stream, Digest: dgst, Tabs: c.tabsOf(r, s, ns)}
	// The manifest as this repository serves it: the user's pull right
	// on the stream decides, as for podman pull.
	_, raw, _, err := c.api.do(r, s.token, call{method: http.MethodGet, path: "/v2/" + repo + "/manifests/" + dgst, accept: manifestAccept,
		viewing: true})
	if err != nil {
		return err
	}
	d.RawManifest = jsonIndent(raw)
	if err := c.api.getJSON(r, s.token, "/apis/image.openshift.io/v1/images/"+url.PathEscape(dgst), nil, &d.Image); err != nil && !isForbidden(err) {
		return err
	}
	var m struct {
		ocispec.Manifest
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	_ = json.Unmarshal(raw, &m)
	d.Children = d.Image.DockerImageManifests
	d.Size = int64(len(raw))
	for _, l := range m.Layers {
		d.Layers = append(d.Layers, layerRow{Digest: string(l.Digest), MediaType: l.MediaType, Size: l.Size})
		d.Size += l.Size
	}
	if m.Config.Digest != "" {
		d.Size += m.Config.Size
		c.readConfig(r, s, repo, m.Config, &d)
	}
	var referrers ocispec.Index
	if _, body, _, err := c.api.do(r, s.token, call{method: http.MethodGet, path: "/v2/" + repo + "/referrers/" + dgst}); err == nil {
		if json.Unmarshal(body, &referrers) == nil {
			d.Referrers = referrers.Manifests
		}
	}
	c.render(w, r, http.StatusOK, "image", s, repo+"@"+shortDigest(dgst), d)
	return nil
}

// readConfig reads the image's config blob: its run settings, and the
// history whose non-empty entries made the layers, in order.
func (c *Console) readConfig(r *http.Request, s *session, repo string, desc ocispec.Descriptor, d *imageData) {
	if desc.Size > maxConfigShown {
		d.ConfigError = "the config is larger than the page shows (" + humanBytes(desc.Size) + ")"
		return
	}
	_, body, _, err := c.api.do(r, s.token, call{method: http.MethodGet, path: "/v2/" + repo + "/blobs/" + string(desc.Digest)})
	if err != nil {
		d.ConfigError = "the config could not be read: " + statusMessageOf(err)
		return
	}
	d.RawConfig = jsonIndent(body)
	var cfg ocispec.Image
	if err := json.Unmarshal(body, &cfg); err != nil {
		d.ConfigError = "the config is not an image config (an artifact's, perhaps)"
		return
	}
	d.Config = &cfg.Config
	d.Platform = strings.Trim(cfg.OS+"/"+cfg.Architecture+"/"+cfg.Variant, "/")
	for k, v := range cfg.Config.Labels {
		d.Labels = append(d.Labels, k+"="+v)
	}
	slices.Sort(d.Labels)
	for p := range cfg.Config.ExposedPorts {
		d.Ports = append(d.Ports, p)
	}
	slices.Sort(d.Ports)
	layer := 0
	for _, h := range cfg.History {
		if h.EmptyLayer {
			d.EmptyHistory = append(d.EmptyHistory, historyRow{CreatedBy: h.CreatedBy, Comment: h.Comment, Empty: true})
			continue
		}
		if layer < len(d.Layers) {
			d.Layers[layer].CreatedBy = h.CreatedBy
		}
		layer++
	}
}

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return d
}

// jsonIndent is body indented for reading, as it is when it is not JSON.
func jsonIndent(body []byte) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return string(body)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(body)
	}
	return string(out)
}
