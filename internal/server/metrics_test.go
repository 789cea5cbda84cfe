package server

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/berth-registry/berth/internal/metrics"
)

const testMetricsSecret = "metrics-secret-for-the-test"

// scrape reads the metrics with authorization; the families come back
// when the answer is 200, nil otherwise.
func scrape(t *testing.T, url, authorization string) (int, http.Header, map[string]*dto.MetricFamily) {
	t.Helper()
	resp := get(t, url+metrics.Path, authorization)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		if bytes.Contains(body, []byte("imageregistry_")) {
			t.Errorf("a refused scrape (%d) shows metrics", resp.StatusCode)
		}
		return resp.StatusCode, resp.Header, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the metrics are not Prometheus' text format: %v\n%s", err, body)
	}
	return resp.StatusCode, resp.Header, families
}

// sample is a series' value (a counter's or gauge's, a summary's or
// histogram's count) by labels (name=value pairs); -1 when absent.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount())
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// The reference's two ways to the metrics, and everyone else refused.
func TestMetricsAccess(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), MetricsSecret: testMetricsSecret, LoginAttempts: 3,
		Htpasswd: htpasswdFile(t, map[string]string{"bob": "bob-pw"})})
	if s := status(t, "GET", r.url+"/v2/"); s != 200 { // a request ended: there is a series to see
		t.Fatalf("GET /v2/ = %d", s)
	}
	for _, c := range []struct {
		name, authorization string
		code                int
	}{
		{"secret as a Basic password", "Basic " + basic("anything", testMetricsSecret), 200},
		{"secret as a bearer token", "Bearer " + testMetricsSecret, 200},
		{"cluster administrator", "Basic " + basic("admin", testAdminPassword), 200},
		{"wrong secret", "Basic " + basic("anything", "not-the-metrics-secret"), 401},
		{"wrong bearer", "Bearer not-the-metrics-secret", 401},
		{"no credentials", "", 401},
		{"ordinary user", "Basic " + basic("bob", "bob-pw"), 403},
	} {
		code, hdr, families := scrape(t, r.url, c.authorization)
		if code != c.code {
			t.Errorf("%s: %d, want %d", c.name, code, c.code)
			continue
		}
		if code == 200 && sample(families, "imageregistry_http_requests_total") < 0 {
			t.Errorf("%s: no imageregistry_http_requests_total", c.name)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: challenge %q", c.name, hdr.Get("WWW-Authenticate"))
		}
	}
	// A ClusterRole an administrator created grants the metrics through
	// the server's own authorizer; deleting it takes them away.
	roles := r.url + "/apis/rbac.authorization.k8s.io/v1/clusterroles"
	for _, c := range []struct{ method, url, body string }{
		{"POST", roles, `{"metadata":{"name":"scraper"},"rules":[{"apiGroups":["image.openshift.io"],"resources":["registry/metrics"],"verbs":["get"]}]}`},
		{"POST", r.url + "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
			`{"metadata":{"name":"bob-scrapes"},"roleRef":{"kind":"ClusterRole","name":"scraper"},"subjects":[{"kind":"User","name":"bob"}]}`},
	} {
		resp, err := admin.Post(c.url, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s %s = %d", c.method, c.url, resp.StatusCode)
		}
	}
	if code, _, _ := scrape(t, r.url, "Basic "+basic("bob", "bob-pw")); code != 200 {
		t.Fatalf("bob granted the scraper role: %d", code)
	}
	if s := status(t, "DELETE", roles+"/scraper"); s != 200 {
		t.Fatalf("delete the role: %d", s)
	}
	if code, _, _ := scrape(t, r.url, "Basic "+basic("bob", "bob-pw")); code != 403 {
		t.Fatalf("bob once the role is deleted: %d", code)
	}

	// Other methods are not served.
	req, _ := http.NewRequest("POST", r.url+metrics.Path, nil)
	req.Header.Set("Authorization", "Bearer "+testMetricsSecret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST metrics: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The secret with a real user's name, more often than that user may
	// fail to log in, is never a failed login of theirs.
	for range 5 {
		if code, _, _ := scrape(t, r.url, "Basic "+basic("bob", testMetricsSecret)); code != 200 {
			t.Fatalf("secret with bob's name: %d", code)
		}
	}
	if code, _, _ := scrape(t, r.url, "Basic "+basic("bob", "bob-pw")); code != 403 {
		t.Fatalf("bob after scrapes with his name and the secret: %d, want 403 (not locked out)", code)
	}
	// A wrong secret is a wrong password of that name, as anywhere.
	for range 3 {
		scrape(t, r.url, "Basic "+basic("bob", "a-wrong-secret"))
	}
	if code, hdr, _ := scrape(t, r.url, "Basic "+basic("bob", "a-wrong-secret")); code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("guesses at the secret with bob's name: %d, want 429 with Retry-After", code)
	}

	waitForLine(t, r.logs, "request", metrics.Path)
	if !strings.Contains(r.logs.String(), `"user":"`+metrics.SecretUser+`"`) {
		t.Errorf("no access line names the metrics secret's user")
	}
	if strings.Contains(r.logs.String(), testMetricsSecret) {
		t.Errorf("the log holds the metrics secret")
	}
}

func TestMetricsSecretTooShort(t *testing.T) {
	err := Run(t.Context(), Config{DataDir: t.TempDir(), MetricsSecret: "short", Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("Run with a short metrics secret: %v", err)
	}
}

// Traffic moves the counters: a push and a pull show in the requests,
// the bytes, the storage and the store series.
func TestMetricsFollowTraffic(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), MetricsSecret: testMetricsSecret})
	auth := "Bearer " + testMetricsSecret
	_, _, before := scrape(t, r.url, auth)
	content := bytes.Repeat([]byte("layer bytes "), 1000)
	if resp := pushBlob(t, r.url, "p/app", content); resp.StatusCode != 201 {
		t.Fatalf("push = %d", resp.StatusCode)
	}
	blob := r.url + "/v2/p/app/blobs/" + digest.FromBytes(content).String()
	resp, err := admin.Get(blob)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, content) {
		t.Fatalf("pull = %d, %d bytes", resp.StatusCode, len(got))
	}
	if s := status(t, "GET", r.url+"/v2/p/app/blobs/"+digest.FromString("nothing").String()); s != 404 {
		t.Fatalf("missing blob = %d", s)
	}
	_, _, after := scrape(t, r.url, auth)
	moved := func(name string, by float64, labels ...string) {
		t.Helper()
		b, a := max(0, sample(before, name, labels...)), sample(after, name, labels...)
		if a-b < by {
			t.Errorf("%s%v went from %v to %v, want +%v at least", name, labels, b, a, by)
		}
	}
	moved("imageregistry_http_requests_total", 1, "code", "201", "method", "post")
	moved("imageregistry_http_requests_total", 1, "code", "200", "method", "get")
	moved("imageregistry_http_requests_total", 1, "code", "404", "method", "get")
	moved("berth_registry_bytes_pushed_total", float64(len(content)))
	moved("berth_registry_bytes_pulled_total", float64(len(content)))
	moved("imageregistry_http_request_duration_seconds", 3, "method", "get")
	for _, op := range []string{"Append", "Commit", "Open"} {
		moved("imageregistry_storage_duration_seconds", 1, "operation", "StorageDriver."+op)
	}
	moved("berth_store_call_duration_seconds", 1, "call", "LocateBlob")
	if v := sample(after, "imageregistry_http_in_flight_requests"); v != 1 {
		t.Errorf("in flight during a scrape = %v, want 1 (the scrape)", v)
	}
	if sample(after, "imageregistry_storage_errors_total") >= 0 {
		t.Errorf("storage errors after a clean push and pull: %v", after["imageregistry_storage_errors_total"])
	}
	for _, name := range []string{"imageregistry_build_info", "berth_registry_read_only", "go_goroutines", "process_cpu_seconds_total"} {
		if sample(after, name) < 0 {
			t.Errorf("no %s", name)
		}
	}
	for _, kind := range []string{"read", "write"} {
		if sample(after, "berth_limiter_rejected_requests_total", "kind", kind) != 0 {
			t.Errorf("no berth_limiter_rejected_requests_total{kind=%q} at 0", kind)
		}
	}
}
