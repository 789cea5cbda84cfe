package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/berth-registry/berth/internal/storage/azure/azuretest"
	"github.com/berth-registry/berth/internal/storage/gcs"
	"github.com/berth-registry/berth/internal/storage/gcs/gcstest"
	"github.com/berth-registry/berth/internal/storage/s3/s3test"
	"github.com/berth-registry/berth/internal/storage/swift/swifttest"
)

const configPath = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"

// objectStore is an object-storage server on loopback that a registry's
// blobs go to, as the end-to-end tests of every object-storage driver see
// it.
type objectStore struct {
	// kind is the storage's key in spec.storage (s3, gcs).
	kind string
	// credentials go in the user secret; section is the rest of
	// spec.storage.<kind> (the bucket left for Berth to name and create).
	credentials map[string]string
	section     map[string]any
	// object reads a blob's object from bucket; blobCount counts the
	// blobs in it.
	object    func(t *testing.T, bucket, hex string) ([]byte, error)
	blobCount func(t *testing.T, bucket string) int
	stop      func()
	restart   func() error
	// servedBy is in the conformance suite's record of a blob GET
	// redirected to the store.
	servedBy string
}

func s3Store(t *testing.T) objectStore {
	gw := s3test.Start(t)
	return objectStore{
		kind: "s3", credentials: s3test.Credentials(),
		section: map[string]any{"region": s3test.Region, "regionEndpoint": gw.Endpoint},
		object: func(t *testing.T, bucket, hex string) ([]byte, error) {
			return os.ReadFile(filepath.Join(gw.Dir, bucket, "blobs", "sha256", hex[:2], hex))
		},
		blobCount: func(t *testing.T, bucket string) int {
			dirs, _ := os.ReadDir(filepath.Join(gw.Dir, bucket, "blobs", "sha256"))
			n := 0
			for _, d := range dirs {
				files, _ := os.ReadDir(filepath.Join(gw.Dir, bucket, "blobs", "sha256", d.Name()))
				n += len(files)
			}
			return n
		},
		stop: gw.Stop, restart: gw.Restart,
		servedBy: "Server: [VERSITYGW]",
	}
}

func gcsStore(t *testing.T) objectStore {
	e := gcstest.Start(t)
	// The server (a child process) reaches the emulator as Google's
	// libraries do.
	t.Setenv(gcstest.EmulatorHostVar, e.Host)
	keyFile, _ := gcstest.KeyFile(t)
	get := func(t *testing.T, path string) ([]byte, int) {
		resp, err := http.Get(e.Endpoint + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b, resp.StatusCode
	}
	return objectStore{
		kind: "gcs", credentials: map[string]string{gcs.KeyFileKey: string(keyFile)},
		section: map[string]any{"projectID": "berth-e2e", "region": "us-central1"},
		object: func(t *testing.T, bucket, hex string) ([]byte, error) {
			b, st := get(t, "/storage/v1/b/"+bucket+"/o/"+url.PathEscape("blobs/sha256/"+hex[:2]+"/"+hex)+"?alt=media")
			if st != http.StatusOK {
				return nil, fmt.Errorf("GET object: %d %s", st, b)
			}
			return b, nil
		},
		blobCount: func(t *testing.T, bucket string) int {
			b, st := get(t, "/storage/v1/b/"+bucket+"/o?prefix=blobs/&maxResults=1000")
			var list struct{ Items []struct{ Name string } }
			if err := json.Unmarshal(b, &list); st != http.StatusOK || err != nil {
				t.Fatalf("list the bucket's blobs: %d %s", st, b)
			}
			return len(list.Items)
		},
		stop: e.Stop, restart: e.Restart,
		servedBy: "X-Goog-Signature=",
	}
}

func azureStore(t *testing.T) objectStore {
	e := azuretest.Start(t)
	// The server (a child process) is pointed at the emulator's service.
	t.Setenv(azuretest.ServiceURLVar, e.ServiceURL)
	cred, err := azblob.NewSharedKeyCredential(azuretest.AccountName, azuretest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(e.ServiceURL, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	return objectStore{
		kind: "azure", credentials: azuretest.Credentials(),
		section: map[string]any{"accountName": azuretest.AccountName},
		object: func(t *testing.T, container, hex string) ([]byte, error) {
			resp, err := client.DownloadStream(context.Background(), container, "blobs/sha256/"+hex[:2]+"/"+hex, nil)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			return io.ReadAll(resp.Body)
		},
		blobCount: func(t *testing.T, container string) int {
			prefix := "blobs/"
			pager := client.NewListBlobsFlatPager(container, &azblob.ListBlobsFlatOptions{Prefix: &prefix})
			n := 0
			for pager.More() {
				page, err := pager.NextPage(context.Background())
				if err != nil {
					t.Fatalf("list the container's blobs: %v", err)
				}
				n += len(page.Segment.BlobItems)
			}
			return n
		},
		stop: e.Stop, restart: e.Restart,
		servedBy: "sig=",
	}
}

func swiftStore(t *testing.T) objectStore {
	c := swifttest.Start(t)
	proxy := strings.TrimSuffix(c.AuthURL, "/auth/v1.0")
	get := func(t *testing.T, path string) ([]byte, int) {
		auth, _ := http.NewRequest(http.MethodGet, c.AuthURL, nil)
		auth.Header.Set("X-Auth-User", swifttest.User)
		auth.Header.Set("X-Auth-Key", swifttest.Key)
		resp, err := http.DefaultClient.Do(auth)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		req, _ := http.NewRequest(http.MethodGet, proxy+"/v1/AUTH_test/"+path, nil)
		req.Header.Set("X-Auth-Token", resp.Header.Get("X-Auth-Token"))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b, resp.StatusCode
	}
	return objectStore{
		kind: "swift", credentials: swifttest.Credentials(),
		section: map[string]any{"authURL": c.AuthURL, "authVersion": "1"},
		object: func(t *testing.T, container, hex string) ([]byte, error) {
			b, st := get(t, container+"/blobs/sha256/"+hex[:2]+"/"+hex)
			if st != http.StatusOK {
				return nil, fmt.Errorf("GET object: %d %s", st, b)
			}
			return b, nil
		},
		blobCount: func(t *testing.T, container string) int {
			b, st := get(t, container+"?prefix=blobs/&format=json")
			var list []struct{ Name string }
			if err := json.Unmarshal(b, &list); st != http.StatusOK || err != nil {
				t.Fatalf("list the container's blobs: %d %s", st, b)
			}
			return len(list)
		},
		stop: c.Stop, restart: c.Restart,
		servedBy: "temp_url_sig=",
	}
}

// useObjectStore puts s on a fresh bucket of store as the reference's
// procedure does: the credentials in the user secret, then
// spec.storage.<kind>. It returns the bucket's name.
func useObjectStore(t *testing.T, s *server, store objectStore, extra string) string {
	t.Helper()
	data := map[string]string{}
	for k, v := range store.credentials {
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
	section, err := json.Marshal(store.section)
	if err != nil {
		t.Fatal(err)
	}
	patchConfigE2E(t, s, fmt.Sprintf(`{"spec":{%s"storage":{"pvc":null,"managementState":"",%q:%s}}}`, extra, store.kind, section))
	var cfg struct {
		Spec struct {
			Storage map[string]json.RawMessage `json:"storage"`
		} `json:"spec"`
		Status struct {
			Storage map[string]json.RawMessage `json:"storage"`
		} `json:"status"`
	}
	// The bucket's name, or the container's.
	var inEffect, named struct{ Bucket, Container string }
	eventually(t, "the "+store.kind+" storage in effect", func() string {
		_, b := s.apiCall("GET", configPath, nil)
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err.Error()
		}
		if err := json.Unmarshal(cfg.Status.Storage[store.kind], &inEffect); err != nil || inEffect.Bucket+inEffect.Container == "" {
			return "status.storage: " + string(b)
		}
		return ""
	})
	if err := json.Unmarshal(cfg.Spec.Storage[store.kind], &named); err != nil {
		t.Fatal(err)
	}
	return named.Bucket + named.Container
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
func TestS3Conformance(t *testing.T) { conformanceOnObjectStore(t, s3Store(t)) }

// TestGCSConformance: the same on GCS (its emulator), redirected to
// V4-signed URLs of the bucket.
func TestGCSConformance(t *testing.T) { conformanceOnObjectStore(t, gcsStore(t)) }

// TestAzureConformance: the same on Azure Blob (Azurite), redirected to
// SAS URLs of the container.
func TestAzureConformance(t *testing.T) { conformanceOnObjectStore(t, azureStore(t)) }

// TestSwiftConformance: the same on Swift, redirected to temp URLs.
func TestSwiftConformance(t *testing.T) { conformanceOnObjectStore(t, swiftStore(t)) }

func conformanceOnObjectStore(t *testing.T, store objectStore) {
	bin := buildConformance(t, t.TempDir())
	for _, mode := range []string{"streamed", "redirected"} {
		t.Run(mode, func(t *testing.T) {
			s, creds := conformanceServer(t, "--allow-sparse-manifests")
			extra := `"disableRedirect":true,`
			if mode == "redirected" {
				extra = ""
			}
			bucket := useObjectStore(t, s, store, extra)
			res := runConformance(t, bin, s, "1.1", true, creds...)
			line := res.summary(store.kind + "-" + mode + "-tls-1.1")
			t.Log(line)
			reportConformance(t, line)
			if res.passed <= 700 {
				t.Errorf("only %d testcases passed, want more than 700", res.passed)
			}
			// The suite's blobs are in the bucket.
			if n := store.blobCount(t, bucket); n < 10 {
				t.Errorf("the bucket holds %d blobs, want the suite's", n)
			}
			if mode == "streamed" {
				if res.exitCode != 0 || res.failures != 0 || res.errors != 0 {
					t.Errorf("conformance on %s: exit %d, failures %d, errors %d\n%s", store.kind, res.exitCode, res.failures, res.errors, describeCases(res.failedCases(), 25))
				}
				return
			}
			redirected := 0
			for _, tc := range res.failedCases() {
				if !strings.Contains(tc.SystemOut, "did not return a Docker-Content-Digest header") {
					t.Errorf("a redirected run failed for another reason than the bucket's headers: %s", describeCases([]junitCase{tc}, 1))
					continue
				}
				if strings.Contains(tc.SystemErr, "Status: 307") && strings.Contains(tc.SystemErr, store.servedBy) {
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
	clientsOnObjectStore(t, skopeo, podman, s3Store(t))
}

// TestGCSClients: the same on GCS.
func TestGCSClients(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	podman := requireTool(t, "podman")
	clientsOnObjectStore(t, skopeo, podman, gcsStore(t))
}

// TestAzureClients: the same on Azure Blob.
func TestAzureClients(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	podman := requireTool(t, "podman")
	clientsOnObjectStore(t, skopeo, podman, azureStore(t))
}

// TestSwiftClients: the same on Swift.
func TestSwiftClients(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	podman := requireTool(t, "podman")
	clientsOnObjectStore(t, skopeo, podman, swiftStore(t))
}

func clientsOnObjectStore(t *testing.T, skopeo, podman string, store objectStore) {
	s := startDevServer(t)
	bucket := useObjectStore(t, s, store, "")
	repo := "e2e/" + store.kind
	certs := s.CertDir()
	ce := newContainersEnv(t)
	layout, manifestDigest, layers := layeredImage(t, "v1", 200<<20)
	creds := devUser + ":" + devPassword
	ref := "docker://" + s.Addr + "/" + repo + ":v1"
	runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", creds, "oci:"+layout+":v1", ref)
	for _, l := range layers {
		hex := strings.TrimPrefix(l, "sha256:")
		want, _ := os.ReadFile(filepath.Join(layout, "blobs", "sha256", hex))
		got, err := store.object(t, bucket, hex)
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

	if !strings.Contains(s.logs.String(), "path=/v2/"+repo+"/blobs/"+layers[1]+" status=307") {
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
	pm("pull", "--signature-policy", ce.Policy, "--cert-dir", certs, s.Addr+"/"+repo+":v1")
	out := pm("image", "inspect", "--format", "{{.Digest}}", s.Addr+"/"+repo+":v1")
	if strings.TrimSpace(out) != manifestDigest {
		t.Errorf("podman pulled %q, want %s", out, manifestDigest)
	}
	if n := strings.Count(s.logs.String(), " status=307"); n != redirects {
		t.Errorf("%d more redirects with disableRedirect set", n-redirects)
	}
	pm("tag", s.Addr+"/"+repo+":v1", s.Addr+"/"+repo+"-copy:v1")
	pm("push", "--signature-policy", ce.Policy, "--cert-dir", certs, s.Addr+"/"+repo+"-copy:v1")
	st, _, body := getURL(t, s.Client(), s.URL+"/v2/"+repo+"-copy/manifests/v1", manifestAccept)
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
func TestS3ServerKilledMidPush(t *testing.T) { killedMidPush(t, s3Store(t)) }

// TestGCSServerKilledMidPush: the same on GCS.
func TestGCSServerKilledMidPush(t *testing.T) { killedMidPush(t, gcsStore(t)) }

// TestAzureServerKilledMidPush: the same on Azure Blob.
func TestAzureServerKilledMidPush(t *testing.T) { killedMidPush(t, azureStore(t)) }

// TestSwiftServerKilledMidPush: the same on Swift.
func TestSwiftServerKilledMidPush(t *testing.T) { killedMidPush(t, swiftStore(t)) }

func killedMidPush(t *testing.T, store objectStore) {
	s := startDevServer(t)
	bucket := useObjectStore(t, s, store, "")
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
	// The body stops the storage server once 15 MB are sent (some are in
	// the store by then), and goes on sending.
	body := &killAfter{r: bytes.NewReader(content), after: 15 << 20, kill: store.stop}
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
		t.Fatal("the storage server was never stopped")
	}
	// Berth is up, says it is unhealthy, and the blob is nowhere.
	eventually(t, "healthz 503 with the bucket unreachable", func() string {
		st, _, b := getURL(t, c, s.URL+"/healthz", "")
		if st != http.StatusServiceUnavailable {
			return fmt.Sprintf("%d %s", st, b)
		}
		return ""
	})
	if err := store.restart(); err != nil {
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
	if b, err := store.object(t, bucket, hex); err == nil {
		t.Errorf("the half-pushed blob is in the bucket (%d bytes)", len(b))
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
