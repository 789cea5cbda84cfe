package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metrics"
	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/berth-registry/berth/internal/store"
)

// accessFixture is the whole HTTP surface over a real store, with one
// token per kind of caller.
type accessFixture struct {
	t      testing.TB
	url    string
	meta   *store.Store
	tokens map[string]string // caller → Authorization header value
	n      int
	// caller is the matrix's caller of the row being prepared.
	caller string
}

// callers, in the column order of the matrix.
var callers = []string{"anonymous", "other", "viewer", "editor", "builder", "pusher", "padmin", "cadmin", "robot", "expired", "revoked"}

func newAccessFixture(t *testing.T) *accessFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	storages := emptyDirStorages(t, dir, meta)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{AdminPassword: testAdminPassword}
	cfg.setDefaults()
	if err := bootstrap(ctx, meta, dir, cfg.AdminPassword, log); err != nil {
		t.Fatal(err)
	}
	h, _, err := newHandler(cfg, meta, storages, []byte("test key of logged user names"), log, nil, "", metrics.New(), nil, nil, nil, adminActions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f := &accessFixture{t: t, url: srv.URL, meta: meta, tokens: map[string]string{"anonymous": ""}}

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(meta.CreateProject(ctx, store.Project{Name: "proj", Creator: "padmin"}))
	must(meta.CreateProject(ctx, store.Project{Name: "elsewhere", Creator: "other"}))
	must(meta.CreateUser(ctx, store.User{Name: auth.ServiceAccountUser("proj", "robot")}))
	for user, role := range map[string]string{
		"viewer": "registry-viewer", "editor": "registry-editor",
		"builder": "system:image-builder", "pusher": "system:image-pusher",
	} {
		must(meta.AddBinding(ctx, "proj", role, "User", user))
	}
	issuer := &auth.Issuer{Tokens: meta}
	issue := func(user string, ttl time.Duration, at time.Time) (string, auth.TokenRecord) {
		issuer.Now = func() time.Time { return at }
		secret, rec, err := issuer.Issue(ctx, user, ttl, "test")
		must(err)
		return "Bearer " + secret, rec
	}
	now := time.Now()
	for caller, user := range map[string]string{
		"other": "other", "viewer": "viewer", "editor": "editor", "builder": "builder", "pusher": "pusher",
		"padmin": "padmin", "cadmin": "admin", "robot": auth.ServiceAccountUser("proj", "robot"),
	} {
		f.tokens[caller], _ = issue(user, time.Hour, now)
	}
	f.tokens["expired"], _ = issue("editor", time.Minute, now.Add(-time.Hour))
	var revoked auth.TokenRecord
	f.tokens["revoked"], revoked = issue("editor", time.Hour, now)
	must(meta.RevokeToken(ctx, revoked.ID))

	f.pushImage("proj/app", "v1", []byte("layer of proj/app"))
	f.pushImage("elsewhere/app", "v1", []byte("layer of elsewhere/app"))
	return f
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) code() string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) == nil && len(e.Errors) > 0 {
		return e.Errors[0].Code
	}
	return ""
}

func (f *accessFixture) do(caller, method, path string, body []byte, header ...string) reply {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if a := f.tokens[caller]; a != "" {
		req.Header.Set("Authorization", a)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (f *accessFixture) admin(method, path string, body []byte, want int, header ...string) reply {
	f.t.Helper()
	r := f.do("cadmin", method, path, body, header...)
	if r.status != want {
		f.t.Fatalf("admin %s %s = %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

func (f *accessFixture) pushBlob(repo string, content []byte) digest.Digest {
	f.t.Helper()
	d := digest.FromBytes(content)
	f.admin("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content, http.StatusCreated)
	return d
}

// pushImage pushes a one-layer image and tags it; it returns the
// manifest's digest.
func (f *accessFixture) pushImage(repo, tag string, layer []byte) digest.Digest {
	f.t.Helper()
	f.n++
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","n":%d}`, f.n))
	manifest := f.manifest(f.pushBlob(repo, config), len(config), f.pushBlob(repo, layer), len(layer))
	f.admin("PUT", "/v2/"+repo+"/manifests/"+tag, manifest, http.StatusCreated,
		"Content-Type", "application/vnd.oci.image.manifest.v1+json")
	return digest.FromBytes(manifest)
}

func (f *accessFixture) manifest(config digest.Digest, configSize int, layer digest.Digest, layerSize int) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		config, configSize, layer, layerSize))
}

// A request of the matrix: prepare (run as admin, fresh for each cell)
// returns the method, path, body and headers to send.
type matrixRow struct {
	name    string
	prepare func(f *accessFixture) (method, path string, body []byte, header []string)
	want    []int // in the order of callers
}

func fixed(method, path string) func(*accessFixture) (string, string, []byte, []string) {
	return func(*accessFixture) (string, string, []byte, []string) { return method, path, nil, nil }
}

// Statuses by caller: anonymous, other, viewer, editor, builder, pusher,
// padmin, cadmin, robot, expired, revoked.
var (
	pullOK  = []int{401, 404, 200, 200, 200, 200, 200, 200, 200, 401, 401}
	pushOld = []int{401, 403, 403, 0, 0, 0, 0, 0, 403, 401, 401} // 0: the success status of the row
	// An upload session of a project one cannot see is like any unknown one.
	sessionOps = []int{401, 404, 403, 0, 0, 0, 0, 0, 403, 401, 401}
	pushNew    = []int{401, 403, 403, 0, 0, 403, 0, 0, 403, 401, 401}
	deletes    = []int{401, 404, 403, 202, 403, 403, 202, 202, 403, 401, 401}
)

func withSuccess(want []int, ok int) []int {
	out := slices.Clone(want)
	for i, v := range out {
		if v == 0 {
			out[i] = ok
		}
	}
	return out
}

func TestRegistryAuthorizationMatrix(t *testing.T) {
	f := newAccessFixture(t)
	layer := []byte("layer of proj/app")
	layerDigest := digest.FromBytes(layer)
	manifestDigest := f.pushImage("proj/app", "v1", layer)
	// A session is the caller's own where the caller may start one (a
	// session continues only with the user who started it), else the
	// cluster administrator's.
	session := func(f *accessFixture) string {
		if own := f.do(f.caller, "POST", "/v2/proj/app/blobs/uploads/", nil); own.status == http.StatusAccepted {
			return own.header.Get("Location")
		}
		return f.admin("POST", "/v2/proj/app/blobs/uploads/", nil, http.StatusAccepted).header.Get("Location")
	}
	emptyIndex := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)

	rows := []matrixRow{
		{"GET /v2/", fixed("GET", "/v2/"), []int{401, 200, 200, 200, 200, 200, 200, 200, 200, 401, 401}},
		{"GET catalog", fixed("GET", "/v2/_catalog"), []int{401, 200, 200, 200, 200, 200, 200, 200, 200, 401, 401}},
		{"HEAD blob", fixed("HEAD", "/v2/proj/app/blobs/"+layerDigest.String()), pullOK},
		{"GET blob", fixed("GET", "/v2/proj/app/blobs/"+layerDigest.String()), pullOK},
		{"HEAD manifest", fixed("HEAD", "/v2/proj/app/manifests/v1"), pullOK},
		{"GET manifest by tag", fixed("GET", "/v2/proj/app/manifests/v1"), pullOK},
		{"GET manifest by digest", fixed("GET", "/v2/proj/app/manifests/"+manifestDigest.String()), pullOK},
		{"GET tags", fixed("GET", "/v2/proj/app/tags/list"), pullOK},
		// A hidden repository answers referrers as a missing one: an empty list.
		{"GET referrers", fixed("GET", "/v2/proj/app/referrers/"+manifestDigest.String()),
			[]int{401, 200, 200, 200, 200, 200, 200, 200, 200, 401, 401}},
		{"POST upload", fixed("POST", "/v2/proj/app/blobs/uploads/"), withSuccess(pushOld, 202)},
		{"POST upload, new repository", func(f *accessFixture) (string, string, []byte, []string) {
			f.n++
			return "POST", fmt.Sprintf("/v2/proj/new%d/blobs/uploads/", f.n), nil, nil
		}, withSuccess(pushNew, 202)},
		{"POST monolithic upload", func(*accessFixture) (string, string, []byte, []string) {
			return "POST", "/v2/proj/app/blobs/uploads/?digest=" + digest.FromString("mono").String(), []byte("mono"), nil
		}, withSuccess(pushOld, 201)},
		{"GET upload status", func(f *accessFixture) (string, string, []byte, []string) {
			return "GET", session(f), nil, nil
		}, withSuccess(sessionOps, 204)},
		{"PATCH upload", func(f *accessFixture) (string, string, []byte, []string) {
			return "PATCH", session(f), []byte("chunk"), []string{"Content-Type", "application/octet-stream"}
		}, withSuccess(sessionOps, 202)},
		{"PUT upload", func(f *accessFixture) (string, string, []byte, []string) {
			loc, sep := session(f), "?"
			if strings.Contains(loc, "?") {
				sep = "&"
			}
			return "PUT", loc + sep + "digest=" + digest.FromString("whole").String(), []byte("whole"),
				[]string{"Content-Type", "application/octet-stream"}
		}, withSuccess(sessionOps, 201)},
		{"DELETE upload", func(f *accessFixture) (string, string, []byte, []string) {
			return "DELETE", session(f), nil, nil
		}, withSuccess(sessionOps, 204)},
		{"PUT manifest", func(f *accessFixture) (string, string, []byte, []string) {
			f.n++
			return "PUT", fmt.Sprintf("/v2/proj/app/manifests/t%d", f.n), emptyIndex,
				[]string{"Content-Type", "application/vnd.oci.image.index.v1+json"}
		}, withSuccess(pushOld, 201)},
		{"PUT manifest, new repository", func(f *accessFixture) (string, string, []byte, []string) {
			f.n++
			return "PUT", fmt.Sprintf("/v2/proj/new%d/manifests/latest", f.n), emptyIndex,
				[]string{"Content-Type", "application/vnd.oci.image.index.v1+json"}
		}, withSuccess(pushNew, 201)},
		{"DELETE manifest", func(f *accessFixture) (string, string, []byte, []string) {
			f.n++
			d := f.pushImage("proj/app", fmt.Sprintf("d%d", f.n), []byte(fmt.Sprintf("layer %d", f.n)))
			return "DELETE", "/v2/proj/app/manifests/" + d.String(), nil, nil
		}, deletes},
		{"DELETE blob", func(f *accessFixture) (string, string, []byte, []string) {
			f.n++
			d := f.pushBlob("proj/app", []byte(fmt.Sprintf("blob %d", f.n)))
			return "DELETE", "/v2/proj/app/blobs/" + d.String(), nil, nil
		}, deletes},
	}
	for _, row := range rows {
		for i, caller := range callers {
			f.caller = caller
			method, path, body, header := row.prepare(f)
			got := f.do(caller, method, path, body, header...)
			if got.status != row.want[i] {
				t.Errorf("%s as %s: %d %s, want %d", row.name, caller, got.status, got.body, row.want[i])
			}
			if got.status == 401 && !strings.Contains(got.header.Get("WWW-Authenticate"), `Bearer realm="`+f.url+auth.TokenPath+`"`) {
				t.Errorf("%s as %s: 401 without the token realm challenge: %q", row.name, caller, got.header.Get("WWW-Authenticate"))
			}
			if got.status == 403 && got.code() != "DENIED" {
				t.Errorf("%s as %s: 403 with code %q, want DENIED", row.name, caller, got.code())
			}
		}
	}
}

// A project the caller may not see answers exactly as one that does not
// exist: same status, same body.
func TestHiddenProjectLooksMissing(t *testing.T) {
	f := newAccessFixture(t)
	manifest := f.pushImage("proj/app", "v1", []byte("hidden layer"))
	layer := digest.FromBytes([]byte("hidden layer"))
	for _, p := range []string{
		"/blobs/" + layer.String(), "/manifests/v1", "/manifests/" + manifest.String(),
		"/tags/list", "/referrers/" + manifest.String(),
	} {
		for _, method := range []string{"GET", "HEAD", "DELETE"} {
			if method == "DELETE" && (p == "/tags/list" || strings.HasPrefix(p, "/referrers/")) {
				continue
			}
			hidden := f.do("other", method, "/v2/proj/app"+p, nil)
			missing := f.do("other", method, "/v2/ghost/app"+p, nil)
			if hidden.status != missing.status || !bytes.Equal(hidden.body, missing.body) {
				t.Errorf("%s %s: hidden project %d %s, missing project %d %s",
					method, p, hidden.status, hidden.body, missing.status, missing.body)
			}
		}
	}
	// Upload sessions, too: someone else's session in a hidden project
	// answers like a session that never was.
	loc := f.admin("POST", "/v2/proj/app/blobs/uploads/", nil, http.StatusAccepted).header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	for _, method := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		hidden := f.do("other", method, "/v2/proj/app/blobs/uploads/"+id, nil)
		missing := f.do("other", method, "/v2/ghost/app/blobs/uploads/"+id, nil)
		if hidden.status != missing.status || !bytes.Equal(hidden.body, missing.body) || hidden.status != 404 {
			t.Errorf("%s upload: hidden project %d %s, missing project %d %s", method, hidden.status, hidden.body, missing.status, missing.body)
		}
	}
	if _, err := f.meta.Project(context.Background(), "ghost"); err == nil {
		t.Error("a request on an upload session created the project it named")
	}
	// And as the cluster admin sees the missing one (the real answer).
	for _, p := range []string{"/blobs/" + layer.String(), "/manifests/v1"} {
		hidden := f.do("other", "GET", "/v2/proj/app"+p, nil)
		real := f.do("cadmin", "GET", "/v2/ghost/app"+p, nil)
		if hidden.status != real.status || hidden.code() != real.code() {
			t.Errorf("GET %s: hidden %d %s, truly missing %d %s", p, hidden.status, hidden.code(), real.status, real.code())
		}
	}
}

func TestCatalogListsOnlyPullable(t *testing.T) {
	f := newAccessFixture(t)
	ctx := context.Background()
	f.pushImage("pub/app", "v1", []byte("public layer"))
	if err := f.meta.AddBinding(ctx, "pub", "system:image-puller", "Group", auth.GroupUnauthenticated); err != nil {
		t.Fatal(err)
	}
	if err := f.meta.AddBinding(ctx, "pub", "system:image-puller", "Group", auth.GroupAuthenticated); err != nil {
		t.Fatal(err)
	}
	f.tokens["anonymous token"] = "Bearer " + auth.AnonymousToken
	for caller, want := range map[string][]string{
		"cadmin":          {"elsewhere/app", "proj/app", "pub/app"},
		"viewer":          {"proj/app", "pub/app"},
		"other":           {"elsewhere/app", "pub/app"},
		"robot":           {"proj/app", "pub/app"},
		"anonymous token": {"pub/app"},
	} {
		var got struct{ Repositories []string }
		r := f.do(caller, "GET", "/v2/_catalog", nil)
		if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 {
			t.Fatalf("catalog as %s: %d %s", caller, r.status, r.body)
		}
		if !slices.Equal(got.Repositories, want) {
			t.Errorf("catalog as %s = %v, want %v", caller, got.Repositories, want)
		}
	}
	// Paging through a filtered catalog still ends and skips nothing.
	r := f.do("viewer", "GET", "/v2/_catalog?n=1", nil)
	if !strings.Contains(string(r.body), `"proj/app"`) || !strings.Contains(r.header.Get("Link"), "last=proj%2Fapp") {
		t.Errorf("first page as viewer: %s Link %q", r.body, r.header.Get("Link"))
	}
	// A public project is pulled without any credentials.
	if r := f.do("anonymous", "GET", "/v2/pub/app/manifests/v1", nil); r.status != 200 {
		t.Errorf("anonymous pull of a public project = %d %s", r.status, r.body)
	}
}

func TestMountNeedsPullOnTheSource(t *testing.T) {
	f := newAccessFixture(t)
	secret := f.pushBlob("elsewhere/app", []byte("secret layer"))
	open := f.pushBlob("proj/app", []byte("open layer"))
	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"from a repository the caller may not pull", "?mount=" + secret.String() + "&from=elsewhere/app", 202},
		{"from a pullable repository", "?mount=" + open.String() + "&from=proj/app", 201},
		{"without from, only pullable holders count", "?mount=" + secret.String(), 202},
		{"without from, a pullable holder", "?mount=" + open.String(), 201},
	} {
		r := f.do("editor", "POST", "/v2/proj/copy/blobs/uploads/"+tc.query, nil)
		if r.status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.want)
		}
	}
	if r := f.do("editor", "HEAD", "/v2/proj/copy/blobs/"+secret.String(), nil); r.status != 404 {
		t.Errorf("the refused mount linked the blob: HEAD = %d", r.status)
	}
}

func TestPushCreatesProjectForSelfProvisioners(t *testing.T) {
	f := newAccessFixture(t)
	ctx := context.Background()
	issuer := &auth.Issuer{Tokens: f.meta}
	newbie, _, err := issuer.Issue(ctx, "newbie", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.tokens["newbie"] = "Bearer " + newbie
	if r := f.do("newbie", "HEAD", "/v2/fresh/app/blobs/"+digest.FromString("x").String(), nil); r.status != 404 {
		t.Fatalf("HEAD before the push = %d, want 404", r.status)
	}
	if r := f.do("newbie", "POST", "/v2/fresh/app/blobs/uploads/", nil); r.status != 202 {
		t.Fatalf("first push to a new project = %d %s", r.status, r.body)
	}
	p, err := f.meta.Project(ctx, "fresh")
	if err != nil || p.Creator != "newbie" {
		t.Fatalf("project after the push = %+v, %v", p, err)
	}
	if ok, err := auth.NewRBAC(f.meta).Authorize(ctx, auth.User{Name: "newbie"}, "delete", auth.Images, "fresh"); err != nil || !ok {
		t.Errorf("the pusher is not admin of the project it created: %v %v", ok, err)
	}
	// Someone else's existing project is not taken over.
	if r := f.do("newbie", "POST", "/v2/elsewhere/app/blobs/uploads/", nil); r.status != 403 {
		t.Errorf("push to another user's project = %d, want 403", r.status)
	}
	// Service accounts do not provision projects.
	if r := f.do("robot", "POST", "/v2/robots/app/blobs/uploads/", nil); r.status != 403 {
		t.Errorf("service account push to a new project = %d, want 403", r.status)
	}
	if _, err := f.meta.Project(ctx, "robots"); err == nil {
		t.Error("a service account's push created a project")
	}
	// Reserved (system) names are nobody's to provision.
	for _, name := range []string{"openshift-mine", "kube-x", "default"} {
		if r := f.do("newbie", "POST", "/v2/"+name+"/app/blobs/uploads/", nil); r.status != 403 {
			t.Errorf("push to the reserved project %s = %d, want 403", name, r.status)
		}
		if _, err := f.meta.Project(ctx, name); err == nil {
			t.Errorf("a push created the reserved project %s", name)
		}
	}
}

// A cluster-wide pusher's first push to a project records the project.
func TestClusterAdminPushRecordsProject(t *testing.T) {
	f := newAccessFixture(t)
	f.pushImage("adminland/app", "v1", []byte("admin layer"))
	p, err := f.meta.Project(context.Background(), "adminland")
	if err != nil || p.Creator != "admin" {
		t.Fatalf("project after the admin's push = %+v, %v", p, err)
	}
	// A cluster administrator may create a system project by pushing.
	f.pushImage("openshift/shared", "v1", []byte("shared layer"))
	if _, err := f.meta.Project(context.Background(), "openshift"); err != nil {
		t.Fatalf("the admin's push to openshift/shared: %v", err)
	}
}

// Clients push layers in parallel: the first pushes to a new project all
// succeed, whichever creates it.
func TestConcurrentFirstPushesToANewProject(t *testing.T) {
	f := newAccessFixture(t)
	issuer := &auth.Issuer{Tokens: f.meta}
	secret, _, err := issuer.Issue(context.Background(), "racer", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.tokens["racer"] = "Bearer " + secret
	const n = 8
	statuses := make(chan int, n)
	for range n {
		go func() {
			req, _ := http.NewRequest("POST", f.url+"/v2/race/app/blobs/uploads/", nil)
			req.Header.Set("Authorization", f.tokens["racer"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	for range n {
		if st := <-statuses; st != http.StatusAccepted {
			t.Errorf("a concurrent first push = %d, want 202", st)
		}
	}
}

// Decisions are cached, but a revoked token or a removed binding takes
// effect on the next request.
func TestAccessChangesApplyAtOnce(t *testing.T) {
	f := newAccessFixture(t)
	ctx := context.Background()
	pull := func(caller string) int { return f.do(caller, "GET", "/v2/proj/app/manifests/v1", nil).status }
	for range 3 { // warm every cache
		if st := pull("viewer"); st != 200 {
			t.Fatalf("viewer pull = %d", st)
		}
	}
	if err := f.meta.RemoveBinding(ctx, "proj", "registry-viewer", "User", "viewer"); err != nil {
		t.Fatal(err)
	}
	if st := pull("viewer"); st != 404 {
		t.Fatalf("pull after the binding was removed = %d, want 404", st)
	}
	if st := pull("editor"); st != 200 {
		t.Fatalf("editor pull = %d", st)
	}
	tokens, err := f.meta.TokensOf(ctx, "editor")
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens { // the editor's live token, and the test's expired one
		if tok.Revoked.IsZero() {
			if err := f.meta.RevokeToken(ctx, tok.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := pull("editor"); st != 401 {
		t.Fatalf("pull with a revoked token = %d, want 401", st)
	}
}

// Only a cluster-wide grant that includes creating projects lets a push
// create one: an image builder bound cluster-wide pushes into existing
// projects only, and never becomes an admin by pushing.
func TestClusterWideBuilderDoesNotCreateProjects(t *testing.T) {
	f := newAccessFixture(t)
	ctx := context.Background()
	builder := auth.ServiceAccountUser("tools", "builder")
	if err := f.meta.CreateProject(ctx, store.Project{Name: "tools"}); err != nil {
		t.Fatal(err)
	}
	if err := f.meta.CreateUser(ctx, store.User{Name: builder}); err != nil {
		t.Fatal(err)
	}
	if err := f.meta.AddBinding(ctx, "", "system:image-builder", "User", builder); err != nil {
		t.Fatal(err)
	}
	secret, _, err := (&auth.Issuer{Tokens: f.meta}).Issue(ctx, builder, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.tokens["builder-sa"] = "Bearer " + secret
	if r := f.do("builder-sa", "POST", "/v2/proj/built/blobs/uploads/", nil); r.status != 202 {
		t.Fatalf("cluster-wide builder pushing to an existing project = %d %s", r.status, r.body)
	}
	r := f.do("builder-sa", "POST", "/v2/grabbed/img/blobs/uploads/", nil)
	if r.status != 403 || r.code() != "DENIED" {
		t.Fatalf("cluster-wide builder pushing to a new project = %d %s, want 403 DENIED", r.status, r.body)
	}
	if _, err := f.meta.Project(ctx, "grabbed"); err == nil {
		t.Fatal("the push created the project")
	}
}

// A user of the identity provider becomes a User at the first login, and
// the cluster admin lists them (service accounts are not Users).
func TestUsersAreRecordedAtLogin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	storages := emptyDirStorages(t, dir, meta)
	hash, err := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("carol:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{AdminPassword: testAdminPassword, Htpasswd: htpasswd}
	cfg.setDefaults()
	if err := bootstrap(ctx, meta, dir, cfg.AdminPassword, log); err != nil {
		t.Fatal(err)
	}
	if err := meta.CreateProject(ctx, store.Project{Name: "team"}); err != nil {
		t.Fatal(err)
	}
	if err := meta.CreateUser(ctx, store.User{Name: auth.ServiceAccountUser("team", "ci")}); err != nil {
		t.Fatal(err)
	}
	h, _, err := newHandler(cfg, meta, storages, []byte("test key of logged user names"), log, nil, "", metrics.New(), nil, nil, nil, adminActions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	list := func() []string {
		req, _ := http.NewRequest("GET", srv.URL+"/apis/user.openshift.io/v1/users", nil)
		req.SetBasicAuth("admin", testAdminPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l struct {
			Items []struct{ Metadata struct{ Name string } }
		}
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
			t.Fatalf("list users: %d %v", resp.StatusCode, err)
		}
		var names []string
		for _, it := range l.Items {
			names = append(names, it.Metadata.Name)
		}
		return names
	}
	if got := list(); !slices.Equal(got, []string{"admin"}) {
		t.Fatalf("users before carol logs in = %v", got)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v2/", nil)
	req.SetBasicAuth("carol", "carol-pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("carol's login = %d", resp.StatusCode)
	}
	if got := list(); !slices.Equal(got, []string{"admin", "carol"}) {
		t.Fatalf("users after carol logged in = %v", got)
	}
}

// 50 concurrent pushes of one tag: the ImageStream's history holds all 50,
// each generation once, newest first, and /v2 serves the newest.
func TestConcurrentPushesKeepOneHistory(t *testing.T) {
	f := newAccessFixture(t)
	const n = 50
	layer := []byte("shared layer")
	f.pushBlob("proj/stream", layer)
	config := f.pushBlob("proj/stream", []byte(`{"architecture":"amd64","os":"linux"}`))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Each push is a different manifest (an annotation tells them apart).
			m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
				`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":37},`+
				`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}],`+
				`"annotations":{"n":"%d"}}`, config, digest.FromBytes(layer), len(layer), i)
			r := f.do("cadmin", "PUT", "/v2/proj/stream/manifests/latest", []byte(m),
				"Content-Type", "application/vnd.oci.image.manifest.v1+json")
			if r.status != http.StatusCreated {
				errs <- fmt.Errorf("push %d: %d %s", i, r.status, r.body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r := f.do("cadmin", "GET", "/apis/image.openshift.io/v1/namespaces/proj/imagestreams/stream", nil)
	var is struct {
		Status struct {
			Tags []struct {
				Tag   string
				Items []struct {
					Image      string
					Generation int64
				}
			}
		}
	}
	if err := json.Unmarshal(r.body, &is); err != nil || r.status != 200 || len(is.Status.Tags) != 1 {
		t.Fatalf("image stream: %d %s", r.status, r.body)
	}
	// The history keeps the newest DefaultTagHistory entries: each push
	// made one, so their generations are n, n-1, … with none missing.
	items := is.Status.Tags[0].Items
	if want := min(n, store.DefaultTagHistory); len(items) != want {
		t.Fatalf("history has %d entries for %d pushes, want %d", len(items), n, want)
	}
	seen := map[string]bool{}
	for i, it := range items {
		if it.Generation != int64(n-i) {
			t.Fatalf("history entry %d has generation %d, want %d: an entry lost or out of order", i, it.Generation, n-i)
		}
		if seen[it.Image] {
			t.Fatalf("image %s twice in the history", it.Image)
		}
		seen[it.Image] = true
	}
	head := f.do("cadmin", "HEAD", "/v2/proj/stream/manifests/latest", nil)
	if got := head.header.Get("Docker-Content-Digest"); got != items[0].Image {
		t.Fatalf("/v2 latest = %s, history's newest = %s", got, items[0].Image)
	}
}

// A session continues only with the user who started it: another user
// with push access to the same repository, holding the exact Location,
// is told the session is unknown and changes nothing.
func TestUploadSessionBelongsToItsUser(t *testing.T) {
	f := newAccessFixture(t)
	start := f.do("editor", "POST", "/v2/proj/app/blobs/uploads/", nil)
	if start.status != http.StatusAccepted {
		t.Fatalf("start: %d %s", start.status, start.body)
	}
	loc := start.header.Get("Location")
	if r := f.do("editor", "PATCH", loc, []byte("01234")); r.status != http.StatusAccepted {
		t.Fatalf("chunk: %d %s", r.status, r.body)
	}
	for _, method := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		path := loc
		if method == "PUT" {
			path = registrytest.WithDigest(loc, digest.FromString("0123456789").String())
		}
		if r := f.do("pusher", method, path, []byte("56789")); r.status != 404 || r.code() != "BLOB_UPLOAD_UNKNOWN" {
			t.Errorf("%s of the editor's session as pusher: %d %s, want 404 BLOB_UPLOAD_UNKNOWN", method, r.status, r.body)
		}
	}
	if r := f.do("editor", "GET", loc, nil); r.status != http.StatusNoContent || r.header.Get("Range") != "0-4" {
		t.Errorf("the session after the other user's requests: %d Range %q, want 204 0-4", r.status, r.header.Get("Range"))
	}
}
