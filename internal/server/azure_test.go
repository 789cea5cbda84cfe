package server

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"

	"github.com/berth-registry/berth/internal/storage/azure/azuretest"
)

// TestAzureStorageLive follows the reference's Azure procedure: the
// account's key goes in the user secret, spec.storage.azure names the
// account and no container; Berth names the container, creates it,
// reports it, serves pushes and pulls from it (redirected to SAS URLs
// unless disableRedirect), and removes it with the registry when it is
// Managed.
func TestAzureStorageLive(t *testing.T) {
	e := azuretest.Start(t)
	t.Setenv(azuretest.ServiceURLVar, e.ServiceURL)
	r := start(t, Config{DataDir: t.TempDir()})
	putStorageSecret(t, r.url, azuretest.Credentials())
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":null,"managementState":"","azure":{"accountName":"`+azuretest.AccountName+`"}}}}`)
	c := waitApplied(t, r.url)
	var full struct {
		Spec struct {
			Storage struct {
				ManagementState string `json:"managementState"`
				Azure           struct {
					Container string `json:"container"`
				} `json:"azure"`
			} `json:"storage"`
		} `json:"spec"`
	}
	getJSON(t, r.url+configURL, &full)
	name := full.Spec.Storage.Azure.Container
	if !strings.HasPrefix(name, "berth-") || !strings.HasSuffix(name, "-image-registry") {
		t.Fatalf("generated container %q", name)
	}
	if full.Spec.Storage.ManagementState != "Managed" {
		t.Errorf("a generated container's managementState is %q, want Managed", full.Spec.Storage.ManagementState)
	}
	if st, reason, _ := c.condition("StorageExists"); st != "True" || reason != "ContainerExists" {
		t.Errorf("StorageExists = %s %s", st, reason)
	}
	if st, _, _ := c.condition("StoragePublicAccessBlocked"); st != "True" {
		t.Errorf("StoragePublicAccessBlocked = %s", st)
	}

	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), bytes.Repeat([]byte("azure layer "), 1<<20)
	for _, b := range [][]byte{config, layer} {
		if resp := pushBlob(t, r.url, "azure/app", b); resp.StatusCode != 201 {
			t.Fatalf("push to Azure: %d", resp.StatusCode)
		}
	}
	if code := pushManifest(t, r.url, "azure/app", "v1", config, layer); code != 201 {
		t.Fatalf("manifest: %d", code)
	}
	// GETs redirect to SAS URLs of the container.
	servesFromBucket(t, r.url, "azure/app", layer, func(loc string) bool {
		return strings.HasPrefix(loc, e.ServiceURL+"/"+name+"/blobs") && strings.Contains(loc, "sig=")
	}, name)

	// /healthz follows the container.
	e.Stop()
	waitHealth(t, r.url, http.StatusServiceUnavailable)
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, r.url, http.StatusOK)

	// Removed: a Managed container goes with the registry.
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	cred, err := azblob.NewSharedKeyCredential(azuretest.AccountName, azuretest.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(e.ServiceURL, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ServiceClient().NewContainerClient(name).GetProperties(context.Background(), nil); !bloberror.HasCode(err, bloberror.ContainerNotFound) {
		c, _ := getConfig(t, r.url)
		t.Errorf("the Managed container is still there after Removed (%v); conditions %+v", err, c.Status.Conditions)
	}
}
