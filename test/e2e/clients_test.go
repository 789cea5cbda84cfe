package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The client tests push as an ordinary user from an htpasswd file: the
// first push to a project creates it, with the user as its admin.
const (
	devUser     = "dev"
	devPassword = "dev-Pa55word"
)

// startDevServer starts berth with the dev user.
func startDevServer(t *testing.T, flags ...string) *server {
	t.Helper()
	return startServer(t, append(flags, "--htpasswd", htpasswdUsers(t, map[string]string{devUser: devPassword}))...)
}

// registryToken gets a token for the dev user from the registry's token
// endpoint, as `berth whoami -t` would print one.
func registryToken(t testing.TB, s *server) string {
	t.Helper()
	st, _, body := getURL(t, s.ClientAs(devUser, devPassword), s.URL+"/openshift/token", "")
	var ans struct{ Token string }
	if err := json.Unmarshal(body, &ans); err != nil || st != http.StatusOK || !strings.HasPrefix(ans.Token, "sha256~") {
		t.Fatalf("token for %s = %d %s", devUser, st, body)
	}
	return ans.Token
}

// toolTimeout bounds every command a client test runs.
const toolTimeout = 2 * time.Minute

// runIn runs a tool in dir with a deadline and returns its stdout, failing
// the test (with stdout and stderr) on error.
func runIn(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := tryIn(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(stdout, 4000), tail(stderr, 4000))
	}
	return stdout
}

// tryIn is runIn returning the error and both outputs instead of failing.
func tryIn(dir string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return o.String(), e.String(), err
}

// manifestAccept is every manifest type the client tests may meet.
const manifestAccept = mtOCIManifest + ", " + mtOCIIndex +
	", application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// registryImage is an image as read back from the registry over HTTP.
type registryImage struct {
	Digest    string
	MediaType string
	Raw       []byte
	Manifest  ociManifest
}

// verifyRegistryImage reads repo:ref from the registry over HTTP and checks
// it end to end: the manifest hashes to its Docker-Content-Digest, the
// config and every layer are retrievable and match their digests, and the
// layers hold wantFile with wantContent.
func verifyRegistryImage(t testing.TB, s *server, repo, ref, wantFile string, wantContent []byte) registryImage {
	t.Helper()
	c := s.Client()
	st, h, body := getURL(t, c, s.URL+"/v2/"+repo+"/manifests/"+ref, manifestAccept)
	if st != http.StatusOK {
		t.Fatalf("GET manifest %s:%s = %d %s", repo, ref, st, body)
	}
	img := registryImage{Digest: h.Get("Docker-Content-Digest"), MediaType: h.Get("Content-Type"), Raw: body}
	if got := sha256Digest(body); img.Digest != got {
		t.Fatalf("GET manifest %s:%s: Docker-Content-Digest %q, body hashes to %s", repo, ref, img.Digest, got)
	}
	if err := json.Unmarshal(body, &img.Manifest); err != nil {
		t.Fatalf("manifest %s:%s: %v\n%s", repo, ref, err, body)
	}
	if img.Manifest.MediaType != "" && img.Manifest.MediaType != img.MediaType {
		t.Errorf("manifest %s:%s: Content-Type %q but mediaType %q", repo, ref, img.MediaType, img.Manifest.MediaType)
	}
	if img.Manifest.Config.Digest == "" || len(img.Manifest.Layers) == 0 {
		t.Fatalf("manifest %s:%s is not a single image with layers:\n%s", repo, ref, body)
	}
	cfg := getBlob(t, s, repo, img.Manifest.Config.Digest)
	var config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &config); err != nil {
		t.Fatalf("config of %s:%s: %v", repo, ref, err)
	}
	if len(config.RootFS.DiffIDs) != len(img.Manifest.Layers) {
		t.Errorf("config of %s:%s: %d diff_ids for %d layers", repo, ref, len(config.RootFS.DiffIDs), len(img.Manifest.Layers))
	}
	var found bool
	for _, l := range img.Manifest.Layers {
		blob := getBlob(t, s, repo, l.Digest)
		if int64(len(blob)) != l.Size {
			t.Errorf("layer %s: %d bytes, the manifest says %d", l.Digest, len(blob), l.Size)
		}
		if content, ok := fileInLayer(t, blob, l.MediaType, wantFile); ok {
			found = true
			if !bytes.Equal(content, wantContent) {
				t.Errorf("%s in %s:%s = %q, want %q", wantFile, repo, ref, content, wantContent)
			}
		}
	}
	if !found {
		t.Errorf("no layer of %s:%s holds %s", repo, ref, wantFile)
	}
	return img
}

// getBlob GETs a blob and checks it hashes to its digest.
func getBlob(t testing.TB, s *server, repo, dgst string) []byte {
	t.Helper()
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/"+repo+"/blobs/"+dgst, "")
	if st != http.StatusOK {
		t.Fatalf("GET blob %s@%s = %d %s", repo, dgst, st, body)
	}
	if got := sha256Digest(body); got != dgst {
		t.Fatalf("GET blob %s@%s: body hashes to %s", repo, dgst, got)
	}
	return body
}

// fileInLayer returns the content of name in a (possibly gzipped) tar.
func fileInLayer(t testing.TB, blob []byte, mediaType, name string) ([]byte, bool) {
	t.Helper()
	var r io.Reader = bytes.NewReader(blob)
	if strings.HasSuffix(mediaType, "gzip") || bytes.HasPrefix(blob, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("layer (%s): %v", mediaType, err)
		}
		r = zr
	}
	tr := tar.NewReader(r)
	want := path.Clean("/" + name)
	for range 10000 {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, false
		}
		if err != nil {
			t.Fatalf("layer (%s): %v", mediaType, err)
		}
		if path.Clean("/"+hdr.Name) == want && hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b, true
		}
	}
	t.Fatalf("layer has more than 10000 entries")
	return nil, false
}

// tagList returns the tags of repo (none when the repository is unknown).
func tagList(t testing.TB, s *server, repo string) []string {
	t.Helper()
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/"+repo+"/tags/list", "")
	if st == http.StatusNotFound {
		return nil
	}
	if st != http.StatusOK {
		t.Fatalf("GET tags of %s = %d %s", repo, st, body)
	}
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &tl); err != nil {
		t.Fatalf("tags of %s: %v\n%s", repo, err, body)
	}
	return tl.Tags
}

// headDigest returns the Docker-Content-Digest of HEAD repo:ref, or "" on 404.
func headDigest(t testing.TB, s *server, repo, ref string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, s.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Header.Get("Docker-Content-Digest")
	case http.StatusNotFound:
		return ""
	}
	t.Fatalf("HEAD manifest %s:%s = %d", repo, ref, resp.StatusCode)
	return ""
}

// containersEnv isolates skopeo, podman and buildah from the host's
// configuration and storage: an empty registries.conf, a permissive
// signature policy, and storage (vfs) under a temp dir.
type containersEnv struct {
	Env     []string
	Policy  string
	Root    string
	RunRoot string
	TmpDir  string
}

func newContainersEnv(t testing.TB) *containersEnv {
	t.Helper()
	dir := t.TempDir()
	ce := &containersEnv{
		Policy:  filepath.Join(dir, "policy.json"),
		Root:    filepath.Join(dir, "root"),
		RunRoot: filepath.Join(dir, "runroot"),
		TmpDir:  filepath.Join(dir, "tmp"),
	}
	files := map[string]string{
		"registries.conf": "",
		"policy.json":     `{"default":[{"type":"insecureAcceptAnything"}]}`,
		"storage.conf":    "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + ce.Root + "\"\nrunroot = \"" + ce.RunRoot + "\"\n",
		"containers.conf": "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
		"auth.json":       `{"auths":{}}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{ce.Root, ce.RunRoot, ce.TmpDir, filepath.Join(dir, "xdg"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ce.Env = []string{
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "home", ".config"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(dir, "auth.json"),
	}
	return ce
}

// loadIntoPodman pulls img's layout into ce's storage through pm and
// returns the image ID podman printed, and its output. podman names an
// image loaded from a layout after the layout's path, which must be
// lowercase (t.TempDir() holds the test's name): the layout is copied to
// a lowercase temporary path first.
func loadIntoPodman(t testing.TB, ce *containersEnv, pm func(...string) string, img *testImage) (id, out string) {
	t.Helper()
	lower, err := os.MkdirTemp("", "berth-e2e-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(lower) })
	layout := filepath.Join(lower, "layout")
	if err := os.CopyFS(layout, os.DirFS(img.Layout)); err != nil {
		t.Fatal(err)
	}
	out = pm("pull", "--signature-policy", ce.Policy, "oci:"+layout+":"+img.Tag)
	return strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), out
}

// storageFlags are the global flags that keep podman and buildah on the
// temp vfs storage.
func (ce *containersEnv) storageFlags() []string {
	return []string{"--root", ce.Root, "--runroot", ce.RunRoot, "--storage-driver=vfs"}
}

var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// readDigestFile reads a --digestfile a tool wrote.
func readDigestFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	d := strings.TrimSpace(string(b))
	if !digestRE.MatchString(d) || len(d) != len("sha256:")+64 {
		t.Fatalf("digest file %s holds %q", p, b)
	}
	return d
}

// layoutManifestDigest is the manifest digest a one-image OCI layout
// index.json names.
func layoutManifestDigest(t testing.TB, layout string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ociIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("layout %s names %d manifests, want 1:\n%s", layout, len(idx.Manifests), b)
	}
	return idx.Manifests[0].Digest
}

func TestSkopeo(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	for _, mode := range []string{"tls", "http"} {
		t.Run(mode, func(t *testing.T) {
			var s *server
			if mode == "tls" {
				s = startDevServer(t)
			} else {
				s = startDevServer(t, "--insecure-http")
			}
			ce := newContainersEnv(t)
			content := []byte("hello from skopeo over " + mode + "\n")
			img := newTestImage(t, "v1", "hello.txt", content)
			var srcFlags, dstFlags, flags []string
			if s.TLS {
				certs := s.CertDir()
				srcFlags, dstFlags, flags = []string{"--src-cert-dir", certs}, []string{"--dest-cert-dir", certs}, []string{"--cert-dir", certs}
			} else {
				srcFlags, dstFlags, flags = []string{"--src-tls-verify=false"}, []string{"--dest-tls-verify=false"}, []string{"--tls-verify=false"}
			}
			ref := "docker://" + s.Addr + "/e2e/skopeo:v1"
			skopeoRun := func(args ...string) string {
				t.Helper()
				return runIn(t, "", ce.Env, skopeo, append([]string{"--policy", ce.Policy}, args...)...)
			}

			// Without credentials the push is refused.
			if _, stderr, err := tryIn("", ce.Env, skopeo, append(append([]string{"--policy", ce.Policy, "copy"}, dstFlags...), img.OCIRef(), ref)...); err == nil ||
				!strings.Contains(stderr, "authentication required") {
				t.Errorf("skopeo copy without credentials: err %v, stderr %s; want authentication required", err, tail(stderr, 1000))
			}
			creds := devUser + ":" + devPassword
			dstFlags = append(dstFlags, "--dest-creds", creds)
			srcFlags = append(srcFlags, "--src-creds", creds)
			flags = append(flags, "--creds", creds)

			// Push: the OCI manifest goes up unchanged.
			skopeoRun(append(append([]string{"copy", "--preserve-digests"}, dstFlags...), img.OCIRef(), ref)...)
			got := verifyRegistryImage(t, s, "e2e/skopeo", "v1", "hello.txt", content)
			if got.Digest != img.ManifestDigest || !bytes.Equal(got.Raw, img.Manifest) {
				t.Errorf("registry holds manifest %s, skopeo pushed %s", got.Digest, img.ManifestDigest)
			}
			if got.MediaType != mtOCIManifest {
				t.Errorf("manifest Content-Type = %q, want %q", got.MediaType, mtOCIManifest)
			}

			// Inspect shows the digest, the tag and the layer.
			var insp struct {
				Digest   string
				RepoTags []string
				Layers   []string
			}
			out := skopeoRun(append(append([]string{"inspect"}, flags...), ref)...)
			if err := json.Unmarshal([]byte(out), &insp); err != nil {
				t.Fatalf("skopeo inspect: %v\n%s", err, out)
			}
			if insp.Digest != img.ManifestDigest || !slices.Contains(insp.RepoTags, "v1") || !slices.Equal(insp.Layers, []string{img.LayerDigest}) {
				t.Errorf("skopeo inspect = digest %s tags %v layers %v; want %s [v1] [%s]", insp.Digest, insp.RepoTags, insp.Layers, img.ManifestDigest, img.LayerDigest)
			}
			raw := skopeoRun(append(append([]string{"inspect", "--raw"}, flags...), ref)...)
			if raw != string(img.Manifest) {
				t.Errorf("skopeo inspect --raw = %s\nwant %s", raw, img.Manifest)
			}

			// Pull back into a new layout: same manifest, same layer bytes.
			back := filepath.Join(t.TempDir(), "back")
			skopeoRun(append(append([]string{"copy", "--preserve-digests"}, srcFlags...), ref, "oci:"+back+":v1")...)
			if d := layoutManifestDigest(t, back); d != img.ManifestDigest {
				t.Errorf("pulled layout names manifest %s, want %s", d, img.ManifestDigest)
			}
			layer, err := os.ReadFile(filepath.Join(back, "blobs", "sha256", strings.TrimPrefix(img.LayerDigest, "sha256:")))
			if err != nil || !bytes.Equal(layer, img.Layer) {
				t.Errorf("pulled layer differs from the pushed one (err %v)", err)
			}

			if s.TLS {
				// Without the CA the same inspect must fail verification:
				// the server really speaks TLS with its own CA.
				_, stderr, err := tryIn("", ce.Env, skopeo, "--policy", ce.Policy, "inspect", ref)
				if err == nil || !strings.Contains(stderr, "certificate") {
					t.Errorf("skopeo inspect without the CA: err %v, stderr %s; want a certificate error", err, stderr)
				}
			}
		})
	}
}

func TestPodman(t *testing.T) {
	podman := requireTool(t, "podman")
	ce := newContainersEnv(t)
	tlsSrv := startDevServer(t)
	httpSrv := startDevServer(t, "--insecure-http")
	certs := tlsSrv.CertDir()
	content := []byte("hello from podman\n")
	img := newTestImage(t, "v1", "hello.txt", content)

	pm := func(args ...string) string {
		t.Helper()
		global := append(ce.storageFlags(), "--tmpdir", ce.TmpDir, "--cgroup-manager=cgroupfs", "--events-backend=file")
		return runIn(t, "", ce.Env, podman, append(global, args...)...)
	}
	pmTry := func(args ...string) (string, error) {
		global := append(ce.storageFlags(), "--tmpdir", ce.TmpDir, "--cgroup-manager=cgroupfs", "--events-backend=file")
		o, e, err := tryIn("", ce.Env, podman, append(global, args...)...)
		return o + e, err
	}

	// Load the layout into local storage; the image ID is the config digest.
	id, out := loadIntoPodman(t, ce, pm, img)
	if "sha256:"+id != img.ConfigDigest {
		t.Fatalf("podman pull oci: printed image ID %q, want %s\n%s", id, img.ConfigDigest, out)
	}
	httpRef := httpSrv.Addr + "/e2e/podman:v1"
	tlsRef := tlsSrv.Addr + "/e2e/podman:v1"
	pm("tag", id, httpRef, tlsRef)

	// Not logged in: refused. Then log in to one server with a password and
	// to the other with a token, the user name ignored (the reference's
	// `podman login -u kubeadmin -p $(oc whoami -t)`).
	if out, err := pmTry("push", "--signature-policy", ce.Policy, "--tls-verify=false", httpRef); err == nil ||
		!strings.Contains(out, "authentication required") {
		t.Errorf("podman push before login: err %v; want authentication required\n%s", err, tail(out, 1000))
	}
	if out, err := pmTry("login", "--tls-verify=false", "-u", devUser, "-p", "not-the-password", httpSrv.Addr); err == nil {
		t.Errorf("podman login with a wrong password succeeded:\n%s", out)
	}
	pm("login", "--tls-verify=false", "-u", devUser, "-p", devPassword, httpSrv.Addr)
	pm("login", "--cert-dir", certs, "-u", "kubeadmin", "-p", registryToken(t, tlsSrv), tlsSrv.Addr)

	digestFile := filepath.Join(t.TempDir(), "digest")
	pm("push", "--signature-policy", ce.Policy, "--tls-verify=false", "--digestfile", digestFile, httpRef)
	httpDigest := readDigestFile(t, digestFile)
	// A TLS push without the CA must fail; with --cert-dir it must succeed.
	if out, err := pmTry("push", "--signature-policy", ce.Policy, tlsRef); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("podman push without the CA: err %v; want a certificate error\n%s", err, out)
	}
	pm("push", "--signature-policy", ce.Policy, "--cert-dir", certs, "--digestfile", digestFile, tlsRef)
	tlsDigest := readDigestFile(t, digestFile)

	for _, c := range []struct {
		s      *server
		digest string
	}{{httpSrv, httpDigest}, {tlsSrv, tlsDigest}} {
		got := verifyRegistryImage(t, c.s, "e2e/podman", "v1", "hello.txt", content)
		if got.Digest != c.digest {
			t.Errorf("%s: registry manifest %s, podman pushed %s", c.s.URL, got.Digest, c.digest)
		}
		if got.Manifest.Config.Digest != img.ConfigDigest {
			t.Errorf("%s: pushed config %s, want %s", c.s.URL, got.Manifest.Config.Digest, img.ConfigDigest)
		}
	}

	// Remove every local image, then pull both back.
	pm("rmi", "--all", "--force")
	if out := strings.TrimSpace(pm("images", "--quiet")); out != "" {
		t.Fatalf("images left after rmi --all: %s", out)
	}
	pm("pull", "--signature-policy", ce.Policy, "--tls-verify=false", httpRef)
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, tlsRef)
	for _, c := range []struct{ ref, digest string }{{httpRef, httpDigest}, {tlsRef, tlsDigest}} {
		out := pm("image", "inspect", "--format", "{{.Id}} {{.Digest}}", c.ref)
		f := strings.Fields(out)
		if len(f) != 2 || "sha256:"+f[0] != img.ConfigDigest || f[1] != c.digest {
			t.Errorf("podman image inspect %s = %q; want ID %s digest %s", c.ref, out, img.ConfigDigest, c.digest)
		}
	}
}

func TestBuildah(t *testing.T) {
	buildah := requireTool(t, "buildah")
	ce := newContainersEnv(t)
	s := startDevServer(t)
	certs := s.CertDir()
	content := []byte("hello from buildah\n")
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "hello.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Containerfile"), []byte("FROM scratch\nCOPY hello.txt /hello.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bh := func(args ...string) string {
		t.Helper()
		return runIn(t, ctxDir, ce.Env, buildah, append(ce.storageFlags(), args...)...)
	}
	iidFile := filepath.Join(t.TempDir(), "iid")
	bh("build", "--isolation=chroot", "--signature-policy", ce.Policy, "--iidfile", iidFile, "-f", "Containerfile", "-t", "e2e-buildah:v1", ".")
	iid := readDigestFile(t, iidFile)

	digestFile := filepath.Join(t.TempDir(), "digest")
	ref := s.Addr + "/e2e/buildah:v1"
	bh("push", "--signature-policy", ce.Policy, "--cert-dir", certs, "--creds", devUser+":"+devPassword,
		"--digestfile", digestFile, "e2e-buildah:v1", "docker://"+ref)
	pushed := readDigestFile(t, digestFile)

	if tags := tagList(t, s, "e2e/buildah"); !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("tags of e2e/buildah = %v, want [v1]", tags)
	}
	got := verifyRegistryImage(t, s, "e2e/buildah", "v1", "hello.txt", content)
	if got.Digest != pushed {
		t.Errorf("registry manifest %s, buildah pushed %s", got.Digest, pushed)
	}
	if got.Manifest.Config.Digest != iid {
		t.Errorf("pushed config %s, buildah built %s", got.Manifest.Config.Digest, iid)
	}
	if len(got.Manifest.Layers) != 1 {
		t.Errorf("a COPY-only image from scratch has %d layers, want 1", len(got.Manifest.Layers))
	}
	if d := headDigest(t, s, "e2e/buildah", pushed); d != pushed {
		t.Errorf("HEAD by digest = %q, want %s", d, pushed)
	}
}

func TestCrane(t *testing.T) {
	crane := requireTool(t, "crane")
	s := startDevServer(t, "--insecure-http")
	dir := t.TempDir()
	craneEnv := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker")}
	cr := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(runIn(t, dir, craneEnv, crane, append(args, "--insecure")...))
	}
	if _, stderr, err := tryIn(dir, craneEnv, crane, "append", "-f", "/dev/null", "-t", s.Addr+"/e2e/crane:anon", "--insecure"); err == nil ||
		!strings.Contains(stderr, "UNAUTHORIZED") {
		t.Errorf("crane push before login: err %v, stderr %s; want UNAUTHORIZED", err, tail(stderr, 1000))
	}
	// Anonymously the catalog is what is public: nothing yet.
	if out := runIn(t, dir, craneEnv, crane, "catalog", s.Addr, "--insecure"); strings.TrimSpace(out) != "" {
		t.Errorf("anonymous crane catalog = %q, want empty", out)
	}
	cr("auth", "login", s.Addr, "-u", devUser, "-p", devPassword)
	content := []byte("hello from crane\n")
	img := newTestImage(t, "v1", "hello.txt", content)
	if err := os.WriteFile(filepath.Join(dir, "layer.tar.gz"), img.Layer, 0o644); err != nil {
		t.Fatal(err)
	}
	base := s.Addr + "/e2e/crane"

	// append from scratch: an image with our one layer.
	out := cr("append", "-f", "layer.tar.gz", "-t", base+":v1")
	v1 := digestRE.FindString(out)
	if v1 == "" {
		t.Fatalf("crane append printed no digest: %q", out)
	}
	if d := cr("digest", base+":v1"); d != v1 {
		t.Errorf("crane digest = %q, append printed %s", d, v1)
	}
	got := verifyRegistryImage(t, s, "e2e/crane", "v1", "hello.txt", content)
	if got.Digest != v1 || len(got.Manifest.Layers) != 1 || got.Manifest.Layers[0].Digest != img.LayerDigest {
		t.Errorf("registry has %s with layers %v; want %s with layer %s", got.Digest, got.Manifest.Layers, v1, img.LayerDigest)
	}

	// push an OCI layout: the manifest goes up unchanged.
	out = cr("push", img.Layout, base+"-layout:v1")
	if d := digestRE.FindString(out); d != img.ManifestDigest {
		t.Errorf("crane push of the layout printed %q, want %s", out, img.ManifestDigest)
	}
	verifyRegistryImage(t, s, "e2e/crane-layout", "v1", "hello.txt", content)

	// append to an existing image: the base layer is kept, one is added.
	content2 := []byte("second layer\n")
	layer2, _ := tarGz(t, "second.txt", content2)
	if err := os.WriteFile(filepath.Join(dir, "layer2.tar.gz"), layer2, 0o644); err != nil {
		t.Fatal(err)
	}
	cr("append", "-b", base+":v1", "-f", "layer2.tar.gz", "-t", base+":v2")
	v2 := verifyRegistryImage(t, s, "e2e/crane", "v2", "second.txt", content2)
	verifyRegistryImage(t, s, "e2e/crane", "v2", "hello.txt", content)
	if len(v2.Manifest.Layers) != 2 || v2.Manifest.Layers[0].Digest != img.LayerDigest || v2.Manifest.Layers[1].Digest != sha256Digest(layer2) {
		t.Errorf("v2 layers = %v, want [%s %s]", v2.Manifest.Layers, img.LayerDigest, sha256Digest(layer2))
	}

	// copy to another repository: same digest.
	cr("copy", base+":v1", base+"-copy:v1")
	if d := cr("digest", base+"-copy:v1"); d != v1 {
		t.Errorf("copy has digest %q, source %s", d, v1)
	}

	// pull to a tarball and push it again: same digest, and the tarball
	// holds the layer bytes.
	cr("pull", base+":v1", "image.tar")
	if !tarHoldsBlob(t, filepath.Join(dir, "image.tar"), img.LayerDigest) {
		t.Errorf("crane pull tarball lacks layer %s", img.LayerDigest)
	}
	out = cr("push", "image.tar", base+"-pushed:v1")
	if d := digestRE.FindString(out); d != v1 {
		t.Errorf("crane push of the pulled tarball printed %q, want %s", out, v1)
	}

	// ls and catalog.
	if tags := strings.Fields(cr("ls", base)); !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("crane ls = %v, want [v1 v2]", tags)
	}
	catalog := strings.Fields(cr("catalog", s.Addr))
	for _, repo := range []string{"e2e/crane", "e2e/crane-copy", "e2e/crane-layout", "e2e/crane-pushed"} {
		if !slices.Contains(catalog, repo) {
			t.Errorf("crane catalog = %v, lacks %s", catalog, repo)
		}
	}

	// delete by digest: gone from that repository only.
	cr("delete", base+"-copy@"+v1)
	if _, _, err := tryIn(dir, craneEnv, crane, "manifest", base+"-copy@"+v1, "--insecure"); err == nil {
		t.Errorf("crane manifest of the deleted digest succeeded")
	}
	if _, _, err := tryIn(dir, craneEnv, crane, "manifest", base+"-copy:v1", "--insecure"); err == nil {
		t.Errorf("crane manifest of the deleted manifest's tag succeeded")
	}
	if d := headDigest(t, s, "e2e/crane-copy", v1); d != "" {
		t.Errorf("HEAD of the deleted manifest = %s, want 404", d)
	}
	if m := cr("manifest", base+"@"+v1); sha256Digest([]byte(m)) != v1 {
		t.Errorf("the source repository lost %s after a delete in the copy", v1)
	}
}

// tarHoldsBlob reports whether a tarball has an entry whose content hashes
// to dgst.
func tarHoldsBlob(t testing.TB, p, dgst string) bool {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for range 1000 {
		if _, err := tr.Next(); err == io.EOF {
			return false
		} else if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if sha256Digest(b) == dgst {
			return true
		}
	}
	return false
}

func TestOras(t *testing.T) {
	oras := requireTool(t, "oras")
	s := startDevServer(t, "--insecure-http")
	dir := t.TempDir()
	registryConfig := filepath.Join(dir, "registry-config.json")
	or := func(args ...string) string {
		t.Helper()
		return runIn(t, dir, nil, oras, append(args, "--plain-http", "--registry-config", registryConfig)...)
	}
	or("login", "-u", devUser, "-p", devPassword, s.Addr)
	content := []byte("artifact body from oras\n")
	if err := os.WriteFile(filepath.Join(dir, "file.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sig.txt"), []byte("a signature\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := s.Addr + "/e2e/artifact:v1"

	out := or("push", ref, "--artifact-type", "application/vnd.berth.test", "file.txt:text/plain")
	subject := digestFrom(t, out)
	st, h, body := getURL(t, s.Client(), s.URL+"/v2/e2e/artifact/manifests/v1", mtOCIManifest)
	var man ociManifest
	if st != http.StatusOK || json.Unmarshal(body, &man) != nil {
		t.Fatalf("GET artifact manifest = %d %s", st, body)
	}
	if h.Get("Docker-Content-Digest") != subject || man.ArtifactType != "application/vnd.berth.test" ||
		len(man.Layers) != 1 || man.Layers[0].MediaType != "text/plain" || man.Layers[0].Digest != sha256Digest(content) {
		t.Errorf("artifact manifest %s (oras printed %s):\n%s", h.Get("Docker-Content-Digest"), subject, body)
	}

	// attach, forcing the referrers API: no tag-schema fallback allowed.
	out = or("attach", "--distribution-spec", "v1.1-referrers-api", "--artifact-type", "application/vnd.berth.sig", ref, "sig.txt")
	sig := digestFrom(t, out)

	// discover (again through the referrers API only).
	var disc struct {
		Digest    string `json:"digest"`
		Referrers []struct {
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
		} `json:"referrers"`
	}
	out = or("discover", "--distribution-spec", "v1.1-referrers-api", "--format", "json", ref)
	if err := json.Unmarshal([]byte(out), &disc); err != nil {
		t.Fatalf("oras discover: %v\n%s", err, out)
	}
	if disc.Digest != subject || len(disc.Referrers) != 1 || disc.Referrers[0].Digest != sig || disc.Referrers[0].ArtifactType != "application/vnd.berth.sig" {
		t.Errorf("oras discover = %s\nwant subject %s with referrer %s", out, subject, sig)
	}
	out = or("discover", "--distribution-spec", "v1.1-referrers-api", "--format", "json", "--artifact-type", "application/vnd.berth.other", ref)
	disc.Referrers = nil
	if err := json.Unmarshal([]byte(out), &disc); err != nil || len(disc.Referrers) != 0 {
		t.Errorf("oras discover filtered on another type = %s (err %v), want no referrers", out, err)
	}

	// The registry's referrers API lists it...
	st, h, body = getURL(t, s.Client(), s.URL+"/v2/e2e/artifact/referrers/"+subject, "")
	var idx ociIndex
	if st != http.StatusOK || h.Get("Content-Type") != mtOCIIndex || json.Unmarshal(body, &idx) != nil {
		t.Fatalf("GET referrers = %d %q %s", st, h.Get("Content-Type"), body)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig || idx.Manifests[0].ArtifactType != "application/vnd.berth.sig" {
		t.Errorf("referrers of %s = %s, want only %s", subject, body, sig)
	}
	// ...and oras did not fall back to the tag schema.
	tags := tagList(t, s, "e2e/artifact")
	if fallback := strings.Replace(subject, ":", "-", 1); slices.Contains(tags, fallback) {
		t.Errorf("tags %v include the referrers fallback tag %s", tags, fallback)
	}
	if !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("tags of e2e/artifact = %v, want [v1]", tags)
	}

	// pull gives back the file.
	pulled := filepath.Join(dir, "pulled")
	or("pull", ref, "-o", pulled)
	b, err := os.ReadFile(filepath.Join(pulled, "file.txt"))
	if err != nil || !bytes.Equal(b, content) {
		t.Errorf("oras pull: file.txt = %q (err %v), want %q", b, err, content)
	}
}

// digestFrom returns the digest on the "Digest: " line oras prints.
func digestFrom(t testing.TB, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Digest: "); ok && digestRE.MatchString(rest) {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no Digest line in:\n%s", out)
	return ""
}

// podmanFor is a podman with storage of its own, logged in to s with
// token (the reference's `podman login -u kubeadmin -p $(berth whoami
// -t)`): pm runs a command and fails the test when it fails, try runs
// one and returns its output and error.
func podmanFor(t *testing.T, s *server, token string) (ce *containersEnv, pm func(...string) string, try func(...string) (string, error)) {
	t.Helper()
	podman := requireTool(t, "podman")
	ce = newContainersEnv(t)
	global := append(ce.storageFlags(), "--tmpdir", ce.TmpDir, "--cgroup-manager=cgroupfs", "--events-backend=file")
	pm = func(args ...string) string {
		t.Helper()
		return runIn(t, "", ce.Env, podman, append(global, args...)...)
	}
	try = func(args ...string) (string, error) {
		o, e, err := tryIn("", ce.Env, podman, append(global, args...)...)
		return o + e, err
	}
	pm("login", "--cert-dir", s.CertDir(), "-u", "kubeadmin", "-p", token, s.Addr)
	return ce, pm, try
}
