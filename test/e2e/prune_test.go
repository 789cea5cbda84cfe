package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// berth adm prune images as the reference's oc adm prune images: a dry
// run lists the history entries and images that would go, --confirm
// removes exactly those, the image stream's history shrinks to the kept
// revisions, pruned images stop resolving while the kept ones pull whole,
// and garbage collection then frees their blobs. Only a user with
// system:image-pruner everywhere may prune.
func TestPruneImages(t *testing.T) {
	s := startServer(t, "--gc-interval", "-1s", "--htpasswd", writeHtpasswd(t, map[string]string{"pat": "pat-Pa55"}))
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	c := s.Client()
	var v []gcImage
	for i := range 5 {
		img, err := pushLayers(c, s, "prune/app", "v", [][]byte{[]byte("prune base"), []byte(fmt.Sprint("revision ", i))})
		if err != nil {
			t.Fatal(err)
		}
		v = append(v, img)
	}
	untagged, err := pushLayers(c, s, "prune/app", "", [][]byte{[]byte("pushed by digest only")})
	if err != nil {
		t.Fatal(err)
	}

	// Everything is younger than the default 60m: nothing to do.
	if out := admin.run("", "adm", "prune", "images"); !strings.Contains(out, "Would remove 0 history entries and 0 images in 0 repositories") {
		t.Fatalf("prune within keep-younger-than:\n%s", out)
	}

	pat := newBerthCLI(t)
	pat.run("", "login", s.URL, "-u", "pat", "-p", "pat-Pa55", "--certificate-authority", s.CAFile())
	if _, errOut, err := pat.try("", "adm", "prune", "images", "--keep-younger-than=0s"); err == nil || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("a user without system:image-pruner pruned: %v %s", err, errOut)
	}
	admin.run("", "adm", "policy", "add-cluster-role-to-user", "system:image-pruner", "pat")

	args := []string{"adm", "prune", "images", "--keep-tag-revisions=2", "--keep-younger-than=0s"}
	dry := pat.run("", args...)
	for _, want := range []string{"Would remove 3 history entries and 4 images in 1 repositories", "This was a dry run",
		"v, revision 2", "v, revision 4", sha256Digest([]byte(untagged.manifest))} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run does not say %q:\n%s", want, dry)
		}
	}
	for _, old := range v[:3] {
		if !strings.Contains(dry, sha256Digest([]byte(old.manifest))) {
			t.Errorf("dry run does not list revision %s:\n%s", sha256Digest([]byte(old.manifest)), dry)
		}
	}
	confirmed := pat.run("", append(args, "--confirm")...)
	if !strings.Contains(confirmed, "Removed 3 history entries and 4 images in 1 repositories") {
		t.Fatalf("confirmed run:\n%s", confirmed)
	}
	if table(dry) != table(confirmed) {
		t.Errorf("the confirmed run removed other things than the dry run listed:\ndry run:\n%s\nconfirmed:\n%s", dry, confirmed)
	}

	// The stream's history of v holds the two kept revisions.
	st, _, body := getURL(t, c, s.URL+"/apis/image.openshift.io/v1/namespaces/prune/imagestreams/app", "application/json")
	if st != http.StatusOK {
		t.Fatalf("get imagestream = %d %s", st, body)
	}
	var stream struct {
		Status struct {
			Tags []struct {
				Tag   string `json:"tag"`
				Items []struct {
					Image string `json:"image"`
				} `json:"items"`
			} `json:"tags"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &stream); err != nil {
		t.Fatal(err)
	}
	var items []string
	for _, tag := range stream.Status.Tags {
		if tag.Tag == "v" {
			for _, it := range tag.Items {
				items = append(items, it.Image)
			}
		}
	}
	if want := []string{sha256Digest([]byte(v[4].manifest)), sha256Digest([]byte(v[3].manifest))}; fmt.Sprint(items) != fmt.Sprint(want) {
		t.Fatalf("history of v after pruning = %v, want %v", items, want)
	}
	for _, gone := range append(v[:3:3], untagged) {
		st, _, _ := getURL(t, c, s.URL+"/v2/prune/app/manifests/"+sha256Digest([]byte(gone.manifest)), "application/vnd.oci.image.manifest.v1+json")
		if st != http.StatusNotFound {
			t.Errorf("pruned image %s = %d, want 404", sha256Digest([]byte(gone.manifest)), st)
		}
	}
	pullExact(t, c, s, v[4])

	// Garbage collection frees the pruned images' own blobs (the three
	// revisions' layers, the untagged image's config and layer), not the
	// base layer or the config the revisions of v share.
	out := admin.run("", "adm", "gc", "--confirm", "--grace", "0s")
	if !strings.Contains(out, "Deleted 4 manifests and 5 blobs") {
		t.Fatalf("gc after pruning:\n%s", out)
	}
	for _, gone := range append(v[:3:3], untagged) {
		for d := range gone.blobs {
			if _, kept := v[4].blobs[d]; !kept && blobFileExists(t, s.DataDir, d) {
				t.Errorf("blob %s of a pruned image still on disk", d)
			}
		}
	}
	if !blobFileExists(t, s.DataDir, sha256Digest([]byte("prune base"))) {
		t.Error("the shared base layer was deleted")
	}
	pullExact(t, c, s, v[4])

	// The ImagePruner is there as the reference's operator makes it, and
	// refuses what Berth cannot honour.
	if out := admin.run("", "get", "imagepruner", "cluster"); !strings.Contains(out, "0 0 * * *") || !strings.Contains(out, "false") {
		t.Errorf("get imagepruner:\n%s", out)
	}
	if _, errOut, err := admin.try("", "patch", "imagepruner", "cluster", "--type=merge", "-p", `{"spec":{"nodeSelector":{"disk":"ssd"}}}`); err == nil ||
		!strings.Contains(errOut, "spec.nodeSelector: Forbidden") {
		t.Errorf("a nodeSelector was accepted: %v %s", err, errOut)
	}
	admin.run("", "patch", "imagepruner", "cluster", "--type=merge", "-p", `{"spec":{"schedule":"@hourly","suspend":true}}`)
	if out := admin.run("", "get", "imagepruner", "cluster", "-o", "yaml"); !strings.Contains(out, "Suspended") {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out, "Suspended") && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			out = admin.run("", "get", "imagepruner", "cluster", "-o", "yaml")
		}
		if !strings.Contains(out, "reason: Suspended") {
			t.Errorf("a suspended pruner's status:\n%s", out)
		}
	}
	kept := v[3]
	kept.tag = "" // by digest: the tag names v[4]
	pullExact(t, c, s, kept)
}

// table is the listing of a prune report: its lines up to the totals.
func table(out string) string {
	i := regexp.MustCompile(`(?m)^(Would remove|Removed) `).FindStringIndex(out)
	if i == nil {
		return out
	}
	return out[:i[0]]
}
