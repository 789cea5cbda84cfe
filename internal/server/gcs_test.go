package server

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/storage/gcs"
	"github.com/berth-registry/berth/internal/storage/gcs/gcstest"
)

// TestGCSStorageLive follows the reference's GCS procedure: the service
// account's key file goes in the user secret (REGISTRY_STORAGE_GCS_KEYFILE),
// spec.storage.gcs names a project and a region and no bucket; Berth
// names the bucket, creates it, reports it, serves pushes and pulls from
// it (redirected to V4-signed URLs unless disableRedirect), and removes it
// with the registry when it is Managed.
func TestGCSStorageLive(t *testing.T) {
	e := gcstest.Start(t)
	t.Setenv(gcstest.EmulatorHostVar, e.Host)
	r := start(t, Config{DataDir: t.TempDir()})
	keyFile, _ := gcstest.KeyFile(t)
	putStorageSecret(t, r.url, map[string]string{gcs.KeyFileKey: string(keyFile)})
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":null,"managementState":"","gcs":{"projectID":"berth-test","region":"us-central1"}}}}`)
	c := waitApplied(t, r.url)
	var full struct {
		Spec struct {
			Storage struct {
				ManagementState string `json:"managementState"`
				GCS             struct {
					Bucket string `json:"bucket"`
				} `json:"gcs"`
			} `json:"storage"`
		} `json:"spec"`
	}
	getJSON(t, r.url+configURL, &full)
	bucket := full.Spec.Storage.GCS.Bucket
	if !strings.HasPrefix(bucket, "berth-") || !strings.HasSuffix(bucket, "-image-registry-us-central1") {
		t.Fatalf("generated bucket %q", bucket)
	}
	if full.Spec.Storage.ManagementState != "Managed" {
		t.Errorf("a generated bucket's managementState is %q, want Managed", full.Spec.Storage.ManagementState)
	}
	if st, reason, msg := c.condition("StorageExists"); st != "True" || reason != "Creation Successful" || msg != "GCS bucket was successfully created" {
		t.Errorf("StorageExists = %s %s %q", st, reason, msg)
	}
	// The emulator keeps no public access prevention: the condition says
	// so rather than claiming it.
	if st, reason, _ := c.condition("StoragePublicAccessBlocked"); st != "False" || reason != "Not In Effect" {
		t.Errorf("StoragePublicAccessBlocked = %s %s", st, reason)
	}
	objectURL := func(name string) string {
		return e.Endpoint + "/storage/v1/b/" + bucket + "/o/" + url.PathEscape(name)
	}

	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("gcs layer "), 1<<20)
	for _, b := range [][]byte{config, layer} {
		if resp := pushBlob(t, r.url, "gcs/app", b); resp.StatusCode != 201 {
			t.Fatalf("push to GCS: %d", resp.StatusCode)
		}
	}
	if code := pushManifest(t, r.url, "gcs/app", "v1", config, layer); code != 201 {
		t.Fatalf("manifest: %d", code)
	}
	dgst := digest.FromBytes(layer)
	if resp, err := http.Get(objectURL("blobs/sha256/" + dgst.Encoded()[:2] + "/" + dgst.Encoded())); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the layer is not in the bucket: %v %v", resp, err)
	}

	// GETs redirect to V4-signed URLs of the bucket.
	servesFromBucket(t, r.url, "gcs/app", layer, func(loc string) bool {
		return strings.HasPrefix(loc, e.Endpoint+"/"+bucket+"/blobs/") && strings.Contains(loc, "X-Goog-Signature=")
	}, bucket)

	// /healthz follows the bucket.
	e.Stop()
	waitHealth(t, r.url, http.StatusServiceUnavailable)
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, r.url, http.StatusOK)

	// Removed: a Managed bucket goes with the registry.
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	resp, err := http.Get(e.Endpoint + "/storage/v1/b/" + bucket)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		c, _ := getConfig(t, r.url)
		t.Errorf("the Managed bucket is still there after Removed (%d); conditions %+v", resp.StatusCode, c.Status.Conditions)
	}
}
