package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/opencontainers/go-digest"
)

const configURL = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster"

// patchConfig merge-patches the registry Config as `berth patch --type
// merge` does and waits until the operator reports the new generation
// applied (status.observedGeneration), which it writes after the new
// settings are in effect.
func patchConfig(t *testing.T, url, patch string) {
	t.Helper()
	req, _ := http.NewRequest("PATCH", url+configURL, strings.NewReader(patch))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("patch %s: %d %s", patch, resp.StatusCode, body)
	}
	waitApplied(t, url)
}

type configView struct {
	Metadata struct {
		UID        string `json:"uid"`
		Generation int64  `json:"generation"`
	} `json:"metadata"`
	Status struct {
		ObservedGeneration int64 `json:"observedGeneration"`
		ReadyReplicas      int   `json:"readyReplicas"`
		Conditions         []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
	} `json:"status"`
}

func getConfig(t *testing.T, url string) (configView, int) {
	t.Helper()
	resp, err := admin.Get(url + configURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c configView
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatal(err)
		}
	}
	return c, resp.StatusCode
}

func waitApplied(t *testing.T, url string) configView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, code := getConfig(t, url)
		if code == 200 && c.Status.ObservedGeneration == c.Metadata.Generation {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator did not apply generation %d (observed %d)", c.Metadata.Generation, c.Status.ObservedGeneration)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c configView) condition(typ string) (status, reason, message string) {
	for _, cond := range c.Status.Conditions {
		if cond.Type == typ {
			return cond.Status, cond.Reason, cond.Message
		}
	}
	return "", "", ""
}

// registryError is the first error of a /v2 error body.
func registryError(t *testing.T, resp *http.Response) (code, message string) {
	t.Helper()
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not a registry error body (%d): %v", resp.StatusCode, err)
	}
	return body.Errors[0].Code, body.Errors[0].Message
}

// readOnly refuses pushes and deletes with 405 UNSUPPORTED while pulls
// work, and lifting it lets the same push through: no restart.
func TestReadOnlyLive(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	before := []byte("pushed before read-only")
	if resp := pushBlob(t, r.url, "ro/app", before); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	patchConfig(t, r.url, `{"spec":{"readOnly":true}}`)

	content := []byte("pushed while read-only")
	resp, err := admin.Post(r.url+"/v2/ro/app/blobs/uploads/?digest="+digest.FromBytes(content).String(), "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	if code, msg := registryError(t, resp); resp.StatusCode != 405 || code != "UNSUPPORTED" || !strings.Contains(msg, "read-only") {
		t.Errorf("push while read-only: %d %s %q", resp.StatusCode, code, msg)
	}
	resp.Body.Close()
	blob := r.url + "/v2/ro/app/blobs/" + digest.FromBytes(before).String()
	if c := status(t, "GET", blob); c != 200 {
		t.Errorf("pull while read-only: %d", c)
	}
	req, _ := http.NewRequest("DELETE", blob, nil)
	resp, err = admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("delete while read-only: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// An anonymous writer still learns that it must log in first.
	if resp, err := http.Post(r.url+"/v2/ro/app/blobs/uploads/", "", nil); err != nil || resp.StatusCode != 401 {
		t.Errorf("anonymous push while read-only: %v %v", resp.StatusCode, err)
	}

	if got := metricLine(t, r.url, "berth_registry_read_only"); got != "berth_registry_read_only 1" {
		t.Errorf("read-only gauge while read-only: %q", got)
	}

	patchConfig(t, r.url, `{"spec":{"readOnly":false}}`)
	if resp := pushBlob(t, r.url, "ro/app", content); resp.StatusCode != 201 {
		t.Errorf("push after read-only was lifted: %d", resp.StatusCode)
	}
}

// Write limits refuse a write beyond maxRunning with 429 TOOMANYREQUESTS
// while a write runs, and the limits change without a restart.
func TestLimitsLive(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	patchConfig(t, r.url, `{"spec":{"requests":{"write":{"maxRunning":1,"maxInQueue":0}}}}`)

	// A monolithic push whose body is still arriving holds the one slot.
	content := bytes.Repeat([]byte("x"), 1<<20)
	pr, pw := io.Pipe()
	held := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", r.url+"/v2/lim/app/blobs/uploads/?digest="+digest.FromBytes(content).String(), pr)
		req.ContentLength = int64(len(content))
		resp, err := admin.Do(req)
		if err != nil {
			t.Error(err)
		}
		held <- resp
	}()
	if _, err := pw.Write(content[:1024]); err != nil { // the handler is reading: the slot is taken
		t.Fatal(err)
	}
	resp, err := admin.Post(r.url+"/v2/lim/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, msg := registryError(t, resp); resp.StatusCode != 429 || code != "TOOMANYREQUESTS" || resp.Header.Get("Retry-After") != "1" ||
		!strings.Contains(msg, "write limit") || strings.Contains(msg, "maxRunning") {
		t.Errorf("a second write: %d %s %q Retry-After %q (want the limit named, not its values)", resp.StatusCode, code, msg, resp.Header.Get("Retry-After"))
	}
	resp.Body.Close()
	// The exemption of watches is not a parameter any request may carry,
	// nor a path an image may have.
	for _, u := range []string{"/v2/lim/app/blobs/uploads/?watch=true", "/v2/lim/app/blobs/uploads/?follow=true", "/v2/lim/watch/blobs/uploads/"} {
		if c := status(t, "POST", r.url+u); c != 429 {
			t.Errorf("POST %s while the write slot is taken: %d, want 429", u, c)
		}
	}
	req, _ := http.NewRequest("POST", r.url+"/api/v1/namespaces/default/configmaps?watch=true", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 429 {
		t.Errorf("an API write with watch=true while the write slot is taken: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	// Reads have their own pool.
	if c := status(t, "GET", r.url+"/v2/"); c != 200 {
		t.Errorf("a read beside the write: %d", c)
	}
	if _, err := pw.Write(content[1024:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if resp := <-held; resp == nil || resp.StatusCode != 201 {
		t.Fatalf("the held push: %v", resp)
	}
	if got := metricLine(t, r.url, `berth_limiter_rejected_requests_total{kind="write"}`); got != `berth_limiter_rejected_requests_total{kind="write"} 5` {
		t.Errorf("rejections counted: %q", got)
	}
	patchConfig(t, r.url, `{"spec":{"requests":{"write":{"maxRunning":0}}}}`)
	if c := status(t, "POST", r.url+"/v2/lim/app/blobs/uploads/"); c != 202 {
		t.Errorf("a write after the limit was lifted: %d", c)
	}
}

// Removed takes /v2 out of service with a clear 503 while the API stays;
// Managed brings the registry back with its data. With no storage the
// registry says so.
func TestRemovedAndStorageNotConfiguredLive(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	content := []byte("kept across Removed")
	if resp := pushBlob(t, r.url, "rm/app", content); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	blob := r.url + "/v2/rm/app/blobs/" + digest.FromBytes(content).String()
	unavailable := func(want string) {
		t.Helper()
		resp, err := admin.Get(blob)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if code, msg := registryError(t, resp); resp.StatusCode != 503 || code != "UNAVAILABLE" || !strings.Contains(msg, want) {
			t.Errorf("pull: %d %s %q, want 503 UNAVAILABLE with %q", resp.StatusCode, code, msg, want)
		}
	}
	// Storage the user provides (Unmanaged) is kept: back to Managed, the
	// registry returns with its data.
	patchConfig(t, r.url, `{"spec":{"storage":{"managementState":"Unmanaged"}}}`)
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	unavailable("the registry is removed")
	c, _ := getConfig(t, r.url)
	if st, reason, _ := c.condition("Removed"); st != "True" || reason != "Removed" {
		t.Errorf("Removed condition: %s %s", st, reason)
	}
	if st, reason, msg := c.condition("StorageExists"); st != "True" || reason != "Storage Kept" || !strings.Contains(msg, "Unmanaged") {
		t.Errorf("StorageExists while Removed with Unmanaged storage: %s %s %q", st, reason, msg)
	}
	patchConfig(t, r.url, `{"spec":{"managementState":"Managed"}}`)
	if code := status(t, "GET", blob); code != 200 {
		t.Errorf("pull after Managed again: %d", code)
	}
	patchConfig(t, r.url, `{"spec":{"storage":null}}`)
	unavailable("storage backend not configured")
	c, _ = getConfig(t, r.url)
	if st, reason, msg := c.condition("Available"); st != "False" || reason != "StorageNotConfigured" || msg != "storage backend not configured" {
		t.Errorf("Available: %s %s %q", st, reason, msg)
	}
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{}}}}`)
	if code := status(t, "GET", blob); code != 200 {
		t.Errorf("pull with storage back: %d", code)
	}
}

// A deleted Config is recreated at once with defaults.
func TestDeletedConfigIsRecreated(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	before := waitApplied(t, r.url)
	if c := status(t, "DELETE", r.url+configURL); c != 200 {
		t.Fatalf("delete: %d", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, code := getConfig(t, r.url)
		if code == 200 && c.Metadata.UID != before.Metadata.UID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Config was not recreated")
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := waitApplied(t, r.url)
	if st, _, _ := after.condition("Available"); st != "True" {
		t.Errorf("recreated Config not Available: %+v", after.Status)
	}
}

// metricLine is the line of the metrics that starts with name (a cluster
// administrator may read them).
func metricLine(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := admin.Get(url + "/extensions/v2/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d %s", resp.StatusCode, body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

// spec.replicas is the Deployment's desired count; more than one on local
// storage and SQLite is Degraded, saying why; readyReplicas counts the
// instances whose heartbeat says they serve.
func TestReplicasLive(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	patchConfig(t, r.url, `{"spec":{"replicas":3}}`)
	resp, err := admin.Get(r.url + "/apis/apps/v1/namespaces/openshift-image-registry/deployments/image-registry")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Spec   struct{ Replicas int }
		Status struct{ ReadyReplicas int }
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d.Spec.Replicas != 3 || d.Status.ReadyReplicas != 1 {
		t.Errorf("deployment: spec.replicas %d, readyReplicas %d; want 3 and 1", d.Spec.Replicas, d.Status.ReadyReplicas)
	}
	c, _ := getConfig(t, r.url)
	if st, _, msg := c.condition("Degraded"); st != "True" || !strings.Contains(msg, "spec.replicas is 3") {
		t.Errorf("Degraded: %s %q", st, msg)
	}
	if c.Status.ReadyReplicas != 1 {
		t.Errorf("status.readyReplicas = %d, want 1 (this instance's heartbeat)", c.Status.ReadyReplicas)
	}
	if st, reason, _ := c.condition("Progressing"); st != "False" || reason != "Error" {
		t.Errorf("Progressing: %s %s", st, reason)
	}
}

// Storage Berth provisioned (Managed) is removed with the registry, and
// status says exactly what went; back to Managed, a fresh one serves.
func TestRemovedRemovesManagedStorage(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	if got := metricLine(t, r.url, `image_registry_storage_type{storage="PVC"}`); got != `image_registry_storage_type{storage="PVC"} 1` {
		t.Errorf("storage type metric: %q", got)
	}
	content := []byte("removed with the registry")
	if resp := pushBlob(t, r.url, "gone/app", content); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	blobsDir := filepath.Join(dir, "storage")
	if _, err := os.Stat(blobsDir); err != nil {
		t.Fatalf("the default volume: %v", err)
	}
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	c, _ := getConfig(t, r.url)
	st, reason, msg := c.condition("StorageExists")
	if st != "False" || reason != "Storage Removed" || !strings.Contains(msg, blobsDir) || !strings.Contains(msg, "1 blobs") {
		t.Errorf("StorageExists after Removed: %s %s %q", st, reason, msg)
	}
	if _, err := os.Stat(blobsDir); !os.IsNotExist(err) {
		t.Errorf("the volume Berth provisioned is still there: %v", err)
	}
	patchConfig(t, r.url, `{"spec":{"managementState":"Managed"}}`)
	if code := status(t, "HEAD", r.url+"/v2/gone/app/blobs/"+digest.FromBytes(content).String()); code != 404 {
		t.Errorf("a blob of the removed storage: %d, want 404", code)
	}
	if resp := pushBlob(t, r.url, "gone/app", content); resp.StatusCode != 201 {
		t.Errorf("push to the fresh storage: %d", resp.StatusCode)
	}
	if code := status(t, "GET", r.url+"/v2/gone/app/blobs/"+digest.FromBytes(content).String()); code != 200 {
		t.Errorf("pull from the fresh storage: %d", code)
	}
}

// httpSecret signs upload session Locations: a new secret, patched live,
// ends the sessions signed with the old one, and new sessions work.
func TestHTTPSecretSignsUploadSessions(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	send := func(method, url string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	open := func() string {
		t.Helper()
		resp := send("POST", r.url+"/v2/hs/app/blobs/uploads/", nil)
		if resp.StatusCode != 202 || !strings.Contains(resp.Header.Get("Location"), "_state=") {
			t.Fatalf("start: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		return resp.Header.Get("Location")
	}
	old := open()
	if resp := send("PATCH", r.url+old, []byte("before")); resp.StatusCode != 202 {
		t.Fatalf("chunk: %d", resp.StatusCode)
	}
	patchConfig(t, r.url, `{"spec":{"httpSecret":"`+strings.Repeat("5e", 64)+`"}}`)
	resp := send("PATCH", r.url+old, []byte("after"))
	if code, msg := registryError(t, resp); resp.StatusCode != 404 || code != "BLOB_UPLOAD_UNKNOWN" || !strings.Contains(msg, "httpSecret") {
		t.Errorf("a session signed with the previous httpSecret: %d %s %q", resp.StatusCode, code, msg)
	}
	content := []byte("a session under the new secret")
	if resp := send("PUT", registrytest.WithDigest(r.url+open(), digest.FromBytes(content).String()), content); resp.StatusCode != 201 {
		t.Errorf("a new session: %d", resp.StatusCode)
	}
}

// A watch takes a read slot to start, like any read, and gives it back
// once it streams: under maxRunning 1 a watch leaves room for the next
// read, and a watch parameter on a GET that is no watch buys nothing.
func TestWatchesGiveBackTheirReadSlot(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	big := bytes.Repeat([]byte("w"), 32<<20)
	if resp := pushBlob(t, r.url, "wl/app", big); resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	patchConfig(t, r.url, `{"spec":{"requests":{"read":{"maxRunning":1,"maxInQueue":0}}}}`)
	running := func() string {
		return metricLine(t, r.url, `berth_limiter_running_requests{kind="read"}`)
	}

	watch, err := admin.Get(r.url + "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=20")
	if err != nil || watch.StatusCode != 200 {
		t.Fatalf("watch: %v %v", watch, err)
	}
	defer watch.Body.Close()
	// Once it has caught up, the watch holds no slot while it streams.
	waitUntil(t, func() bool { return running() == `berth_limiter_running_requests{kind="read"} 0` })
	if c := status(t, "GET", r.url+"/v2/"); c != 200 {
		t.Errorf("a read while a watch streams: %d, want 200 (the watch gave its slot back)", c)
	}

	// A blob GET whose client does not read holds the one slot.
	held, err := admin.Get(r.url + "/v2/wl/app/blobs/" + digest.FromBytes(big).String())
	if err != nil || held.StatusCode != 200 {
		t.Fatalf("blob GET: %v %v", held, err)
	}
	waitUntil(t, func() bool { return running() == `berth_limiter_running_requests{kind="read"} 1` })
	for _, u := range []string{
		"/apis/image.openshift.io/v1/namespaces/wl/imagestreams/app?watch=true",
		"/api/v1/namespaces/default/configmaps?watch=true",
		"/api/v1/namespaces/default/configmaps/x?watch=1",
	} {
		if c := status(t, "GET", r.url+u); c != 429 {
			t.Errorf("GET %s while the read slot is taken: %d, want 429", u, c)
		}
	}
	if c := status(t, "GET", r.url+"/healthz"); c != 200 {
		t.Errorf("health probe while the read slot is taken: %d", c)
	}
	held.Body.Close()
	waitUntil(t, func() bool { return running() == `berth_limiter_running_requests{kind="read"} 0` })
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Removed never removes a volume Berth did not make: a directory that was
// there before a claim named it (a mount point, the user's files) is
// kept though the spec carries managementState Managed from the volume
// before, and so is the blob store of an installation older than the
// operator, whose storage is completed as Unmanaged.
func TestRemovedKeepsVolumesBerthDidNotMake(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "volumes", "mine")
	if err := os.MkdirAll(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "README-important"), []byte("the user's"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, Config{DataDir: dir})
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"mine"}}}}`)
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	c, _ := getConfig(t, r.url)
	if st, reason, msg := c.condition("StorageExists"); st != "True" || reason != "Storage Kept" || !strings.Contains(msg, "existed before Berth used it") {
		t.Errorf("StorageExists after Removed: %s %s %q", st, reason, msg)
	}
	if _, err := os.Stat(filepath.Join(mine, "README-important")); err != nil {
		t.Errorf("the user's volume lost its file: %v", err)
	}
	r.shutdown(t)

	// An installation from before the operator: its blob store was there
	// before any Config, and is the user's.
	old := t.TempDir()
	if err := os.MkdirAll(filepath.Join(old, "storage", "blobs"), 0o700); err != nil {
		t.Fatal(err)
	}
	r = start(t, Config{DataDir: old})
	waitApplied(t, r.url)
	var spec struct {
		Spec struct {
			Storage struct{ ManagementState string } `json:"storage"`
		} `json:"spec"`
	}
	resp, err := admin.Get(r.url + configURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&spec); err != nil || spec.Spec.Storage.ManagementState != "Unmanaged" {
		t.Errorf("storage.managementState of a blob store older than the operator: %q, %v; want Unmanaged", spec.Spec.Storage.ManagementState, err)
	}
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	if _, err := os.Stat(filepath.Join(old, "storage", "blobs")); err != nil {
		t.Errorf("the old installation's blobs went: %v", err)
	}
}

// A watch from an old resourceVersion replays the history inside its read
// slot: a client that does not read the replay keeps the slot, and gives
// it back when it leaves.
func TestWatchReplayHoldsItsReadSlot(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	req, _ := http.NewRequest("POST", r.url+"/apis/project.openshift.io/v1/projectrequests", strings.NewReader(`{"metadata":{"name":"replay"}}`))
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create project: %v %v", resp, err)
	}
	value := strings.Repeat("v", 256<<10)
	for i := range 40 {
		body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm%d"},"data":{"k":%q}}`, i, value)
		req, _ := http.NewRequest("POST", r.url+"/api/v1/namespaces/replay/configmaps", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := admin.Do(req)
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("create configmap %d: %v %v", i, resp.StatusCode, err)
		}
		resp.Body.Close()
	}
	patchConfig(t, r.url, `{"spec":{"requests":{"read":{"maxRunning":1,"maxInQueue":0}}}}`)
	running := func() string {
		return metricLine(t, r.url, `berth_limiter_running_requests{kind="read"}`)
	}
	replay, err := admin.Get(r.url + "/api/v1/namespaces/replay/configmaps?watch=true&resourceVersion=1&timeoutSeconds=30")
	if err != nil || replay.StatusCode != 200 {
		t.Fatalf("watch: %v %v", replay, err)
	}
	waitUntil(t, func() bool { return running() == `berth_limiter_running_requests{kind="read"} 1` })
	if c := status(t, "GET", r.url+"/v2/"); c != 429 {
		t.Errorf("a read while a replay that is not read holds the slot: %d, want 429", c)
	}
	replay.Body.Close()
	waitUntil(t, func() bool { return running() == `berth_limiter_running_requests{kind="read"} 0` })
}

// A volume Berth made, removed by hand and replaced by a directory of the
// user's under the same claim, is the user's: Removed keeps it though the
// store still records the claim as provisioned and the spec says
// Managed (the marker in the directory Berth made is gone).
func TestRemovedKeepsAVolumeReplacedByHand(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{DataDir: dir})
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"vol"}}}}`)
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"other"}}}}`)
	vol := filepath.Join(dir, "volumes", "vol")
	if err := os.RemoveAll(vol); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(vol, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "precious"), []byte("the user's"), 0o600); err != nil {
		t.Fatal(err)
	}
	patchConfig(t, r.url, `{"spec":{"storage":{"pvc":{"claim":"vol"},"managementState":"Managed"}}}`)
	patchConfig(t, r.url, `{"spec":{"managementState":"Removed"}}`)
	c, _ := getConfig(t, r.url)
	if st, reason, msg := c.condition("StorageExists"); st != "True" || reason != "Storage Kept" {
		t.Errorf("StorageExists after Removed: %s %s %q", st, reason, msg)
	}
	if _, err := os.Stat(filepath.Join(vol, "precious")); err != nil {
		t.Errorf("the user's directory lost its file: %v", err)
	}
}

// spec.imageStreams.tagHistoryLimit applies live: the next change of a
// tag trims its history to it.
func TestTagHistoryLimitLive(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	patchConfig(t, r.url, `{"spec":{"imageStreams":{"tagHistoryLimit":2}}}`)
	layer := []byte("history layer")
	if resp := pushBlob(t, r.url, "hist/app", layer); resp.StatusCode != 201 {
		t.Fatalf("blob: %d", resp.StatusCode)
	}
	for i := range 4 {
		config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","n":%d}`, i))
		if resp := pushBlob(t, r.url, "hist/app", config); resp.StatusCode != 201 {
			t.Fatalf("config: %d", resp.StatusCode)
		}
		if code := pushManifest(t, r.url, "hist/app", "v1", config, layer); code != 201 {
			t.Fatalf("manifest: %d", code)
		}
	}
	resp, err := admin.Get(r.url + "/apis/image.openshift.io/v1/namespaces/hist/imagestreams/app")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var is struct {
		Status struct {
			Tags []struct{ Items []json.RawMessage }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&is); err != nil || len(is.Status.Tags) != 1 {
		t.Fatalf("stream: %v %+v", err, is)
	}
	if n := len(is.Status.Tags[0].Items); n != 2 {
		t.Fatalf("history has %d entries after 4 pushes with a limit of 2", n)
	}
}
