package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conformanceTimeout bounds one run of the OCI conformance suite.
const conformanceTimeout = 5 * time.Minute

// conformanceAPIs and conformanceData are every OCI_API_* and OCI_DATA_*
// switch the suite reads; the runs below set them all explicitly.
var (
	conformanceAPIs = []string{
		"PING", "PULL", "PUSH",
		"BLOBS_ATOMIC", "BLOBS_DELETE", "BLOBS_DIGEST_HEADER", "BLOBS_MOUNT_ANONYMOUS", "BLOBS_UPLOAD_CANCEL",
		"MANIFESTS_ATOMIC", "MANIFESTS_DELETE", "MANIFESTS_DIGEST_HEADER", "MANIFESTS_TAG_PARAM",
		"TAGS_ATOMIC", "TAGS_DELETE", "TAGS_LIST",
		"REFERRER",
	}
	conformanceData = []string{
		"IMAGE", "INDEX", "INDEX_LIST", "SPARSE", "ARTIFACT", "SUBJECT", "SUBJECT_MISSING", "ARTIFACT_LIST",
		"SUBJECT_LIST", "DATA_FIELD", "NONDISTRIBUTABLE", "CUSTOM_FIELDS", "NO_LAYERS", "EMPTY_BLOB", "SHA512",
	}
)

// buildConformance builds the conformance suite (a `tool` in go.mod) into
// dir and returns the binary's path.
func buildConformance(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD = %q: not inside the module", gomod)
	}
	bin := filepath.Join(dir, "conformance")
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/opencontainers/distribution-spec/conformance")
	build.Dir = filepath.Dir(gomod)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build conformance: %v\n%s", err, b)
	}
	return bin
}

// conformanceRun is one run of the suite against a fresh server.
type conformanceRun struct {
	name    string
	server  []string // berth serve flags
	version string   // OCI_VERSION
	sparse  bool     // OCI_DATA_SPARSE
}

// conformanceResult is what one run of the suite produced.
type conformanceResult struct {
	exitCode       int
	stdout, stderr string
	report         *junitReport
	passed         int // testcases by status
	failed         int // status failure or error
	skipped        int
	other          int // any other status
	tests          int // assertion counts of the suite
	failures       int
	errors         int
}

// junitReport is the part of the suite's junit.xml the tests read.
type junitReport struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string `xml:"name,attr"`
	Tests      int    `xml:"tests,attr"`
	Failures   int    `xml:"failures,attr"`
	Errors     int    `xml:"errors,attr"`
	Skipped    int    `xml:"skipped,attr"`
	Properties []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"properties>property"`
	Testcases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string `xml:"name,attr"`
	Status    string `xml:"status,attr"`
	SystemOut string `xml:"system-out"`
	SystemErr string `xml:"system-err"`
}

func (s *junitSuite) property(name string) string {
	for _, p := range s.Properties {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// conformanceEnv is the environment of a run: the test's own, less any
// OCI_* or SSL_CERT_* variable, plus every switch of the suite.
func conformanceEnv(s *server, resultsDir, version string, sparse bool, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OCI_") || strings.HasPrefix(kv, "SSL_CERT_") {
			continue
		}
		env = append(env, kv)
	}
	tlsMode := "disabled"
	if s.TLS {
		// "insecure" would not skip verification, so trust the server's
		// CA instead: Go reads SSL_CERT_FILE on Linux.
		tlsMode = "enabled"
		env = append(env, "SSL_CERT_FILE="+s.CAFile())
	}
	env = append(env,
		"OCI_REGISTRY="+s.Addr,
		"OCI_TLS="+tlsMode,
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+resultsDir,
		"OCI_VERSION="+version,
		"OCI_LOG=warn",
	)
	for _, a := range conformanceAPIs {
		env = append(env, "OCI_API_"+a+"=true")
	}
	for _, d := range conformanceData {
		v := "true"
		if d == "SPARSE" && !sparse {
			v = "false"
		}
		env = append(env, "OCI_DATA_"+d+"="+v)
	}
	return append(env, extra...)
}

// runConformance runs the suite against s from a scratch directory and
// parses its junit.xml. A missing report fails the test: the suite exits
// 0 without one when its configuration is wrong.
func runConformance(t *testing.T, bin string, s *server, version string, sparse bool, extraEnv ...string) *conformanceResult {
	t.Helper()
	work := t.TempDir()
	resultsDir := filepath.Join(work, "results")
	ctx, cancel := context.WithTimeout(context.Background(), conformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = work
	cmd.Env = conformanceEnv(s, resultsDir, version, sparse, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := &conformanceResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.exitCode = exit.ExitCode()
	default:
		t.Fatalf("conformance: %v\nstderr:\n%s", err, tail(res.stderr, 4000))
	}
	if ctx.Err() != nil {
		t.Fatalf("conformance did not finish within %v\nstdout:\n%s\nstderr:\n%s", conformanceTimeout, tail(res.stdout, 4000), tail(res.stderr, 4000))
	}
	t.Logf("conformance ran in %v (exit %d)", time.Since(start).Round(time.Millisecond), res.exitCode)

	b, err := os.ReadFile(filepath.Join(resultsDir, "junit.xml"))
	if err != nil {
		t.Fatalf("conformance wrote no junit.xml (exit %d; a configuration error exits 0 without a report): %v\nstdout:\n%s\nstderr:\n%s",
			res.exitCode, err, tail(res.stdout, 4000), tail(res.stderr, 4000))
	}
	res.report = &junitReport{}
	if err := xml.Unmarshal(b, res.report); err != nil {
		t.Fatalf("parse junit.xml: %v", err)
	}
	if len(res.report.Suites) != 1 {
		t.Fatalf("junit.xml has %d test suites, want 1", len(res.report.Suites))
	}
	suite := &res.report.Suites[0]
	res.tests, res.failures, res.errors = suite.Tests, suite.Failures, suite.Errors
	for _, tc := range suite.Testcases {
		switch tc.Status {
		case "passed":
			res.passed++
		case "failure", "error":
			res.failed++
		case "skipped":
			res.skipped++
		default:
			res.other++
		}
	}
	return res
}

// summary is the one-line result printed for CI logs.
func (r *conformanceResult) summary(name string) string {
	return fmt.Sprintf("conformance %s: %d passed, %d failed, %d skipped (assertions: tests=%d failures=%d errors=%d)",
		name, r.passed, r.failed, r.skipped, r.tests, r.failures, r.errors)
}

// failedCases lists the testcases with status failure or error, with the
// start of what the suite recorded for each.
func (r *conformanceResult) failedCases() []junitCase {
	var out []junitCase
	for _, tc := range r.report.Suites[0].Testcases {
		if tc.Status == "failure" || tc.Status == "error" {
			out = append(out, tc)
		}
	}
	return out
}

func describeCases(cases []junitCase, limit int) string {
	var b strings.Builder
	for i, tc := range cases {
		if i == limit {
			fmt.Fprintf(&b, "... and %d more\n", len(cases)-limit)
			break
		}
		fmt.Fprintf(&b, "%s [%s]: %s\n", tc.Name, tc.Status, tail(strings.TrimSpace(tc.SystemOut), 600))
		if i < 3 {
			fmt.Fprintf(&b, "  HTTP log (end):\n%s\n", tail(tc.SystemErr, 2500))
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// countPrefix counts the testcases whose name starts with prefix and whose
// status is status.
func (r *conformanceResult) countPrefix(prefix, status string) int {
	n := 0
	for _, tc := range r.report.Suites[0].Testcases {
		if strings.HasPrefix(tc.Name, prefix) && tc.Status == status {
			n++
		}
	}
	return n
}

const sparsePrefix = "OCI Conformance Test/sparse/"

// The suite logs in as a registry-editor of the project its repositories
// are in, the least a full run needs (it deletes too).
const (
	conformanceUser     = "ci-editor"
	conformancePassword = "ci-editor-Pa55"
)

// conformanceServer starts berth with the suite's user and project.
func conformanceServer(t *testing.T, flags ...string) (*server, []string) {
	t.Helper()
	users := htpasswdUsers(t, map[string]string{conformanceUser: conformancePassword})
	s := startServer(t, append(flags, "--htpasswd", users)...)
	s.newProject("conformance")
	s.grant("conformance", "registry-editor", conformanceUser)
	return s, []string{"OCI_USERNAME=" + conformanceUser, "OCI_PASSWORD=" + conformancePassword}
}

func TestConformance(t *testing.T) {
	bin := buildConformance(t, t.TempDir())

	runs := []conformanceRun{
		{name: "tls-1.1", server: []string{"--allow-sparse-manifests"}, version: "1.1", sparse: true},
		{name: "http-1.1", server: []string{"--insecure-http", "--allow-sparse-manifests"}, version: "1.1", sparse: true},
		{name: "http-1.0", server: []string{"--insecure-http", "--allow-sparse-manifests"}, version: "1.0", sparse: true},
		// The default strict mode refuses sparse manifests by design, so
		// that data set is off; everything else must pass.
		{name: "strict-http-1.1", server: []string{"--insecure-http"}, version: "1.1", sparse: false},
	}
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			s, creds := conformanceServer(t, run.server...)
			res := runConformance(t, bin, s, run.version, run.sparse, creds...)
			line := res.summary(run.name)
			t.Log(line)
			reportConformance(t, line)

			suite := &res.report.Suites[0]
			cfg := suite.property("Config")
			wantTLS := "tls: disabled"
			if s.TLS {
				wantTLS = "tls: enabled"
			}
			for _, want := range []string{wantTLS, "registry: " + s.Addr, fmt.Sprintf("version: %q", run.version), fmt.Sprintf("sparse: %t", run.sparse)} {
				if !strings.Contains(cfg, want) {
					t.Errorf("the suite's Config lacks %q; it is:\n%s", want, cfg)
				}
			}
			if res.exitCode != 0 {
				t.Errorf("conformance exited %d, want 0\nstderr:\n%s", res.exitCode, tail(res.stderr, 4000))
			}
			if res.failures != 0 || res.errors != 0 {
				t.Errorf("junit.xml counts failures=%d errors=%d, want 0", res.failures, res.errors)
			}
			if cases := res.failedCases(); len(cases) > 0 {
				t.Errorf("%d testcases failed:\n%s", len(cases), describeCases(cases, 25))
			}
			if res.other != 0 {
				t.Errorf("%d testcases have a status other than passed/failure/error/skipped", res.other)
			}
			if res.passed <= 700 {
				t.Errorf("only %d testcases passed, want more than 700", res.passed)
			}
			// The switches took effect: sha512 and referrers ran, and the
			// sparse set ran exactly when it was on.
			for _, prefix := range []string{"OCI Conformance Test/sha512 blobs/", "OCI Conformance Test/sha512/", "OCI Conformance Test/artifacts-with-subject/referrers"} {
				if res.countPrefix(prefix, "passed") == 0 {
					t.Errorf("no passed testcase under %q", prefix)
				}
			}
			sparsePassed := res.countPrefix(sparsePrefix, "passed")
			if run.sparse && sparsePassed == 0 {
				t.Errorf("OCI_DATA_SPARSE=true but no sparse testcase passed")
			}
			if !run.sparse && sparsePassed != 0 {
				t.Errorf("OCI_DATA_SPARSE=false but %d sparse testcases ran", sparsePassed)
			}
		})
	}

	// The strict server must refuse the sparse data set, and only it. The
	// suite's own filter (OCI_FILTER_TEST="OCI Conformance Test/sparse")
	// cannot be used: with a filter it fails to write results.yaml
	// ("unknown status 0") and so writes no junit.xml. So run everything
	// with OCI_DATA_SPARSE=true and check that the failures are exactly
	// the refused sparse manifests and what follows from their absence.
	t.Run("strict-rejects-sparse", func(t *testing.T) {
		s, creds := conformanceServer(t, "--insecure-http")
		res := runConformance(t, bin, s, "1.1", true, creds...)
		line := res.summary("strict-rejects-sparse")
		t.Log(line)
		reportConformance(t, line)
		if res.exitCode != 1 {
			t.Errorf("conformance exited %d, want 1 (the sparse manifests must be refused)", res.exitCode)
		}
		cases := res.failedCases()
		if len(cases) == 0 || res.failures == 0 {
			t.Fatalf("the strict server accepted the sparse data set (failures=%d)", res.failures)
		}
		var refused int
		for _, tc := range cases {
			if !strings.HasPrefix(tc.Name, sparsePrefix) {
				t.Errorf("a non-sparse testcase failed on the strict server: %s [%s]: %s", tc.Name, tc.Status, tail(tc.SystemOut, 600))
				continue
			}
			if tc.Status != "failure" {
				t.Errorf("%s has status %s, want failure", tc.Name, tc.Status)
			}
			if strings.HasPrefix(tc.Name, sparsePrefix+"push/manifest-by-digest") &&
				strings.Contains(tc.SystemOut, "expected one of [201], received 400") {
				refused++
			}
		}
		if refused != 2 {
			t.Errorf("%d sparse manifest PUTs by digest were refused with 400, want 2 (sparse-image and sparse-index)\n%s", refused, describeCases(cases, 25))
		}
		// The registry's answers name what is missing.
		var sawBlob, sawManifest bool
		for _, tc := range cases {
			sawBlob = sawBlob || strings.Contains(tc.SystemErr, `"code":"MANIFEST_BLOB_UNKNOWN"`)
			sawManifest = sawManifest || strings.Contains(tc.SystemErr, `"code":"MANIFEST_UNKNOWN"`)
		}
		if !sawBlob || !sawManifest {
			t.Errorf("refusals: saw MANIFEST_BLOB_UNKNOWN=%t MANIFEST_UNKNOWN=%t, want both", sawBlob, sawManifest)
		}
		if res.passed <= 700 {
			t.Errorf("only %d testcases passed, want more than 700", res.passed)
		}
	})

	// Without credentials the registry refuses the suite: every push and
	// pull is answered 401 with the token challenge.
	t.Run("anonymous-refused", func(t *testing.T) {
		s, _ := conformanceServer(t, "--insecure-http")
		res := runConformance(t, bin, s, "1.1", false)
		line := res.summary("anonymous-refused")
		t.Log(line)
		reportConformance(t, line)
		if res.exitCode == 0 || res.failed == 0 {
			t.Fatalf("an anonymous run passed (exit %d, %d failed)", res.exitCode, res.failed)
		}
		for _, prefix := range []string{"OCI Conformance Test/push", "OCI Conformance Test/Push", "OCI Conformance Test/image"} {
			if n := res.countPrefix(prefix, "passed"); n != 0 {
				t.Errorf("%d testcases under %q passed anonymously", n, prefix)
			}
		}
		var saw401 bool
		for _, tc := range res.failedCases() {
			saw401 = saw401 || strings.Contains(tc.SystemErr, "401")
		}
		if !saw401 {
			t.Errorf("no refusal was a 401:\n%s", describeCases(res.failedCases(), 3))
		}
		if res.passed > 50 {
			t.Errorf("%d testcases passed anonymously, want next to none", res.passed)
		}
	})
}

// TestConformanceStrictSparseHTTP checks the strict-mode refusals directly:
// an image whose layer was never uploaded and an index whose child was
// never pushed are refused with the spec's codes, and the same documents
// are accepted by a server started with --allow-sparse-manifests.
func TestConformanceStrictSparseHTTP(t *testing.T) {
	type result struct {
		status int
		code   string
	}
	push := func(t *testing.T, s *server, repo string) (image, index result, imageDigest, indexDigest string) {
		t.Helper()
		c := s.Client()
		cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
		cfgDigest := uploadBlob(t, s, repo, cfg)
		missingLayer := sha256Digest([]byte("a layer that is never uploaded"))
		man := mustJSON(t, ociManifest{
			SchemaVersion: 2, MediaType: mtOCIManifest,
			Config: ociDescriptor{MediaType: mtOCIConfig, Digest: cfgDigest, Size: int64(len(cfg))},
			Layers: []ociDescriptor{{MediaType: mtOCILayerGz, Digest: missingLayer, Size: 30}},
		})
		imageDigest = sha256Digest(man)
		st, body := putManifest(t, c, s.URL+"/v2/"+repo+"/manifests/sparse-image", mtOCIManifest, man)
		image = result{st, errorCode(body)}

		// An index whose only child is a manifest nobody pushed.
		idx := mustJSON(t, ociIndex{SchemaVersion: 2, MediaType: mtOCIIndex, Manifests: []ociDescriptor{
			{MediaType: mtOCIManifest, Digest: sha256Digest([]byte("a manifest that is never pushed")), Size: 1024},
		}})
		indexDigest = sha256Digest(idx)
		st, body = putManifest(t, c, s.URL+"/v2/"+repo+"/manifests/"+indexDigest, mtOCIIndex, idx)
		index = result{st, errorCode(body)}
		return
	}

	t.Run("strict", func(t *testing.T) {
		s := startServer(t, "--insecure-http")
		image, index, imageDigest, indexDigest := push(t, s, "e2e/sparse")
		if image.status != http.StatusBadRequest || image.code != "MANIFEST_BLOB_UNKNOWN" {
			t.Errorf("PUT image with a missing layer = %d %q, want 400 MANIFEST_BLOB_UNKNOWN", image.status, image.code)
		}
		// The spec names no status for this; berth answers MANIFEST_UNKNOWN.
		if (index.status != http.StatusBadRequest && index.status != http.StatusNotFound) || index.code != "MANIFEST_UNKNOWN" {
			t.Errorf("PUT index with a missing child = %d %q, want 400 or 404 with MANIFEST_UNKNOWN", index.status, index.code)
		}
		t.Logf("strict refusals: image %d %s, index %d %s", image.status, image.code, index.status, index.code)
		for _, ref := range []string{"sparse-image", imageDigest, indexDigest} {
			if st, _, _ := getURL(t, s.Client(), s.URL+"/v2/e2e/sparse/manifests/"+ref, mtOCIManifest+", "+mtOCIIndex); st != http.StatusNotFound {
				t.Errorf("GET refused manifest %s = %d, want 404", ref, st)
			}
		}
	})
	t.Run("allow-sparse", func(t *testing.T) {
		s := startServer(t, "--insecure-http", "--allow-sparse-manifests")
		image, index, imageDigest, indexDigest := push(t, s, "e2e/sparse")
		if image.status != http.StatusCreated || index.status != http.StatusCreated {
			t.Fatalf("with --allow-sparse-manifests: PUT image = %d %q, PUT index = %d %q, want 201 and 201", image.status, image.code, index.status, index.code)
		}
		for _, ref := range []string{"sparse-image", imageDigest, indexDigest} {
			if st, _, _ := getURL(t, s.Client(), s.URL+"/v2/e2e/sparse/manifests/"+ref, mtOCIManifest+", "+mtOCIIndex); st != http.StatusOK {
				t.Errorf("GET sparse manifest %s = %d, want 200", ref, st)
			}
		}
	})
}

// uploadBlob pushes b to repo monolithically (POST then PUT) and returns
// its digest.
func uploadBlob(t testing.TB, s *server, repo string, b []byte) string {
	t.Helper()
	c := s.Client()
	d := sha256Digest(b)
	resp, err := c.Post(s.URL+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("POST blob upload = %d (Location %q), want 202", resp.StatusCode, loc)
	}
	if !strings.HasPrefix(loc, "http") {
		loc = s.URL + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(http.MethodPut, loc+sep+"digest="+d, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT blob = %d %s, want 201", resp.StatusCode, body)
	}
	return d
}

// putManifest PUTs a manifest and returns the status and body.
func putManifest(t testing.TB, c *http.Client, url, mediaType string, b []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body
}

// getURL GETs url with an optional Accept header and returns the status,
// headers and body.
func getURL(t testing.TB, c *http.Client, url, accept string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

// errorCode is the first error code of a spec error body, or "".
func errorCode(body []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// reportConformance prints a summary line and, when BERTH_CONFORMANCE_SUMMARY
// names a file, appends it there so CI can show it without -v.
func reportConformance(t *testing.T, line string) {
	t.Helper()
	fmt.Println(line)
	p := os.Getenv("BERTH_CONFORMANCE_SUMMARY")
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("write conformance summary: %v", err)
		return
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, line); err != nil {
		t.Errorf("write conformance summary: %v", err)
	}
}
