package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/internal/testtool"
)

// The web console, driven by Playwright in Debian's Chromium (headless)
// against a real berth serve: the specs in test/console/specs. The
// registry is seeded by real clients: podman builds and pushes one tag
// three times, crane makes a multi-arch index, oras attaches an SBOM to
// it, and 1,000 tags of distinct sizes are pushed for sorting and paging.
// What the specs cannot see from the browser is checked here after them:
// a revert made in the console is what podman pulls.

// consoleDir holds the Playwright project.
var consoleDir = filepath.Join("..", "console")

// consoleSeed is what the specs are told of the seeded registry.
type consoleSeed struct {
	URL, Host                   string
	AdminUser, AdminPassword    string
	ViewerUser, ViewerPassword  string
	Project                     string
	Pushes                      []string // team/app:v1, oldest first
	Index, Referrer             string   // team/multi:latest and its SBOM
	Platforms                   []string // the index's children
	ManyTags                    int
	LargestTags, SmallestTags   []string // of team/many, three each
	Crane, DockerConfig, CAFile string
	Screenshots                 string
}

func TestConsole(t *testing.T) {
	chromium := requireTool(t, "chromium")
	npx := requireTool(t, "npx")
	crane := requireTool(t, "crane")
	oras := requireTool(t, "oras")
	playwright := filepath.Join(consoleDir, "node_modules", ".bin", "playwright")
	if _, err := os.Stat(playwright); err != nil {
		testtool.Missing(t, "the console's npm packages (cd test/console && npm ci)")
	}
	users := map[string]string{"viewer": "viewer-Pa55", "carol": "carol-Pa55", "dave": "dave-Pa55"}
	s := startServer(t, "--htpasswd", htpasswdUsers(t, users))
	token := oauthToken(t, s, "admin", adminPassword)
	seed := consoleSeed{URL: s.URL, Host: s.Addr, AdminUser: "admin", AdminPassword: adminPassword,
		ViewerUser: "viewer", ViewerPassword: users["viewer"], Project: "team", Crane: crane, CAFile: s.CAFile()}
	s.newProject("team")
	for user, role := range map[string]string{"viewer": "registry-viewer", "dave": "registry-editor"} {
		if st, b := s.apiCall("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", map[string]any{
			"metadata": map[string]any{"name": role},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
			"subjects": []any{map[string]any{"kind": "User", "name": user}}}); st != 201 {
			t.Fatalf("bind %s: %d %s", user, st, b)
		}
	}

	// One tag pushed three times by podman, from images it built.
	_, pm, _ := podmanFor(t, s, token)
	build := t.TempDir()
	for i := range 3 {
		must(t, os.WriteFile(filepath.Join(build, "version.txt"), []byte(fmt.Sprintf("build %d\n", i)), 0o644))
		must(t, os.WriteFile(filepath.Join(build, "Containerfile"), []byte(
			"FROM scratch\nCOPY version.txt /version.txt\nLABEL org.opencontainers.image.title=app\nENV APP_BUILD="+fmt.Sprint(i)+
				"\nEXPOSE 8080/tcp\nUSER 1001\nENTRYPOINT [\"/app\"]\nCMD [\"--serve\"]\n"), 0o644))
		pm("build", "--isolation", "chroot", "-t", "localhost/app:v1", build)
		digestFile := filepath.Join(build, "digest")
		pm("push", "--cert-dir", s.CertDir(), "--digestfile", digestFile, "localhost/app:v1", s.Addr+"/team/app:v1")
		seed.Pushes = append(seed.Pushes, readDigestFile(t, digestFile))
	}

	// A multi-arch index by crane, and an SBOM oras attaches to it.
	dir := t.TempDir()
	env := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "SSL_CERT_FILE=" + s.CAFile()}
	seed.DockerConfig = filepath.Join(dir, "docker")
	runIn(t, dir, env, crane, "auth", "login", s.Addr, "-u", "admin", "-p", adminPassword)
	for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
		layer, _ := tarGz(t, "arch.txt", []byte(p+"\n"))
		must(t, os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644))
		ref := s.Addr + "/team/multi:" + strings.ReplaceAll(p, "/", "-")
		runIn(t, dir, env, crane, "append", "-f", "l.tgz", "-t", ref)
		out := runIn(t, dir, env, crane, "mutate", "--set-platform", p, ref)
		seed.Platforms = append(seed.Platforms, digestRE.FindString(out))
	}
	out := runIn(t, dir, env, crane, "index", "append", "-m", s.Addr+"/team/multi:linux-amd64", "-m", s.Addr+"/team/multi:linux-arm64-v8",
		"-t", s.Addr+"/team/multi:latest")
	seed.Index = digestRE.FindString(out)
	must(t, os.WriteFile(filepath.Join(dir, "sbom.spdx.json"), []byte(`{"spdxVersion":"SPDX-2.3","name":"multi"}`), 0o644))
	out = runIn(t, dir, env, oras, "attach", "--plain-http=false", "--ca-file", s.CAFile(), "-u", "admin", "-p", adminPassword,
		"--artifact-type", "application/spdx+json", s.Addr+"/team/multi@"+seed.Index, "sbom.spdx.json")
	seed.Referrer = digestRE.FindString(out[strings.Index(out, "Digest:"):])

	// What specs change, apart from what others count: a tag to delete
	// and a stream to push to while it is watched (project sandbox); a
	// push by dave, the one user the audit spec looks for.
	for _, ref := range []string{"sandbox/scratch:doomed", "sandbox/live:first"} {
		layer, _ := tarGz(t, "f.txt", []byte(ref+"\n"))
		must(t, os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644))
		runIn(t, dir, env, crane, "append", "-f", "l.tgz", "-t", s.Addr+"/"+ref)
	}
	daveEnv := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "dave"), "SSL_CERT_FILE=" + s.CAFile()}
	runIn(t, dir, daveEnv, crane, "auth", "login", s.Addr, "-u", "dave", "-p", users["dave"])
	runIn(t, dir, daveEnv, crane, "tag", s.Addr+"/team/app:v1", "by-dave")

	// 1,000 tags whose sizes do not follow their names.
	seed.ManyTags = 1000
	seed.LargestTags, seed.SmallestTags = pushManyTags(t, s, seed.ManyTags)

	// Screenshots of every page: into docs/console (what the README
	// shows) with BERTH_UPDATE_SCREENSHOTS=1, to commit when they change.
	seed.Screenshots = t.TempDir()
	if os.Getenv("BERTH_UPDATE_SCREENSHOTS") == "1" {
		seed.Screenshots, _ = filepath.Abs(filepath.Join("..", "..", "docs", "console"))
	}
	seedFile := filepath.Join(t.TempDir(), "seed.json")
	b, _ := json.Marshal(seed)
	must(t, os.WriteFile(seedFile, b, 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	results := t.TempDir()
	// BERTH_PLAYWRIGHT_ARGS narrows a run while working on the console
	// (e.g. "specs/auth.spec.ts").
	cmd := exec.CommandContext(ctx, npx, append([]string{"--no-install", "playwright", "test"}, strings.Fields(os.Getenv("BERTH_PLAYWRIGHT_ARGS"))...)...)
	cmd.Dir = consoleDir
	cmd.Env = append(os.Environ(), "BERTH_SEED="+seedFile, "BERTH_CHROMIUM="+chromium, "BERTH_PW_OUTPUT="+results,
		"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1", "CI=true")
	output, err := cmd.CombinedOutput()
	t.Logf("playwright:\n%s", output)
	if err != nil {
		t.Fatalf("the console's Playwright specs failed: %v", err)
	}

	if os.Getenv("BERTH_PLAYWRIGHT_ARGS") == "" {
		for _, page := range []string{"login", "projects", "project", "stream", "tag-history", "image", "members", "robots", "audit", "admin"} {
			if fi, err := os.Stat(filepath.Join(seed.Screenshots, page+".png")); err != nil || fi.Size() < 5000 {
				t.Errorf("no screenshot of the %s page: %v", page, err)
			}
		}
	}

	// The history spec reverted team/app:v1 to its first push: podman
	// pulls that image.
	pm("rmi", "-a", "-f")
	pm("pull", "--cert-dir", s.CertDir(), s.Addr+"/team/app:v1")
	got := strings.TrimSpace(pm("image", "inspect", "--format", "{{.Digest}}", s.Addr+"/team/app:v1"))
	if got != seed.Pushes[0] {
		t.Errorf("podman pulled team/app:v1 as %s after the console's revert, want the first push %s", got, seed.Pushes[0])
	}
}

// pushManyTags pushes n tags t0000… to team/many, each a distinct random
// image whose size is not in name order, and returns the three first and
// the three last tags by size, descending, as the server orders them
// (ties by name).
func pushManyTags(t *testing.T, s *server, n int) (largest, smallest []string) {
	t.Helper()
	auth := remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPassword})
	transport := remote.WithTransport(s.Client().Transport)
	sizes := make([]int64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := pushSized(s, i, n, sizes, auth, transport); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("push the many tags: %v", err)
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(sizes[b], sizes[a]) })
	for _, i := range order[:3] {
		largest = append(largest, fmt.Sprintf("t%04d", i))
	}
	for _, i := range order[n-3:] {
		smallest = append(smallest, fmt.Sprintf("t%04d", i))
	}
	return largest, smallest
}

// pushSized pushes tag i of n, a random image of a layer whose size is a
// permutation of i, and records the image's size: manifest, config and
// layer, what the console's Size column sums.
func pushSized(s *server, i, n int, sizes []int64, opts ...remote.Option) error {
	img, err := random.Image(int64((i*7919)%n+1)*64, 1)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(fmt.Sprintf("%s/team/many:t%04d", s.Addr, i))
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	size := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	sizes[i] = size
	return nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
