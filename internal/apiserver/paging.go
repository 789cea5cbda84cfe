package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Lists people page through (image stream tags, image streams, projects,
// the audit log) take, besides Kubernetes' limit and continue, three
// parameters of Berth's: sortBy (a key of the kind's), order (asc or
// desc) and search (a substring of the name, ignoring case). The server
// sorts and filters the whole list and pages the result, and each page
// carries the number of items after it in metadata.remainingItemCount,
// so a client knows the total without reading every page.
//
// A continue token is an offset into that order as each request finds
// it: an item added between two pages before the offset shifts the rest
// by one. It is bound to the sort and search it was given for. A client
// that jumps to a page (the console's pager) gives the offset itself
// instead: offset=N skips the first N items.

// pageQuery is what a request for a sorted page asks.
type pageQuery struct {
	limit  int // 0: all
	offset int
	sortBy string
	desc   bool
	search string
}

// pageToken is a continue token's content.
type pageToken struct {
	Offset int    `json:"o"`
	SortBy string `json:"s,omitempty"`
	Desc   bool   `json:"d,omitempty"`
	Search string `json:"q,omitempty"`
}

// maxSearch bounds a search string.
const maxSearch = 256

// parsePageQuery reads limit, continue, sortBy, order and search; sortBy
// must be one of keys (the first is the default).
func parsePageQuery(r *http.Request, keys []string) (pageQuery, error) {
	v := r.URL.Query()
	p := pageQuery{sortBy: keys[0], search: v.Get("search")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, badRequest("limit %q is not a count", s)
		}
		p.limit = n
	}
	if s := v.Get("sortBy"); s != "" {
		if !slices.Contains(keys, s) {
			return p, badRequest("sortBy %q: this list sorts by %s", s, strings.Join(keys, ", "))
		}
		p.sortBy = s
	}
	switch o := v.Get("order"); o {
	case "", "asc":
	case "desc":
		p.desc = true
	default:
		return p, badRequest("order %q: asc or desc", o)
	}
	if len(p.search) > maxSearch {
		return p, badRequest("search is longer than %d bytes", maxSearch)
	}
	if o := v.Get("offset"); o != "" {
		n, err := strconv.Atoi(o)
		if err != nil || n < 0 {
			return p, badRequest("offset %q is not a count", o)
		}
		if v.Get("continue") != "" {
			return p, badRequest("offset and continue cannot go together")
		}
		p.offset = n
	}
	if c := v.Get("continue"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		var t pageToken
		if err == nil {
			err = json.Unmarshal(b, &t)
		}
		if err != nil || t.Offset < 0 {
			return p, badRequest("continue token %q is not one this server gave", c)
		}
		if t.SortBy != p.sortBy || t.Desc != p.desc || t.Search != p.search {
			return p, badRequest("the continue token was given for another sortBy, order or search: ask for the first page again")
		}
		p.offset = t.Offset
	}
	return p, nil
}

// pageMeta is what a page says of the rest: the continue token of the
// next page and the number of items after this one, when there are any.
func (p pageQuery) pageMeta(got, total int) (string, *int64) {
	after := total - p.offset - got
	if got == 0 || after <= 0 {
		return "", nil
	}
	b, _ := json.Marshal(pageToken{Offset: p.offset + got, SortBy: p.sortBy, Desc: p.desc, Search: p.search})
	remaining := int64(after)
	return base64.RawURLEncoding.EncodeToString(b), &remaining
}

// window is the part of n sorted items the page covers.
func (p pageQuery) window(n int) (from, to int) {
	from = min(p.offset, n)
	to = n
	if p.limit > 0 {
		to = min(from+p.limit, n)
	}
	return from, to
}

// matchesSearch says whether name contains the page's search, ignoring
// case.
func (p pageQuery) matchesSearch(name string) bool {
	return p.search == "" || strings.Contains(strings.ToLower(name), strings.ToLower(p.search))
}

// sortItems orders items (in name order) by compare, reversed when desc;
// ties stay in name order whichever the direction.
func sortItems[T any](items []T, desc bool, compare func(a, b T) int) {
	slices.SortStableFunc(items, func(a, b T) int {
		if desc {
			return compare(b, a)
		}
		return compare(a, b)
	})
}
