package bench

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is what one request of a workload does.
type Kind string

// The kinds of workload. A push and a pull move one image (one layer, its
// config and its manifest); a manifest request fetches a manifest by tag;
// a catalog request fetches one page of /v2/_catalog; a mixed request is a
// pull three times in four and a push otherwise.
const (
	KindPush     Kind = "push"
	KindPull     Kind = "pull"
	KindManifest Kind = "manifest"
	KindCatalog  Kind = "catalog"
	KindTags     Kind = "tags"
	KindMixed    Kind = "mixed"
)

// SizeClass names a layer size; Config maps each to bytes, so tests can
// run the same workloads on small blobs.
type SizeClass int

// The three layer sizes of zb: 1, 10 and 100 MiB by default.
const (
	NoBlob SizeClass = iota
	Small
	Medium
	Large
)

func (s SizeClass) suffix() string {
	switch s {
	case Small:
		return "1m"
	case Medium:
		return "10m"
	case Large:
		return "100m"
	}
	return ""
}

// Workload is one named benchmark.
type Workload struct {
	Name    string
	Kind    Kind
	Size    SizeClass
	Chunked bool // push the layer in ChunkSize PATCHes instead of one PUT
}

// Description says in words what one request of w does.
func (w Workload) Description() string {
	size := map[SizeClass]string{Small: "1 MiB", Medium: "10 MiB", Large: "100 MiB"}[w.Size]
	switch w.Kind {
	case KindPush:
		if w.Chunked {
			return "push a unique " + size + " layer in chunks (POST, PATCH per chunk, PUT), its config, and a tagged manifest"
		}
		return "push a unique " + size + " layer monolithically (POST, PUT), its config, and a tagged manifest"
	case KindPull:
		return "pull a " + size + " image: GET manifest by tag, GET config, GET layer"
	case KindManifest:
		return "GET a manifest by tag"
	case KindCatalog:
		return "GET one page of /v2/_catalog"
	case KindTags:
		return "GET one page of a repository's /tags/list"
	case KindMixed:
		return "75% pulls / 25% monolithic pushes of a " + size + " image"
	}
	return string(w.Kind)
}

// MovesData reports whether w's requests carry blob bytes, so that MB/s
// and CPU per MB mean something.
func (w Workload) MovesData() bool { return w.Size != NoBlob }

var allWorkloads = func() []Workload {
	var ws []Workload
	for _, chunked := range []bool{false, true} {
		for _, s := range []SizeClass{Small, Medium, Large} {
			mode := "mono"
			if chunked {
				mode = "chunk"
			}
			ws = append(ws, Workload{Name: "push-" + mode + "-" + s.suffix(), Kind: KindPush, Size: s, Chunked: chunked})
		}
	}
	for _, s := range []SizeClass{Small, Medium, Large} {
		ws = append(ws, Workload{Name: "pull-" + s.suffix(), Kind: KindPull, Size: s})
	}
	ws = append(ws,
		Workload{Name: "manifest-get", Kind: KindManifest},
		Workload{Name: "catalog", Kind: KindCatalog},
		Workload{Name: "tags", Kind: KindTags},
	)
	for _, s := range []SizeClass{Small, Medium, Large} {
		ws = append(ws, Workload{Name: "mixed-" + s.suffix(), Kind: KindMixed, Size: s})
	}
	return ws
}()

// Workloads returns every workload, in the order a full run uses.
func Workloads() []Workload { return slices.Clone(allWorkloads) }

// WorkloadNames returns the names of every workload.
func WorkloadNames() []string {
	names := make([]string, len(allWorkloads))
	for i, w := range allWorkloads {
		names[i] = w.Name
	}
	return names
}

// SelectWorkloads resolves names (empty or "all" for every workload) to
// workloads in their canonical order. A name may also be a kind ("push",
// "pull", "mixed") standing for every workload of that kind.
func SelectWorkloads(names []string) ([]Workload, error) {
	want := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(strings.ToLower(n))
		if n == "" {
			continue
		}
		if n == "all" {
			return Workloads(), nil
		}
		matched := false
		for _, w := range allWorkloads {
			if w.Name == n || string(w.Kind) == n {
				want[w.Name] = true
				matched = true
			}
		}
		if !matched {
			return nil, fmt.Errorf("unknown workload %q; known: %s", n, strings.Join(WorkloadNames(), ", "))
		}
	}
	if len(want) == 0 {
		return Workloads(), nil
	}
	var ws []Workload
	for _, w := range allWorkloads {
		if want[w.Name] {
			ws = append(ws, w)
		}
	}
	return ws, nil
}
