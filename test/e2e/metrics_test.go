package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"sigs.k8s.io/yaml"
)

const metricsSecret = "e2e-metrics-secret-0123456789"

const metricsPath = "/extensions/v2/metrics"

// scrapeAs reads the metrics with an Authorization header ("" for none)
// and returns the status and the body.
func (s *server) scrapeAs(authorization string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.URL+metricsPath, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := s.AnonymousClient().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestMetricsReferenceProcedure runs "Accessing registry metrics" as the
// reference documents it, with berth for oc: the metrics query with curl
// and the secret, then the cluster role created from standard input,
// granted, and used with the user's token; and deleting the role takes
// the access away.
func TestMetricsReferenceProcedure(t *testing.T) {
	curl := requireTool(t, "curl")
	s := startServer(t, "--metrics-secret", metricsSecret, "--htpasswd", writeHtpasswd(t, map[string]string{"bob": "bob-Pa55"}))
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())
	bob := newBerthCLI(t)
	bob.run("", "login", s.URL, "-u", "bob", "-p", "bob-Pa55", "--certificate-authority", s.CAFile())
	token := strings.TrimSpace(bob.run("", "whoami", "-t"))

	// Metrics query, once the logins made some traffic: curl -u
	// <user>:<secret> … | grep imageregistry.
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "--cacert", s.CAFile(), "-s", "-f", "-u", "anyone:"+metricsSecret, s.URL+metricsPath).Output()
	if err != nil {
		t.Fatalf("curl -u anyone:SECRET: %v\n%s", err, out)
	}
	for _, want := range []string{"# TYPE imageregistry_build_info gauge", "# TYPE imageregistry_http_in_flight_requests gauge",
		"# TYPE imageregistry_http_request_duration_seconds summary", "imageregistry_build_info{gitCommit="} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the metrics lack %q", want)
		}
	}

	// Cluster role.
	if code, _ := s.scrapeAs("Bearer " + token); code != http.StatusForbidden {
		t.Fatalf("bob before the grant: %d, want 403", code)
	}
	role := `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: prometheus-scraper
rules:
- apiGroups:
  - image.openshift.io
  resources:
  - registry/metrics
  verbs:
  - get
`
	if _, errOut, err := bob.try(role, "create", "-f", "-"); err == nil || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("bob creates the role: %v\n%s", err, errOut)
	}
	if out := admin.run(role, "create", "-f", "-"); out != "clusterrole.rbac.authorization.k8s.io/prometheus-scraper created\n" {
		t.Fatalf("create -f -: %q", out)
	}
	if out := admin.run("", "adm", "policy", "add-cluster-role-to-user", "prometheus-scraper", "bob"); !strings.Contains(out, `added: "bob"`) {
		t.Fatalf("add-cluster-role-to-user: %q", out)
	}
	code, body := s.scrapeAs("Bearer " + token)
	if code != http.StatusOK || !strings.Contains(body, "imageregistry_http_requests_total") {
		t.Fatalf("bob with the role: %d\n%.500s", code, body)
	}
	admin.run("", "delete", "clusterrole", "prometheus-scraper")
	if code, _ := s.scrapeAs("Bearer " + token); code != http.StatusForbidden {
		t.Fatalf("bob once the role is deleted: %d, want 403", code)
	}
	if strings.Contains(s.logs.String(), metricsSecret) {
		t.Error("the server's log holds the metrics secret")
	}
}

// The dashboard and the alerting rules shipped in deploy/ name only
// metrics that Berth exports: each metric in an expr is looked up in a
// live scrape after some traffic (a push, a pull, a blob whose bytes went
// missing, for the storage errors).
func TestDeployedDashboardAndRulesUseExportedMetrics(t *testing.T) {
	s := startServer(t, "--metrics-secret", metricsSecret)
	c := s.Client()
	content := []byte("a layer for the metrics")
	d := digest.FromBytes(content)
	resp, err := c.Post(s.URL+"/v2/team/app/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	if err := os.Remove(filepath.Join(s.DataDir, "storage", "blobs", "sha256", d.Encoded()[:2], d.Encoded())); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Get(s.URL + "/v2/team/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, body := s.scrapeAs("Bearer " + metricsSecret)
	if code != http.StatusOK {
		t.Fatalf("scrape: %d", code)
	}
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`).FindAllStringSubmatch(body, -1) {
		exported[m[1]] = true
	}
	if !exported["imageregistry_storage_errors_total"] {
		t.Fatalf("the missing blob left no storage error:\n%s", body)
	}

	var used []string
	dashboard, err := os.ReadFile("../../deploy/grafana/berth.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(dashboard, &doc); err != nil {
		t.Fatalf("deploy/grafana/berth.json: %v", err)
	}
	exprs := collectExprs(doc)
	rules, err := os.ReadFile("../../deploy/prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ruleFile struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Record, Expr, For string
				Labels, Annotations      map[string]string
			}
		}
	}
	if err := yaml.UnmarshalStrict(rules, &ruleFile); err != nil {
		t.Fatalf("deploy/prometheus/rules.yaml: %v", err)
	}
	for _, g := range ruleFile.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d exprs found in the dashboard and the rules", len(exprs))
	}
	for _, e := range exprs {
		used = append(used, promQLMetrics(e)...)
	}
	for _, want := range []string{"imageregistry_http_requests_total", "berth_registry_bytes_pushed_total", "up"} {
		if !slices.Contains(used, want) {
			t.Errorf("the extraction missed %s (used: %v)", want, used)
		}
	}
	for _, name := range used {
		if scraperMade[name] {
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
				base = b
			}
		}
		if !exported[base] {
			t.Errorf("deploy/ uses %s, which Berth does not export", name)
		}
	}
}

// scraperMade are the series Prometheus itself records for a target.
var scraperMade = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}

// collectExprs returns every "expr" string in a Grafana dashboard.
func collectExprs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "expr" {
				out = append(out, s)
			} else {
				out = append(out, collectExprs(x)...)
			}
		}
	case []any:
		for _, x := range v {
			out = append(out, collectExprs(x)...)
		}
	}
	return out
}

var (
	// What in PromQL is not a metric name: strings, label matchers,
	// ranges and grouping clauses (label names), Grafana's variables.
	promQLNoise = []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`"),
		regexp.MustCompile(`\{[^}]*\}`),
		regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
		regexp.MustCompile(`\$\{?\w+\}?`),
	}
	promQLIdent = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(\s*\()?`)
	// promQLWords are the language's own words that stand without
	// parentheses after them.
	promQLWords = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
		"count_values": true, "bottomk": true, "topk": true, "quantile": true, "by": true, "without": true, "on": true,
		"ignoring": true, "group_left": true, "group_right": true, "bool": true, "and": true, "or": true, "unless": true,
		"offset": true, "atan2": true, "inf": true, "nan": true,
	}
)

// promQLMetrics lists the metric names a PromQL expression reads.
func promQLMetrics(expr string) []string {
	for _, re := range promQLNoise {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, m := range promQLIdent.FindAllStringSubmatch(expr, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m[0]), "("))
		if m[1] != "" || promQLWords[strings.ToLower(name)] {
			continue // a function, or a keyword
		}
		names = append(names, name)
	}
	return names
}

func TestPromQLMetrics(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="berth"} == 0`: {"up"},
		`sum by (instance, code) (rate(imageregistry_storage_errors_total{job="berth", code="x}"}[5m])) > 0`:                   {"imageregistry_storage_errors_total"},
		`histogram_quantile(0.99, sum by (le) (rate(berth_store_call_duration_seconds_bucket{job="$job"}[$__rate_interval])))`: {"berth_store_call_duration_seconds_bucket"},
		`a_total / on(instance) group_left(version) b_info offset 5m`:                                                          {"a_total", "b_info"},
	} {
		if got := promQLMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promQLMetrics(%s) = %v, want %v", expr, got, want)
		}
	}
}
