package e2e

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// gcImage is an image pushed over /v2: its manifest and blobs.
type gcImage struct {
	repo, tag string
	manifest  string
	blobs     map[string][]byte // by digest: config and layers
}

// pushLayers pushes an image of layers (monolithic blob uploads, then the
// manifest) under ref, a tag or "" for by digest. A blob the registry
// says it has is not sent again, as clients do; a manifest refused for a
// blob it no longer has (MANIFEST_BLOB_UNKNOWN: collected since the
// client's HEAD) is pushed again from the start, as clients retry.
func pushLayers(c *http.Client, s *server, repo, ref string, layers [][]byte) (gcImage, error) {
	img := gcImage{repo: repo, tag: ref, blobs: map[string][]byte{}}
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"ref":%q,"n":%d}`, repo+":"+ref, len(layers)))
	for attempt := 0; ; attempt++ {
		for _, b := range append([][]byte{config}, layers...) {
			d := sha256Digest(b)
			img.blobs[d] = b
			head, err := http.NewRequest(http.MethodHead, s.URL+"/v2/"+repo+"/blobs/"+d, nil)
			if err != nil {
				return img, err
			}
			resp, err := c.Do(head)
			if err != nil {
				return img, err
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				continue
			}
			resp, err = c.Post(s.URL+"/v2/"+repo+"/blobs/uploads/?digest="+d, "application/octet-stream", bytes.NewReader(b))
			if err != nil {
				return img, err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return img, fmt.Errorf("push blob %s to %s: %d %s", d, repo, resp.StatusCode, body)
			}
		}
		var descs []string
		for _, l := range layers {
			descs = append(descs, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, sha256Digest(l), len(l)))
		}
		img.manifest = fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
			sha256Digest(config), len(config), strings.Join(descs, ","))
		target := ref
		if target == "" {
			target = sha256Digest([]byte(img.manifest))
		}
		req, err := http.NewRequest(http.MethodPut, s.URL+"/v2/"+repo+"/manifests/"+target, strings.NewReader(img.manifest))
		if err != nil {
			return img, err
		}
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := c.Do(req)
		if err != nil {
			return img, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadRequest && bytes.Contains(body, []byte("MANIFEST_BLOB_UNKNOWN")) && attempt < 20 {
			continue
		}
		if resp.StatusCode != http.StatusCreated {
			return img, fmt.Errorf("push manifest %s:%s: %d %s", repo, ref, resp.StatusCode, body)
		}
		return img, nil
	}
}

// pullExact pulls img by its tag (or digest) and checks every byte.
func pullExact(t *testing.T, c *http.Client, s *server, img gcImage) {
	t.Helper()
	ref := img.tag
	if ref == "" {
		ref = sha256Digest([]byte(img.manifest))
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/v2/"+img.repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != img.manifest {
		t.Fatalf("pull %s:%s = %d, manifest %s; want %s", img.repo, ref, resp.StatusCode, got, img.manifest)
	}
	for d, want := range img.blobs {
		resp, err := c.Get(s.URL + "/v2/" + img.repo + "/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
			t.Fatalf("pull %s:%s blob %s = %d, %d bytes (want %d)", img.repo, ref, d, resp.StatusCode, len(b), len(want))
		}
	}
}

// blobFileExists says whether the filesystem storage under dir holds
// blob d.
func blobFileExists(t *testing.T, dir, d string) bool {
	t.Helper()
	hex := strings.TrimPrefix(d, "sha256:")
	found := false
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && e.Name() == hex && strings.Contains(path, string(filepath.Separator)+"blobs"+string(filepath.Separator)) {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// Garbage collection while the registry serves: background collections
// every second with a 2 s grace period, and berth adm gc --confirm runs,
// while writers push images sharing base layers, push and delete
// untagged images, and abandon uploads. Every acknowledged image pulls
// byte for byte throughout and after; what was deleted is gone from disk;
// and once the load stops, nothing unreferenced older than the grace
// period is left.
func TestGarbageCollectionUnderLoad(t *testing.T) {
	s := startServer(t, "--gc-interval", "1s", "--gc-grace", "2s")
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	c := s.Client()
	c.Timeout = 30 * time.Second

	// A dry run of an empty registry: nothing to do, said so.
	if out := admin.run("", "adm", "gc"); !strings.Contains(out, "Would delete 0 manifests and 0 blobs") || !strings.Contains(out, "dry run") {
		t.Fatalf("gc dry run on an empty registry:\n%s", out)
	}

	base := [][]byte{bytes.Repeat([]byte("base one "), 4000), bytes.Repeat([]byte("base two "), 3000), []byte("base three")}
	var mu sync.Mutex
	var kept, deleted []gcImage
	var abandoned []string
	const writers, rounds = 3, 16
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			repo := fmt.Sprintf("gc/app%d", w%2)
			for i := range rounds {
				layers := [][]byte{base[i%len(base)], []byte(fmt.Sprintf("writer %d round %d", w, i))}
				ref := fmt.Sprintf("w%d-r%d", w, i)
				untagged := i%3 == 2
				if untagged {
					ref = ""
				}
				img, err := pushLayers(c, s, repo, ref, layers)
				if err != nil {
					t.Errorf("push: %v", err)
					return
				}
				if untagged {
					req, _ := http.NewRequest(http.MethodDelete, s.URL+"/v2/"+repo+"/manifests/"+sha256Digest([]byte(img.manifest)), nil)
					resp, err := c.Do(req)
					if err != nil {
						t.Errorf("delete: %v", err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Errorf("delete %s: %d", repo, resp.StatusCode)
						return
					}
				}
				if i%4 == 3 {
					// An abandoned push: a layer no manifest ever names.
					b := []byte(fmt.Sprintf("abandoned by writer %d in round %d", w, i))
					resp, err := c.Post(s.URL+"/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(b), "application/octet-stream", bytes.NewReader(b))
					if err != nil {
						t.Errorf("upload: %v", err)
						return
					}
					resp.Body.Close()
					mu.Lock()
					abandoned = append(abandoned, sha256Digest(b))
					mu.Unlock()
				}
				mu.Lock()
				if untagged {
					deleted = append(deleted, img)
				} else {
					kept = append(kept, img)
				}
				mu.Unlock()
				if i%4 == 0 {
					// The images acknowledged so far pull whole meanwhile.
					mu.Lock()
					sample := kept[len(kept)/2]
					mu.Unlock()
					pullExact(t, c, s, sample)
				}
			}
		})
		if w == 0 {
			wg.Go(func() {
				for range 3 {
					time.Sleep(time.Second)
					if out, errOut, err := admin.try("", "adm", "gc", "--confirm", "-q"); err != nil {
						// Another run (the background one) is on: said so.
						if !strings.Contains(errOut, "already running") {
							t.Errorf("berth adm gc --confirm: %v\n%s\n%s", err, out, errOut)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, img := range kept {
		pullExact(t, c, s, img)
	}

	// Past the grace period, background collections take the rest: the
	// deleted images' own layers, the abandoned uploads.
	var gone []string
	for _, img := range deleted {
		for d := range img.blobs {
			shared := false
			for _, k := range kept {
				if _, ok := k.blobs[d]; ok {
					shared = true
				}
			}
			if !shared {
				gone = append(gone, d)
			}
		}
	}
	gone = append(gone, abandoned...)
	if len(gone) == 0 {
		t.Fatal("the load left nothing to collect")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		for _, d := range gone {
			if blobFileExists(t, s.DataDir, d) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d unreferenced blobs still on disk 30 s after the load", left, len(gone))
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, d := range abandoned {
		resp, err := c.Head(s.URL + "/v2/gc/app0/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("abandoned blob %s after collection: HEAD = %d", d, resp.StatusCode)
		}
	}
	for _, img := range kept {
		pullExact(t, c, s, img)
		for d := range img.blobs {
			if !blobFileExists(t, s.DataDir, d) {
				t.Errorf("blob %s of %s:%s not on disk", d, img.repo, img.tag)
			}
		}
	}
	// Nothing left: a dry run with no grace period finds nothing.
	out := admin.run("", "adm", "gc", "--grace", "0s")
	if !strings.Contains(out, "Would delete 0 manifests and 0 blobs") {
		t.Fatalf("after collection, a dry run still finds:\n%s", out)
	}

	// The metrics say what happened.
	metrics := scrape(t, s)
	for _, series := range []string{`berth_gc_runs_total{result="success"}`, `berth_gc_deleted_total{artifact="blob"}`,
		`berth_gc_deleted_total{artifact="manifest"}`, `berth_gc_storage_deleted_bytes_total`, `berth_gc_run_duration_seconds_count`} {
		if v := metricValue(metrics, series); v <= 0 {
			t.Errorf("%s = %v, want > 0", series, v)
		}
	}
	if v := metricValue(metrics, `berth_job_lease_held{lease="gc"}`); v != 1 {
		t.Errorf(`berth_job_lease_held{lease="gc"} = %v, want 1`, v)
	}
}

// A dry run lists each candidate with its bytes and reason; --confirm
// deletes exactly those; a viewer may not collect.
func TestGarbageCollectionDryRunThenConfirm(t *testing.T) {
	s := startServer(t, "--gc-interval", "-1s", "--htpasswd", writeHtpasswd(t, map[string]string{"vera": "vera-Pa55"}))
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	c := s.Client()
	kept, err := pushLayers(c, s, "dry/app", "v1", [][]byte{[]byte("shared layer"), []byte("kept layer")})
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := pushLayers(c, s, "dry/app", "", [][]byte{[]byte("shared layer"), []byte("doomed layer")})
	if err != nil {
		t.Fatal(err)
	}
	doomedDigest := sha256Digest([]byte(doomed.manifest))
	req, _ := http.NewRequest(http.MethodDelete, s.URL+"/v2/dry/app/manifests/"+doomedDigest, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Within the default grace period (a day) nothing goes.
	out := admin.run("", "adm", "gc")
	if !strings.Contains(out, "Would delete 0 manifests and 0 blobs") || !strings.Contains(out, "kept for now: 1 manifests and 0 blobs") {
		t.Fatalf("dry run within the grace period:\n%s", out)
	}
	out = admin.run("", "adm", "gc", "--grace", "0s")
	doomedLayer := sha256Digest([]byte("doomed layer"))
	var doomedConfig string
	for d := range doomed.blobs {
		if d != doomedLayer && d != sha256Digest([]byte("shared layer")) {
			doomedConfig = d
		}
	}
	for _, want := range []string{"Would delete 1 manifests and 2 blobs", doomedDigest, doomedLayer, doomedConfig,
		"no repository links it, no tag history names it", "only manifests collected in this run reference it", "This was a dry run"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, sha256Digest([]byte("shared layer"))) {
		t.Errorf("dry run lists the shared layer:\n%s", out)
	}
	if !blobFileExists(t, s.DataDir, doomedLayer) {
		t.Fatal("the dry run deleted a blob")
	}
	bytesLine := regexp.MustCompile(`freeing ([0-9.]+ [KMG]?i?B)`).FindStringSubmatch(out)
	if bytesLine == nil {
		t.Fatalf("dry run names no size:\n%s", out)
	}

	viewer := newBerthCLI(t)
	viewer.run("", "login", s.URL, "-u", "vera", "-p", "vera-Pa55", "--certificate-authority", s.CAFile())
	if _, errOut, err := viewer.try("", "adm", "gc", "--confirm", "--grace", "0s"); err == nil || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("a user without the role collected: %v %s", err, errOut)
	}

	out = admin.run("", "adm", "gc", "--confirm", "--grace", "0s")
	if !strings.Contains(out, "Deleted 1 manifests and 2 blobs, freeing "+bytesLine[1]) {
		t.Fatalf("confirmed run:\n%s", out)
	}
	if blobFileExists(t, s.DataDir, doomedLayer) || blobFileExists(t, s.DataDir, doomedConfig) {
		t.Fatal("a deleted blob is still on disk")
	}
	pullExact(t, c, s, kept)
	if _, errOut, err := admin.try("", "adm", "gc", "--confirm", "--dry-run"); err == nil || !strings.Contains(errOut, "contradict") {
		t.Fatalf("--confirm --dry-run: %v %s", err, errOut)
	}
}

// scrape reads s's metrics as the admin.
func scrape(t *testing.T, s *server) string {
	t.Helper()
	st, _, body := getURL(t, s.Client(), s.URL+metricsPath, "")
	if st != http.StatusOK {
		t.Fatalf("metrics = %d", st)
	}
	return string(body)
}

// metricValue is the value of one series in a scrape (-1 when absent).
func metricValue(scrape, series string) float64 {
	for _, line := range strings.Split(scrape, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}
