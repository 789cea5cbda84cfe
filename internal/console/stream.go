package console

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
	"github.com/berth-registry/berth/internal/imagestream"
)

// An image stream's tags, a tag's history (revert, delete), and the live
// updates of both.

// tagRow is a tag as the stream page lists it.
type tagRow struct {
	Project, Stream, Tag string
	Digest, MediaType    string
	Size                 int64
	Pushed, LastPulled   time.Time
	PushedBy             string
	Pulls                int64
	Index                bool
	Platforms            []platform
	Pull                 []pullCommand
}

// platform is an index's image for one platform.
type platform struct {
	Name, Digest string
	Size         int64
}

// pullCommand is a command to pull an image, with the client it is for.
type pullCommand struct {
	Client, By, Command string
}

func tagRowOf(ist imagev1.ImageStreamTag) tagRow {
	stream, tag, _ := strings.Cut(ist.Name, ":")
	row := tagRow{Project: ist.Namespace, Stream: stream, Tag: tag, Digest: ist.Image.Name,
		MediaType: ist.Image.DockerImageManifestMediaType, Pushed: ist.CreationTimestamp.Time,
		PushedBy: ist.Annotations[imagestream.AnnotationPushedBy]}
	row.Size, _ = strconv.ParseInt(ist.Annotations[imagestream.AnnotationImageSize], 10, 64)
	row.Pulls, _ = strconv.ParseInt(ist.Annotations[imagestream.AnnotationPulls], 10, 64)
	if at, err := time.Parse(time.RFC3339, ist.Annotations[imagestream.AnnotationLastPulled]); err == nil {
		row.LastPulled = at
	}
	row.Index = strings.Contains(row.MediaType, "index") || strings.Contains(row.MediaType, "manifest.list")
	return row
}

// pullCommands are the ways to pull repo (host/project/stream) by tag and
// by digest with podman, docker, skopeo and oras.
func pullCommands(repo, tag, dgst string) []pullCommand {
	var out []pullCommand
	for _, by := range []struct{ name, ref string }{{"tag", repo + ":" + tag}, {"digest", repo + "@" + dgst}} {
		out = append(out,
			pullCommand{"podman", by.name, "podman pull " + by.ref},
			pullCommand{"docker", by.name, "docker pull " + by.ref},
			pullCommand{"skopeo", by.name, "skopeo copy docker://" + by.ref + " oci:" + lastPart(repo) + ":" + tag},
			pullCommand{"oras", by.name, "oras pull " + by.ref})
	}
	return out
}

func lastPart(repo string) string { return repo[strings.LastIndex(repo, "/")+1:] }

type streamData struct {
	Project, Stream, Repo string
	Columns               []sortColumn
	Tags                  []tagRow
	Pager                 pager
	Filter                filterForm
	Login                 string
	CanDelete             bool
	Events                string
	Tabs                  projectTabs
}

var tagSortKeys = []string{"name", "pushed", "size", "lastPulled", "pulls"}

// maxPlatforms bounds the children of an index the tags table details.
const maxPlatforms = 16

func (c *Console) streamPage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, stream := r.PathValue("ns"), r.PathValue("stream")
	t := readTableQuery(r, tagSortKeys)
	q := t.apiQuery()
	q.Set("imageStream", stream)
	var list struct {
		Metadata struct {
			listMeta
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []imagev1.ImageStreamTag `json:"items"`
	}
	if err := c.api.getJSON(r, s.token, imagePath(ns, "imagestreamtags"), q, &list); err != nil {
		return err
	}
	repo := r.Host + "/" + ns + "/" + stream
	base := r.URL.RequestURI()
	d := streamData{Project: ns, Stream: stream, Repo: repo, Filter: t.filterForm(),
		Login:     "podman login -u " + shellWord(s.user) + " " + r.Host,
		CanDelete: c.can(r, s, "delete", "image.openshift.io", "imagestreamtags", ns),
		Events:    withQuery(r.URL.Path+"/events", "rv", list.Metadata.ResourceVersion),
		Tabs:      c.tabsOf(r, s, ns),
		Pager:     t.pager(base, len(list.Items), list.Metadata.RemainingItemCount),
		Columns: sortColumns(base, t.sort, t.desc, [2]string{"Tag", "name"}, [2]string{"Pushed", "pushed"}, [2]string{"Size", "size"},
			[2]string{"Last pulled", "lastPulled"}, [2]string{"Pulls", "pulls"})}
	for _, ist := range list.Items {
		row := tagRowOf(ist)
		row.Pull = pullCommands(repo, row.Tag, row.Digest)
		if row.Index {
			row.Platforms = c.platforms(r, s, row.Digest)
		}
		d.Tags = append(d.Tags, row)
	}
	if r.URL.Query().Get("fragment") == "tags" {
		return c.fragment(w, "stream", "tags", s, r, d)
	}
	c.render(w, r, http.StatusOK, "stream", s, ns+"/"+stream, d)
	return nil
}

// platforms are the images of index dgst, with their sizes.
func (c *Console) platforms(r *http.Request, s *session, dgst string) []platform {
	var idx imagev1.Image
	if err := c.api.getJSON(r, s.token, "/apis/image.openshift.io/v1/images/"+url.PathEscape(dgst), nil, &idx); err != nil {
		return nil
	}
	var out []platform
	for i, m := range idx.DockerImageManifests {
		if i == maxPlatforms {
			break
		}
		p := platform{Name: m.OS + "/" + m.Architecture, Digest: m.Digest, Size: m.ManifestSize}
		if m.Variant != "" {
			p.Name += "/" + m.Variant
		}
		if p.Name == "/" {
			p.Name = "unknown"
		}
		// The child's config and layers (its metadata's Size), or its
		// layers alone when its config could not be read.
		var child imagev1.Image
		if err := c.api.getJSON(r, s.token, "/apis/image.openshift.io/v1/images/"+url.PathEscape(m.Digest), nil, &child); err == nil {
			if md := child.DockerImageMetadata; md != nil {
				p.Size += md.Size
			} else {
				for _, l := range child.DockerImageLayers {
					p.Size += l.Size
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// shellWord quotes s for a shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// streamEvents follows the API's watch of the project's tags and tells
// the page (server-sent events) when one of the stream's changes: the page
// then fetches its table again.
func (c *Console) streamEvents(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, stream := r.PathValue("ns"), r.PathValue("stream")
	flusher, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("live updates need a flushing connection")
	}
	body, _, err := c.api.stream(r, s.token, imagePath(ns, "imagestreamtags"),
		url.Values{"watch": {"true"}, "resourceVersion": {r.URL.Query().Get("rv")}, "timeoutSeconds": {"1800"}}, "application/json")
	if err != nil {
		return err
	}
	defer body.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": following\n\n")
	flusher.Flush()
	lines := bufio.NewScanner(body)
	lines.Buffer(make([]byte, 64<<10), 4<<20)
	for lines.Scan() {
		var ev struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"object"`
		}
		if json.Unmarshal(lines.Bytes(), &ev) != nil {
			continue
		}
		name, _, _ := strings.Cut(ev.Object.Metadata.Name, ":")
		if ev.Type == "ERROR" {
			fmt.Fprint(w, "event: end\ndata: the watch ended\n\n")
			flusher.Flush()
			return nil
		}
		if name != stream {
			continue
		}
		fmt.Fprintf(w, "event: change\ndata: %s %s\n\n", ev.Type, ev.Object.Metadata.Name)
		flusher.Flush()
	}
	return nil
}

// historyEntry is one entry of a tag's history, newest first.
type historyEntry struct {
	imagev1.TagEvent
	Number  int
	Current bool
}

type tagData struct {
	Project, Stream, Tag string
	Entries              []historyEntry
	Since, Until         string
	CanRevert, CanDelete bool
	Total                int
	Events               string
	Tabs                 projectTabs
}

func (c *Console) tagPage(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, stream, tag := r.PathValue("ns"), r.PathValue("stream"), r.PathValue("tag")
	var is imagev1.ImageStream
	if err := c.api.getJSON(r, s.token, imagePath(ns, "imagestreams", stream), nil, &is); err != nil {
		return err
	}
	d := tagData{Project: ns, Stream: stream, Tag: tag, Since: r.URL.Query().Get("since"), Until: r.URL.Query().Get("until"),
		CanRevert: c.can(r, s, "update", "image.openshift.io", "imagestreamtags", ns),
		CanDelete: c.can(r, s, "delete", "image.openshift.io", "imagestreamtags", ns),
		Events: withQuery(consolePath("projects", ns, "streams", stream, "events"),
			"rv", is.ResourceVersion),
		Tabs: c.tabsOf(r, s, ns)}
	since, sinceErr := time.Parse("2006-01-02", d.Since)
	until, untilErr := time.Parse("2006-01-02", d.Until)
	found := false
	for _, t := range is.Status.Tags {
		if t.Tag != tag {
			continue
		}
		found = true
		d.Total = len(t.Items)
		for i, ev := range t.Items {
			at := ev.Created.Time
			if (sinceErr == nil && at.Before(since)) || (untilErr == nil && !at.Before(until.AddDate(0, 0, 1))) {
				continue
			}
			d.Entries = append(d.Entries, historyEntry{TagEvent: ev, Number: i, Current: i == 0})
		}
	}
	if !found {
		return &apiError{Code: http.StatusNotFound, Message: fmt.Sprintf("the stream %s/%s has no tag %q", ns, stream, tag)}
	}
	if r.URL.Query().Get("fragment") == "history" {
		return c.fragment(w, "tag", "history", s, r, d)
	}
	c.render(w, r, http.StatusOK, "tag", s, ns+"/"+stream+":"+tag, d)
	return nil
}

// revertTag points the tag back at an image of its history: the request
// berth rollback sends (the history gets an entry, Rollback).
func (c *Console) revertTag(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, stream, tag := r.PathValue("ns"), r.PathValue("stream"), r.PathValue("tag")
	dgst := r.PostForm.Get("digest")
	if !strings.HasPrefix(dgst, "sha256:") || strings.ContainsAny(dgst, "/@ ") {
		return &apiError{Code: http.StatusBadRequest, Message: "revert to which image? the form names none"}
	}
	name := stream + ":" + tag
	body := map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"tag":      map[string]any{"name": tag, "from": map[string]any{"kind": "ImageStreamImage", "name": stream + "@" + dgst}}}
	if err := c.api.sendJSON(r, s.token, http.MethodPut, imagePath(ns, "imagestreamtags", name), body, nil); err != nil {
		return err
	}
	redirect(w, r, s, consolePath("projects", ns, "streams", stream, "tags", tag),
		"Reverted "+name+" to "+dgst+".")
	return nil
}

func (c *Console) deleteTag(w http.ResponseWriter, r *http.Request, s *session) error {
	ns, stream, tag := r.PathValue("ns"), r.PathValue("stream"), r.PathValue("tag")
	name := stream + ":" + tag
	if _, _, _, err := c.api.do(r, s.token, call{method: http.MethodDelete,
		path: imagePath(ns, "imagestreamtags", name)}); err != nil {
		return err
	}
	redirect(w, r, s, consolePath("projects", ns, "streams", stream), "Deleted the tag "+name+".")
	return nil
}
