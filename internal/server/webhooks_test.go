package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/webhook"
)

// receiver is a webhook endpoint that answers failing first.
type receiver struct {
	mu       sync.Mutex
	failures int // answered 503 before answering 200
	got      []delivery
}

type delivery struct {
	status    int
	event     map[string]any
	body      []byte
	signature string
	id, typ   string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev map[string]any
	_ = json.Unmarshal(body, &ev)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := delivery{status: 200, event: ev, body: body, signature: r.Header.Get("X-Berth-Signature"),
		id: r.Header.Get("X-Berth-Delivery"), typ: r.Header.Get("X-Berth-Event")}
	if rc.failures > 0 {
		rc.failures--
		d.status = http.StatusServiceUnavailable
	}
	rc.got = append(rc.got, d)
	w.WriteHeader(d.status)
}

// first returns the first delivery (of any status) of an event of type
// typ, waiting for it.
func (rc *receiver) wait(t *testing.T, typ string, status int) delivery {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		rc.mu.Lock()
		for _, d := range rc.got {
			if d.typ == typ && d.status == status {
				rc.mu.Unlock()
				return d
			}
		}
		rc.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s delivery answered %d", typ, status)
	return delivery{}
}

func apiDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A push is delivered to a project's webhook as a signed CloudEvent, at
// least once: an endpoint that fails first gets it on a retry. A tag
// change is a tag event; the webhook's status shows the deliveries.
func TestWebhooksDeliverEvents(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir()})
	rc := &receiver{failures: 1}
	hook := httptest.NewServer(rc)
	defer hook.Close()

	const hooks = "/apis/berth.io/v1/namespaces/hooked/webhooks"
	spec := `{"apiVersion":"berth.io/v1","kind":"Webhook","metadata":{"name":"ci"},
		"spec":{"url":"` + hook.URL + `/events?token=t0ken","events":["push","tag"],"secretRef":{"name":"hook-key","key":"key"}}}`
	if code, b := apiDo(t, "POST", r.url+"/apis/project.openshift.io/v1/projectrequests",
		`{"apiVersion":"project.openshift.io/v1","kind":"ProjectRequest","metadata":{"name":"hooked"}}`); code != 201 {
		t.Fatalf("project: %d %s", code, b)
	}
	// A loopback destination is refused until the cluster allows it.
	if code, b := apiDo(t, "POST", r.url+hooks, spec); code != 422 || !strings.Contains(string(b), "allowed destinations") {
		t.Fatalf("webhook to loopback before it is allowed: %d %s", code, b)
	}
	patchConfig(t, r.url, `{"spec":{"webhooks":{"allowedDestinations":["127.0.0.1"]}}}`)
	if code, b := apiDo(t, "POST", r.url+"/api/v1/namespaces/hooked/secrets",
		`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"hook-key"},"stringData":{"key":"s3cret"}}`); code != 201 {
		t.Fatalf("secret: %d %s", code, b)
	}
	if code, b := apiDo(t, "POST", r.url+hooks, spec); code != 201 {
		t.Fatalf("webhook: %d %s", code, b)
	}

	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), []byte("hooked layer")
	for _, b := range [][]byte{config, layer} {
		if resp := pushBlob(t, r.url, "hooked/app", b); resp.StatusCode != 201 {
			t.Fatalf("blob: %d", resp.StatusCode)
		}
	}
	if code := pushManifest(t, r.url, "hooked/app", "v1", config, layer); code != 201 {
		t.Fatalf("manifest: %d", code)
	}
	failed := rc.wait(t, webhook.TypeImagePushed, 503)
	ok := rc.wait(t, webhook.TypeImagePushed, 200)
	if failed.id != ok.id || ok.id == "" {
		t.Errorf("the retry has another ID: %q then %q", failed.id, ok.id)
	}
	if !webhook.Verify([]byte("s3cret"), ok.body, ok.signature) {
		t.Errorf("signature %q does not verify", ok.signature)
	}
	data, _ := ok.event["data"].(map[string]any)
	head, err := admin.Head(r.url + "/v2/hooked/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	pushed := head.Header.Get("Docker-Content-Digest")
	if ok.event["specversion"] != "1.0" || ok.event["subject"] != "hooked/app:v1" || data["digest"] != pushed ||
		data["actor"] != "admin" || data["mediaType"] != "application/vnd.oci.image.manifest.v1+json" || data["size"] == nil {
		t.Errorf("pushed event: %s", ok.body)
	}

	// A tag from the API is a tag event, with why.
	if code, b := apiDo(t, "PUT", r.url+"/apis/image.openshift.io/v1/namespaces/hooked/imagestreamtags/app:prod",
		`{"apiVersion":"image.openshift.io/v1","kind":"ImageStreamTag","metadata":{"name":"app:prod"},
		  "tag":{"from":{"kind":"ImageStreamImage","name":"app@`+pushed+`"}}}`); code != 200 {
		t.Fatalf("tag: %d %s", code, b)
	}
	tagged := rc.wait(t, webhook.TypeTagUpdated, 200)
	if d, _ := tagged.event["data"].(map[string]any); tagged.event["subject"] != "hooked/app:prod" || d["reason"] != "Tagged" || d["digest"] != pushed {
		t.Errorf("tag event: %s", tagged.body)
	}

	// The status tells the story: delivered, after a failure.
	waitUntil(t, func() bool {
		code, b := apiDo(t, "GET", r.url+hooks+"/ci", "")
		var w struct {
			Status struct {
				Deliveries []struct {
					ID, Result string
					Attempt    int
				}
				Pending int
			}
		}
		_ = json.Unmarshal(b, &w)
		for _, d := range w.Status.Deliveries {
			if d.ID == ok.id {
				return code == 200 && d.Result == "Delivered" && d.Attempt == 2 && w.Status.Pending == 0
			}
		}
		return false
	})
	if got := metricLine(t, r.url, `berth_webhook_deliveries_total{result="Retrying"}`); !strings.HasSuffix(got, " 1") {
		t.Errorf("retrying metric: %q", got)
	}
}

// An event names a host a receiver can use, not a wildcard address.
func TestEventHost(t *testing.T) {
	name, _ := os.Hostname()
	for in, want := range map[string]string{":5000": name + ":5000", "0.0.0.0:5000": name + ":5000", "[::]:5000": name + ":5000",
		"127.0.0.1:5000": "127.0.0.1:5000", "registry.example.com:443": "registry.example.com:443"} {
		if got := eventHost(in); got != want && name != "" {
			t.Errorf("eventHost(%q) = %q, want %q", in, got, want)
		}
	}
}
