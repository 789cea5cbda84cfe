package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/storage/s3/s3test"
)

const configPath = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"

// useS3 puts s on a fresh bucket of gw as the reference's procedure does:
// the credentials in the user secret, then spec.storage.s3 (the bucket
// left for Berth to name and create). It returns the bucket's name.
func useS3(t *testing.T, s *server, gw *s3test.Gateway, extra string) string {
	t.Helper()
	data := map[string]string{}
	for k, v := range s3test.Credentials() {
		data[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	st, b := s.apiCall("POST", "/api/v1/namespaces/openshift-image-registry/secrets", map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]string{"name": "image-registry-private-configuration-user", "namespace": "openshift-image-registry"},
		"data":     data,
	})
	if st != http.StatusCreated {
		t.Fatalf("create the storage secret: %d %s", st, b)
	}
	patchConfigE2E(t, s, fmt.Sprintf(`{"spec":{%s"storage":{"pvc":null,"managementState":"","s3":{"region":%q,"regionEndpoint":%q}}}}`, extra, s3test.Region, gw.Endpoint))
	var cfg struct {
		Spec struct {
			Storage struct {
				S3 struct{ Bucket string } `json:"s3"`
			} `json:"storage"`
		} `json:"spec"`
		Status struct {
			Storage struct {
				S3 *struct{ Bucket string } `json:"s3"`
			} `json:"storage"`
		} `json:"status"`
	}
	eventually(t, "the S3 storage in effect", func() string {
		_, b := s.apiCall("GET", configPath, nil)
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err.Error()
		}
		if cfg.Status.Storage.S3 == nil || cfg.Status.Storage.S3.Bucket == "" {
			return "status.storage: " + string(b)
		}
		return ""
	})
	return cfg.Spec.Storage.S3.Bucket
}

// patchConfigE2E merge-patches the registry Config as `berth patch
// configs.imageregistry.operator.openshift.io/cluster --type merge` does.
func patchConfigE2E(t *testing.T, s *server, patch string) {
	t.Helper()
	req, _ := http.NewRequest("PATCH", s.URL+configPath, strings.NewReader(patch))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("patch the Config %s: %d %s", patch, resp.StatusCode, b)
	}
	eventually(t, "the Config applied", func() string {
		var cfg struct {
			Metadata struct{ Generation int64 }
			Status   struct{ ObservedGeneration int64 }
		}
		_, b := s.apiCall("GET", configPath, nil)
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err.Error()
		}
		if cfg.Status.ObservedGeneration != cfg.Metadata.Generation {
			return fmt.Sprintf("generation %d, observed %d", cfg.Metadata.Generation, cfg.Status.ObservedGeneration)
		}
		return ""
	})
}

// TestS3Conformance runs the OCI conformance suite, every switch on, on
// a registry whose blobs are in S3: with blobs streamed through Berth
// (disableRedirect) it passes whole. With blob GETs redirected to the
// bucket it fails only where the suite wants Docker-Content-Digest on the
// final response, which then comes from the bucket (S3 cannot add that
// header; clients check the digest of what they pull anyway).
func TestS3Conformance(t *testing.T) {
	gw := s3test.Start(t)
	bin := buildConformance(t, t.TempDir())
	for _, mode := range []string{"streamed", "redirected"} {
		t.Run(mode, func(t *testing.T) {
			s, creds := conformanceServer(t, "--allow-sparse-manifests")
			extra := `"disableRedirect":true,`
			if mode == "redirected" {
				extra = ""
			}
			bucket := useS3(t, s, gw, extra)
			res := runConformance(t, bin, s, "1.1", true, creds...)
			line := res.summary("s3-" + mode + "-tls-1.1")
			t.Log(line)
			reportConformance(t, line)
			if res.passed <= 700 {
				t.Errorf("only %d testcases passed, want more than 700", res.passed)
			}
			// The suite's blobs are in the bucket.
			dirs, err := os.ReadDir(filepath.Join(gw.Dir, bucket, "blobs", "sha256"))
			if err != nil || len(dirs) < 10 {
				t.Errorf("the bucket holds %d blob directories (%v), want the suite's blobs", len(dirs), err)
			}
			if mode == "streamed" {
				if res.exitCode != 0 || res.failures != 0 || res.errors != 0 {
					t.Errorf("conformance on S3: exit %d, failures %d, errors %d\n%s", res.exitCode, res.failures, res.errors, describeCases(res.failedCases(), 25))
				}
				return
			}
			redirected := 0
			for _, tc := range res.failedCases() {
				if !strings.Contains(tc.SystemOut, "did not return a Docker-Content-Digest header") {
					t.Errorf("a redirected run failed for another reason than the bucket's headers: %s", describeCases([]junitCase{tc}, 1))
					continue
				}
				if strings.Contains(tc.SystemErr, "Status: 307") && strings.Contains(tc.SystemErr, "Server: [VERSITYGW]") {
					redirected++
				}
			}
			if redirected == 0 {
				t.Errorf("no blob GET was redirected to the bucket (%d failed cases)", len(res.failedCases()))
			}
		})
	}
}

// layeredImage is a two-layer image in an OCI layout: a small gzip layer
// and a large uncompressed one of random bytes (so that nothing along the
// way can compress it away).
func layeredImage(t *testing.T, tag string, bigSize int) (layout string, manifestDigest string, layers []string) {
	t.Helper()
	layout = filepath.Join(t.TempDir(), "layout")
	small, smallDiff := tarGz(t, "hello.txt", []byte("small layer\n"))
	big := make([]byte, bigSize)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: int64(len(big)), ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	bigTar := tb.Bytes()
	layers = []string{writeBlob(t, layout, small), writeBlob(t, layout, bigTar)}
	config := mustJSON(t, map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{smallDiff, sha256Digest(bigTar)}},
	})
	manifest := mustJSON(t, ociManifest{
		SchemaVersion: 2, MediaType: mtOCIManifest,
		Config: ociDescriptor{MediaType: mtOCIConfig, Digest: writeBlob(t, layout, config), Size: int64(len(config))},
		Layers: []ociDescriptor{
			{MediaType: mtOCILayerGz, Digest: layers[0], Size: int64(len(small))},
			{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layers[1], Size: int64(len(bigTar))},
		},
	})
	manifestDigest = writeBlob(t, layout, manifest)
	index := mustJSON(t, ociIndex{SchemaVersion: 2, MediaType: mtOCIIndex, Manifests: []ociDescriptor{{
		MediaType: mtOCIManifest, Digest: manifestDigest, Size: int64(len(manifest)),
		Annotations: map[string]string{"org.opencontainers.image.ref.name": tag},
	}}})
	if err := os.WriteFile(filepath.Join(layout, "index.json"), index, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return layout, manifestDigest, layers
}

// TestS3Clients: skopeo and podman push and pull a two-layer image with a
// 200 MB layer through a registry on S3, with redirects on (skopeo) and
// off (podman); the bytes in the bucket and the bytes pulled back are the
// ones pushed.
func TestS3Clients(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	podman := requireTool(t, "podman")
	gw := s3test.Start(t)
	s := startDevServer(t)
	bucket := useS3(t, s, gw, "")
	certs := s.CertDir()
	ce := newContainersEnv(t)
	layout, manifestDigest, layers := layeredImage(t, "v1", 200<<20)
	creds := devUser + ":" + devPassword
	ref := "docker://" + s.Addr + "/e2e/s3:v1"
	runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", creds, "oci:"+layout+":v1", ref)
	for _, l := range layers {
		hex := strings.TrimPrefix(l, "sha256:")
		want, _ := os.ReadFile(filepath.Join(layout, "blobs", "sha256", hex))
		got, err := os.ReadFile(filepath.Join(gw.Dir, bucket, "blobs", "sha256", hex[:2], hex))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("layer %s in the bucket: %v, equal %t", l, err, bytes.Equal(got, want))
		}
	}
	// Pulled back through the redirect to the bucket.
	back := filepath.Join(t.TempDir(), "back")
	runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--preserve-digests", "--src-cert-dir", certs, "--src-creds", creds, ref, "oci:"+back+":v1")
	if d := layoutManifestDigest(t, back); d != manifestDigest {
		t.Errorf("pulled manifest %s, pushed %s", d, manifestDigest)
	}
	for _, l := range layers {
		hex := strings.TrimPrefix(l, "sha256:")
		if got := fileDigest(t, filepath.Join(back, "blobs", "sha256", hex)); got != l {
			t.Errorf("pulled layer hashes to %s, want %s", got, l)
		}
	}

	if !strings.Contains(s.logs.String(), "path=/v2/e2e/s3/blobs/"+layers[1]+" status=307") {
		t.Error("skopeo's pull of the big layer was not redirected to the bucket")
	}
	redirects := strings.Count(s.logs.String(), " status=307")

	// podman, with blobs streamed through Berth.
	patchConfigE2E(t, s, `{"spec":{"disableRedirect":true}}`)
	pm := func(args ...string) string {
		t.Helper()
		global := append(ce.storageFlags(), "--tmpdir", ce.TmpDir, "--cgroup-manager=cgroupfs", "--events-backend=file")
		return runIn(t, "", ce.Env, podman, append(global, args...)...)
	}
	pm("login", "--cert-dir", certs, "-u", devUser, "-p", devPassword, s.Addr)
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, s.Addr+"/e2e/s3:v1")
	out := pm("image", "inspect", "--format", "{{.Digest}}", s.Addr+"/e2e/s3:v1")
	if strings.TrimSpace(out) != manifestDigest {
		t.Errorf("podman pulled %q, want %s", out, manifestDigest)
	}
	if n := strings.Count(s.logs.String(), " status=307"); n != redirects {
		t.Errorf("%d more redirects with disableRedirect set", n-redirects)
	}
	pm("tag", s.Addr+"/e2e/s3:v1", s.Addr+"/e2e/s3-copy:v1")
	pm("push", "--signature-policy", ce.Policy, "--cert-dir", certs, s.Addr+"/e2e/s3-copy:v1")
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/e2e/s3-copy/manifests/v1", manifestAccept)
	if st != http.StatusOK {
		t.Fatalf("the image podman pushed: %d %s", st, body)
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Digest(b)
}

// TestS3ServerKilledMidPush: the storage server dies in the middle of a
// push. The client gets an error, Berth stays up (unhealthy while the
// bucket is unreachable), nothing half-written becomes visible, and once
// the server is back the same push works.
func TestS3ServerKilledMidPush(t *testing.T) {
	gw := s3test.Start(t)
	s := startDevServer(t)
	bucket := useS3(t, s, gw, "")
	c := s.Client()
	content := make([]byte, 40<<20)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	dgst := sha256Digest(content)

	resp, err := c.Post(s.URL+"/v2/e2e/killed/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start an upload: %d", resp.StatusCode)
	}
	location := resp.Header.Get("Location")
	if !strings.HasPrefix(location, "http") {
		location = s.URL + location
	}
	// The body stops the gateway once 15 MB are sent (parts are on S3 by
	// then), and goes on sending.
	body := &killAfter{r: bytes.NewReader(content), after: 15 << 20, kill: gw.Stop}
	sep := "?"
	if strings.Contains(location, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest("PUT", location+sep+"digest="+dgst, body)
	req.ContentLength = int64(len(content))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = c.Do(req)
	if err == nil {
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Errorf("the push with the storage server killed: %d %s, want an error", resp.StatusCode, msg)
		}
	}
	if !body.killed {
		t.Fatal("the gateway was never stopped")
	}
	// Berth is up, says it is unhealthy, and the blob is nowhere.
	eventually(t, "healthz 503 with the bucket unreachable", func() string {
		st, _, b := getURL(t, c, s.URL+"/healthz", "")
		if st != http.StatusServiceUnavailable {
			return fmt.Sprintf("%d %s", st, b)
		}
		return ""
	})
	if err := gw.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "healthz 200 with the bucket back", func() string {
		st, _, b := getURL(t, c, s.URL+"/healthz", "")
		if st != http.StatusOK {
			return fmt.Sprintf("%d %s", st, b)
		}
		return ""
	})
	head, _ := http.NewRequest("HEAD", s.URL+"/v2/e2e/killed/blobs/"+dgst, nil)
	if resp, err := c.Do(head); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the blob whose push failed: %v %v, want 404", resp, err)
	}
	hex := strings.TrimPrefix(dgst, "sha256:")
	if _, err := os.Stat(filepath.Join(gw.Dir, bucket, "blobs", "sha256", hex[:2], hex)); !os.IsNotExist(err) {
		t.Errorf("the half-pushed blob is in the bucket: %v", err)
	}
	// The same push again, whole.
	resp, err = c.Post(s.URL+"/v2/e2e/killed/blobs/uploads/?digest="+dgst, "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("the push after the storage server returned: %d", resp.StatusCode)
	}
	st, _, got := getURL(t, c, s.URL+"/v2/e2e/killed/blobs/"+dgst, "")
	if st != http.StatusOK || !bytes.Equal(got, content) {
		t.Fatalf("pull after the push: %d, %d bytes", st, len(got))
	}
}

// killAfter reads r and calls kill once after bytes have been read.
type killAfter struct {
	r      io.Reader
	after  int
	read   int
	kill   func()
	killed bool
}

func (k *killAfter) Read(p []byte) (int, error) {
	if !k.killed && k.read >= k.after {
		k.kill()
		k.killed = true
	}
	n, err := k.r.Read(p)
	k.read += n
	return n, err
}
