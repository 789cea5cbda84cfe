package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStorageMigrationFromS3 switches a registry whose image is in S3 to a
// volume, as a user leaving a cloud would: the image stays pullable from
// the bucket, status says what is left there, and berth adm
// migrate-storage moves it (with a progress bar) so that the bucket can
// go: with the S3 server stopped, the image still pulls.
func TestStorageMigrationFromS3(t *testing.T) {
	skopeo := requireTool(t, "skopeo")
	store := s3Store(t)
	s := startDevServer(t)
	bucket := useObjectStore(t, s, store, "")
	repo := "e2e/migrated"
	certs := s.CertDir()
	ce := newContainersEnv(t)
	layout, manifestDigest, layers := layeredImage(t, "v1", 12<<20)
	creds := devUser + ":" + devPassword
	ref := "docker://" + s.Addr + "/" + repo + ":v1"
	runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", creds, "oci:"+layout+":v1", ref)
	inBucket := store.blobCount(t, bucket)
	if inBucket < len(layers)+1 {
		t.Fatalf("%d blobs in the bucket after the push, want the %d layers and the config", inBucket, len(layers))
	}

	patchConfigE2E(t, s, `{"spec":{"storage":{"s3":null,"managementState":"","pvc":{"claim":"after-s3"}}}}`)
	pullBack := func(what string) {
		t.Helper()
		back := t.TempDir()
		runIn(t, "", ce.Env, skopeo, "--policy", ce.Policy, "copy", "--preserve-digests", "--src-cert-dir", certs, "--src-creds", creds, ref, "oci:"+back+":v1")
		if d := layoutManifestDigest(t, back); d != manifestDigest {
			t.Errorf("%s: pulled manifest %s, pushed %s", what, d, manifestDigest)
		}
		for _, l := range layers {
			if got := fileDigest(t, back+"/blobs/sha256/"+strings.TrimPrefix(l, "sha256:")); got != l {
				t.Errorf("%s: layer hashes to %s, want %s", what, got, l)
			}
		}
	}
	pullBack("after the switch, from the bucket")
	condition := func(typ string) (status, message string) {
		var cfg struct {
			Status struct {
				Conditions []struct{ Type, Status, Message string }
			}
		}
		_, b := s.apiCall("GET", configPath, nil)
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		for _, c := range cfg.Status.Conditions {
			if c.Type == typ {
				return c.Status, c.Message
			}
		}
		return "", ""
	}
	if st, msg := condition("StorageMigrationPending"); st != "True" || !strings.Contains(msg, "s3 bucket "+bucket) {
		t.Errorf("StorageMigrationPending after the switch: %s %q", st, msg)
	}

	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	if out := admin.run("", "adm", "migrate-storage", "--dry-run"); !strings.Contains(out, "s3 bucket "+bucket+": ") || !strings.Contains(out, "would move") {
		t.Errorf("dry run: %q", out)
	}
	if n := store.blobCount(t, bucket); n != inBucket {
		t.Errorf("a dry run took %d blobs from the bucket", inBucket-n)
	}
	out, progress, err := admin.try("", "adm", "migrate-storage")
	if err != nil {
		t.Fatalf("migrate-storage: %v\n%s\n%s", err, out, progress)
	}
	if !strings.Contains(out, "; emptied") || !strings.Contains(progress, "100% |") {
		t.Errorf("migrate-storage said:\n%s\nprogress:\n%s", out, progress)
	}
	if n := store.blobCount(t, bucket); n != 0 {
		t.Errorf("%d blobs left in the bucket after the migration", n)
	}
	if st, msg := condition("StorageMigrationPending"); st != "False" {
		t.Errorf("StorageMigrationPending after the migration: %s %q", st, msg)
	}
	// The bucket's server gone, the image is whole on the volume.
	store.stop()
	pullBack("after the migration, with S3 stopped")
}
