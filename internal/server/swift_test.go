package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/storage/swift/swifttest"
)

// TestSwiftStorageLive follows the reference's Swift procedure: the user
// and password go in the user secret, spec.storage.swift names the auth
// URL and no container; Berth names the container, creates it, reports
// it, serves pushes and pulls from it (redirected to temp URLs unless
// disableRedirect), and removes it with the registry when it is Managed.
func TestSwiftStorageLive(t *testing.T) {
	c := swifttest.Start(t)
	r := start(t, Config{DataDir: t.TempDir()})
	putStorageSecret(t, r.url, swifttest.Credentials())
	section, _ := json.Marshal(map[string]string{"authURL": c.AuthURL, "authVersion": "1"})
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":null,"managementState":"","swift":`+string(section)+`}}}`)
	cv := waitApplied(t, r.url)
	var full struct {
		Spec struct {
			Storage struct {
				ManagementState string `json:"managementState"`
				Swift           struct {
					Container string `json:"container"`
				} `json:"swift"`
			} `json:"storage"`
		} `json:"spec"`
	}
	getJSON(t, r.url+configURL, &full)
	name := full.Spec.Storage.Swift.Container
	if !strings.HasPrefix(name, "berth-") || !strings.HasSuffix(name, "-image-registry") {
		t.Fatalf("generated container %q", name)
	}
	if full.Spec.Storage.ManagementState != "Managed" {
		t.Errorf("a generated container's managementState is %q, want Managed", full.Spec.Storage.ManagementState)
	}
	if st, reason, _ := cv.condition("StorageExists"); st != "True" || reason != "Swift Container Created" {
		t.Errorf("StorageExists = %s %s", st, reason)
	}
	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("swift layer "), 1<<20)
	for _, b := range [][]byte{config, layer} {
		if resp := pushBlob(t, r.url, "swift/app", b); resp.StatusCode != 201 {
			t.Fatalf("push to Swift: %d", resp.StatusCode)
		}
	}
	if code := pushManifest(t, r.url, "swift/app", "v1", config, layer); code != 201 {
		t.Fatalf("manifest: %d", code)
	}
	// GETs redirect to temp URLs of the container.
	proxy := strings.TrimSuffix(c.AuthURL, "/auth/v1.0")
	servesFromBucket(t, r.url, "swift/app", layer, func(loc string) bool {
		return strings.HasPrefix(loc, proxy+"/v1/AUTH_test/"+name+"/blobs") && strings.Contains(loc, "temp_url_sig=")
	}, name)

	// /healthz follows the container.
	c.Stop()
	waitHealth(t, r.url, http.StatusServiceUnavailable)
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, r.url, http.StatusOK)

	// Removed: a Managed container goes with the registry.
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	cv, _ = getConfig(t, r.url)
	if st, reason, msg := cv.condition("StorageExists"); st != "False" || reason != "Storage Removed" || !strings.Contains(msg, "container deleted") {
		t.Errorf("StorageExists after Removed = %s %s %q", st, reason, msg)
	}
}
