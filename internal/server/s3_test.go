package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	imageregistryv1 "github.com/berth-registry/berth/internal/api/imageregistry/v1"
	"github.com/berth-registry/berth/internal/errdefs"
	"github.com/berth-registry/berth/internal/operator"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/storage/s3/s3test"
)

// putStorageSecret creates the user secret with the storage credentials,
// as the reference's procedure does (oc create secret generic
// image-registry-private-configuration-user …).
func putStorageSecret(t *testing.T, url string, creds map[string]string) {
	t.Helper()
	putSecret(t, url, "image-registry-private-configuration-user", creds)
}

// putSecret creates a Secret in openshift-image-registry.
func putSecret(t *testing.T, url, name string, values map[string]string) {
	t.Helper()
	data := map[string]string{}
	for k, v := range values {
		data[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": name, "namespace": "openshift-image-registry"},
		"data":     data,
	})
	resp, err := admin.Post(url+"/api/v1/namespaces/openshift-image-registry/secrets", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create secret %s: %d %s", name, resp.StatusCode, msg)
	}
}

// TestS3StorageLive follows the reference's S3 procedure: the credentials
// go in the user secret, spec.storage.s3 names an endpoint and no bucket;
// Berth names the bucket, creates it, reports it, serves pushes and pulls
// from it (redirected to the bucket unless disableRedirect), and removes
// it with the registry when it is Managed.
func TestS3StorageLive(t *testing.T) {
	gw := s3test.Start(t)
	r := start(t, Config{DataDir: t.TempDir()})
	putStorageSecret(t, r.url, s3test.Credentials())
	patchConfig(t, r.url, fmt.Sprintf(`{"spec":{"storage":{"pvc":null,"managementState":"","s3":{"region":%q,"regionEndpoint":%q}}}}`, s3test.Region, gw.Endpoint))
	c := waitApplied(t, r.url)
	var full struct {
		Spec struct {
			Storage struct {
				ManagementState string `json:"managementState"`
				S3              struct {
					Bucket string `json:"bucket"`
				} `json:"s3"`
			} `json:"storage"`
		} `json:"spec"`
	}
	getJSON(t, r.url+configURL, &full)
	bucket := full.Spec.Storage.S3.Bucket
	if !strings.HasPrefix(bucket, "berth-") || !strings.HasSuffix(bucket, "-image-registry-us-east-1") {
		t.Fatalf("generated bucket %q", bucket)
	}
	if full.Spec.Storage.ManagementState != "Managed" {
		t.Errorf("a generated bucket's managementState is %q, want Managed", full.Spec.Storage.ManagementState)
	}
	if st, reason, msg := c.condition("StorageExists"); st != "True" || reason != "Creation Successful" {
		t.Errorf("StorageExists = %s %s %q", st, reason, msg)
	}
	// versitygw does not implement the public access block: the condition
	// says so rather than claiming success.
	if st, reason, _ := c.condition("StoragePublicAccessBlocked"); st == "" || (st == "False" && reason == "") {
		t.Errorf("StoragePublicAccessBlocked = %s %s", st, reason)
	}
	if _, err := os.Stat(filepath.Join(gw.Dir, bucket)); err != nil {
		t.Fatalf("the bucket was not created on the gateway: %v", err)
	}

	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("s3 layer "), 1<<20)
	for _, b := range [][]byte{config, layer} {
		if resp := pushBlob(t, r.url, "s3/app", b); resp.StatusCode != 201 {
			t.Fatalf("push to S3: %d", resp.StatusCode)
		}
	}
	if code := pushManifest(t, r.url, "s3/app", "v1", config, layer); code != 201 {
		t.Fatalf("manifest: %d", code)
	}
	dgst := digest.FromBytes(layer)
	if _, err := os.Stat(filepath.Join(gw.Dir, bucket, "blobs", "sha256", dgst.Encoded()[:2], dgst.Encoded())); err != nil {
		t.Fatalf("the layer is not in the bucket: %v", err)
	}

	servesFromBucket(t, r.url, "s3/app", layer, func(loc string) bool { return strings.HasPrefix(loc, gw.Endpoint+"/"+bucket+"/blobs/") }, bucket)

	// /healthz follows the bucket: 503 while the gateway is down, 200
	// again when it is back.
	// The Config says so too, at the operator's next pass.
	gw.Stop()
	waitHealth(t, r.url, http.StatusServiceUnavailable)
	patchConfig(t, r.url, `{"spec":{"logLevel":"Debug"}}`)
	c, _ = getConfig(t, r.url)
	if st, reason, _ := c.condition("StorageExists"); st != "Unknown" || reason != "Storage Unreachable" {
		t.Errorf("StorageExists with the bucket unreachable: %s %s", st, reason)
	}
	if st, _, msg := c.condition("Degraded"); st != "True" || !strings.Contains(msg, "does not answer") {
		t.Errorf("Degraded with the bucket unreachable: %s %q", st, msg)
	}
	if err := gw.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, r.url, http.StatusOK)
	patchConfig(t, r.url, `{"spec":{"logLevel":"Normal"}}`)
	c, _ = getConfig(t, r.url)
	if st, _, _ := c.condition("StorageExists"); st != "True" {
		t.Errorf("StorageExists with the bucket back: %s", st)
	}

	// Removed: a Managed bucket goes with the registry.
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	if _, err := os.Stat(filepath.Join(gw.Dir, bucket)); !os.IsNotExist(err) {
		c, _ := getConfig(t, r.url)
		t.Errorf("the Managed bucket is still there after Removed: %v; conditions %+v", err, c.Status.Conditions)
	}
}

// servesFromBucket checks how a registry serves layer, pushed to repo and
// kept in an object store's bucket: a GET redirects (307) to a Location
// redirected approves, a HEAD does not, a pull through the redirect gets
// the bytes, BlobRedirects names the bucket; with disableRedirect the GET
// streams the blob, and a range of it.
func servesFromBucket(t *testing.T, url, repo string, layer []byte, redirected func(loc string) bool, bucket string) {
	t.Helper()
	dgst := digest.FromBytes(layer)
	noFollow := &http.Client{Transport: admin.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(url + "/v2/" + repo + "/blobs/" + dgst.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusTemporaryRedirect || !redirected(loc) {
		t.Fatalf("GET of a blob in a bucket: %d Location %q, want 307 to the bucket", resp.StatusCode, loc)
	}
	req, _ := http.NewRequest(http.MethodHead, url+"/v2/"+repo+"/blobs/"+dgst.String(), nil)
	if resp, err := noFollow.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD of a blob in a bucket: %v %v, want 200", resp, err)
	}
	if code, got := pull(t, url, repo, dgst); code != 200 || !bytes.Equal(got, layer) {
		t.Fatalf("pull through the redirect: %d, %d bytes", code, len(got))
	}
	c, _ := getConfig(t, url)
	if st, reason, msg := c.condition("BlobRedirects"); st != "True" || reason != "Redirecting" || !strings.Contains(msg, bucket) {
		t.Errorf("BlobRedirects = %s %s %q", st, reason, msg)
	}
	patchConfig(t, url, `{"spec":{"disableRedirect":true}}`)
	c, _ = getConfig(t, url)
	if st, reason, _ := c.condition("BlobRedirects"); st != "False" || reason != "RedirectDisabled" {
		t.Errorf("BlobRedirects with disableRedirect = %s %s", st, reason)
	}
	resp, err = noFollow.Get(url + "/v2/" + repo + "/blobs/" + dgst.String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, layer) {
		t.Fatalf("GET with disableRedirect: %d, %d bytes; want the blob streamed", resp.StatusCode, len(got))
	}
	req, _ = http.NewRequest(http.MethodGet, url+"/v2/"+repo+"/blobs/"+dgst.String(), nil)
	req.Header.Set("Range", "bytes=5-13")
	resp, err = admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || !bytes.Equal(got, layer[5:14]) {
		t.Errorf("a range streamed from a bucket: %d %q", resp.StatusCode, got)
	}
}

func waitHealth(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := admin.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz did not turn %d", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := admin.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestS3CloudFrontLive: cloudFront names a key in a Secret; until the
// Secret exists the storage stays as it was and Degraded names it; once
// it does, blob GETs redirect to the distribution.
func TestS3CloudFrontLive(t *testing.T) {
	gw := s3test.Start(t)
	r := start(t, Config{DataDir: t.TempDir()})
	putStorageSecret(t, r.url, s3test.Credentials())
	patchConfig(t, r.url, fmt.Sprintf(`{"spec":{"storage":{"pvc":null,"s3":{"bucket":%q,"region":%q,"regionEndpoint":%q,`+
		`"cloudFront":{"baseURL":"https://d111111abcdef8.cloudfront.net","keypairID":"K2JCJMDEHXQW5F","privateKey":{"name":"cloudfront-key","key":"private.pem"}}}}}}`,
		s3test.Bucket(), s3test.Region, gw.Endpoint))
	c, _ := getConfig(t, r.url)
	if st, _, msg := c.condition("Degraded"); st != "True" || !strings.Contains(msg, `secret "openshift-image-registry/cloudfront-key"`) {
		t.Errorf("Degraded without the key's Secret: %s %q", st, msg)
	}
	if claim, _ := storageStatus(t, r.url); claim == "" {
		t.Error("the storage in effect changed although the cloudFront key is missing")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, r.url, "cloudfront-key", map[string]string{"private.pem": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, _ = getConfig(t, r.url)
		if st, reason, _ := c.condition("StorageExists"); st == "True" && reason == "Creation Successful" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the S3 storage was not put in effect once the key existed: %+v", c.Status.Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
	layer := []byte("served by the CDN")
	if resp := pushBlob(t, r.url, "cf/app", layer); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	noFollow := &http.Client{Transport: admin.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(r.url + "/v2/cf/app/blobs/" + digest.FromBytes(layer).String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != 307 || !strings.HasPrefix(loc, "https://d111111abcdef8.cloudfront.net/blobs/sha256/") || !strings.Contains(loc, "Key-Pair-Id=K2JCJMDEHXQW5F") {
		t.Errorf("GET with cloudFront: %d %s", resp.StatusCode, loc)
	}
}

// destroyable is object storage whose driver created its bucket and fails
// to destroy it the first times it is asked.
type destroyable struct {
	*memory.Driver
	token     string
	failures  int
	destroyed []string
}

func (d *destroyable) ProvisionToken() string { return d.token }

func (d *destroyable) Destroy(_ context.Context, token string) (string, error) {
	d.destroyed = append(d.destroyed, token)
	if d.failures > 0 {
		d.failures--
		return "", errors.New("the backend is down")
	}
	return "bucket deleted", nil
}

// A bucket is destroyed only with the token its driver left when it
// created it, the store forgets it only once it is gone, and a failed
// destroy leaves everything in place for the next pass to retry.
func TestDestroyObjectStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	meta := openTestStore(t, dir)
	var drv *destroyable
	table := storage.Registry{"s3": func(_ context.Context, opts storage.Options) (storage.Driver, error) {
		set, err := storage.DecodeSettings[fakeS3Settings](opts)
		if err != nil {
			return nil, err
		}
		token := ""
		if set.Bucket == "made-by-berth" {
			token = "tok-" + set.Bucket
		}
		drv = &destroyable{Driver: memory.NewDriver(), token: token, failures: 1}
		return drv, nil
	}}
	s := newBlobStorages(dir, table, false, meta, slog.New(slog.DiscardHandler))
	spec := func(bucket string) imageregistryv1.StorageConfig {
		return imageregistryv1.StorageConfig{ManagementState: imageregistryv1.Managed,
			S3: &imageregistryv1.S3Storage{Bucket: bucket, Region: "us-east-1", RegionEndpoint: "http://127.0.0.1:9000"}}
	}

	// A bucket Berth found (no token), even Managed, is kept.
	if _, err := s.ApplyStorage(ctx, operator.DesiredStorage{Config: spec("users-bucket")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveStorage(ctx, spec("users-bucket")); !errors.Is(err, operator.ErrNotProvisioned) || len(drv.destroyed) != 0 {
		t.Fatalf("removing a bucket Berth did not create: %v, destroy called %d times", err, len(drv.destroyed))
	}

	applied, err := s.ApplyStorage(ctx, operator.DesiredStorage{Config: spec("made-by-berth")})
	if err != nil {
		t.Fatal(err)
	}
	id := applied.Blobs.ID
	if _, err := s.RemoveStorage(ctx, spec("made-by-berth")); err == nil || errors.Is(err, operator.ErrNotProvisioned) {
		t.Fatalf("the failed destroy: %v", err)
	}
	if _, ok := s.Built(id); !ok {
		t.Fatal("a failed destroy forgot the storage")
	}
	// Commits are admitted again (the registry may go back to Managed).
	again, err := s.ApplyStorage(ctx, operator.DesiredStorage{Config: spec("made-by-berth")})
	if err != nil {
		t.Fatal(err)
	}
	leave, ok := again.Blobs.Writes.Enter()
	if !ok {
		t.Fatal("commits stay refused after a failed destroy")
	}
	leave()
	what, err := s.RemoveStorage(ctx, spec("made-by-berth"))
	if err != nil || !strings.Contains(what, "bucket deleted") {
		t.Fatalf("the retried destroy: %q, %v", what, err)
	}
	if len(drv.destroyed) != 2 || drv.destroyed[1] != "tok-made-by-berth" {
		t.Errorf("destroy was asked with %v", drv.destroyed)
	}
	if _, ok := s.Built(id); ok {
		t.Error("the destroyed storage is still built")
	}
	if _, err := meta.Setting(ctx, provisionedPrefix+id); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the token is still recorded: %v", err)
	}
}

// An older bucket that is gone is not made again, empty: its blobs answer
// 503 and Degraded says why, until it comes back.
func TestOlderS3BucketGone(t *testing.T) {
	gw := s3test.Start(t)
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	putStorageSecret(t, r.url, s3test.Credentials())
	patchConfig(t, r.url, fmt.Sprintf(`{"spec":{"storage":{"pvc":null,"managementState":"","s3":{"region":%q,"regionEndpoint":%q,"bucket":"older"}}}}`, s3test.Region, gw.Endpoint))
	waitApplied(t, r.url)
	layer := []byte("a layer left in the bucket")
	if resp := pushBlob(t, r.url, "gone/app", layer); resp.StatusCode != 201 {
		t.Fatalf("push to the bucket: %d", resp.StatusCode)
	}
	patchConfig(t, r.url, `{"spec":{"storage":{"s3":null,"managementState":"","pvc":{"claim":"after"}}}}`)
	expectMigrationPending(t, r.url, "s3 bucket older: 1 blobs")
	if code, body := pull(t, r.url, "gone/app", digest.FromBytes(layer)); code != 200 || string(body) != string(layer) {
		t.Fatalf("the layer from the older bucket: %d %q", code, body)
	}
	// Gone while the process runs: found at the next count (a switch
	// counts at once).
	if err := os.RemoveAll(filepath.Join(gw.Dir, "older")); err != nil {
		t.Fatal(err)
	}
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"after-again"}}}}`)
	c, _ := getConfig(t, r.url)
	if st, _, msg := c.condition("Degraded"); st != "True" || !strings.Contains(msg, "s3 bucket older holds 1 blobs and cannot be opened") {
		t.Errorf("Degraded with the bucket gone while running: %s %q", st, msg)
	}
	if code := status(t, "GET", r.url+"/v2/gone/app/blobs/"+digest.FromBytes(layer).String()); code != 503 {
		t.Errorf("a blob of the bucket gone while running: %d, want 503", code)
	}
	r.shutdown(t)
	r = start(t, Config{DataDir: dir})
	c, _ = getConfig(t, r.url)
	if st, _, msg := c.condition("Degraded"); st != "True" || !strings.Contains(msg, "s3 bucket older holds 1 blobs and cannot be opened") || !strings.Contains(msg, "does not exist") {
		t.Errorf("Degraded: %s %q, want the older bucket named as gone", st, msg)
	}
	if code := status(t, "GET", r.url+"/v2/gone/app/blobs/"+digest.FromBytes(layer).String()); code != 503 {
		t.Errorf("a blob of the gone bucket: %d, want 503", code)
	}
	if _, err := os.Stat(filepath.Join(gw.Dir, "older")); !os.IsNotExist(err) {
		t.Errorf("the gone bucket was made again: %v", err)
	}
}
