package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/store/pgtest"
)

// Three instances share one PostgreSQL store and one data directory (a
// shared volume): a client cannot tell which one answered.
func TestScaleOut(t *testing.T) {
	dsn := pgtest.DSN(t)
	users := htpasswdUsers(t, map[string]string{conformanceUser: conformancePassword, "rev": "rev-Pa55word", "throttled": "throttled-Pa55"})
	dir := t.TempDir()
	var nodes []*server
	for range 3 {
		nodes = append(nodes, startServerIn(t, dir, "--insecure-http", "--store", dsn, "--htpasswd", users, "--job-lease", "2s"))
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.newProject("conformance")
	a.grant("conformance", "registry-editor", conformanceUser)
	a.newProject("team")

	t.Run("pods", func(t *testing.T) {
		// Every instance's heartbeat is counted, whichever answers.
		st, body := c.apiCall("GET", "/api/v1/namespaces/openshift-image-registry/pods", nil)
		var pods struct{ Items []json.RawMessage }
		if err := json.Unmarshal(body, &pods); st != http.StatusOK || err != nil || len(pods.Items) != 3 {
			t.Fatalf("pods on c = %d, %d items (%v): %s", st, len(pods.Items), err, body)
		}
	})

	t.Run("conformance", func(t *testing.T) {
		// Each request goes to the next instance.
		proxy := roundRobin(t, nodes)
		bin := buildConformance(t, t.TempDir())
		res := runConformance(t, bin, &server{t: t, Addr: proxy}, "1.1", false,
			"OCI_USERNAME="+conformanceUser, "OCI_PASSWORD="+conformancePassword)
		t.Log(res.summary("scale-out"))
		if res.exitCode != 0 || res.failures != 0 || res.errors != 0 {
			t.Errorf("conformance through three instances: exit %d, failures %d, errors %d\n%s",
				res.exitCode, res.failures, res.errors, describeCases(res.failedCases(), 10))
		}
		if res.passed < 500 {
			t.Errorf("only %d testcases passed", res.passed)
		}
	})

	t.Run("chunks", func(t *testing.T) {
		// A chunked upload started on a, continued on b, finished on c.
		data := make([]byte, 3<<20)
		rand.Read(data)
		loc := postUpload(t, a, "team/chunks")
		loc = patchChunk(t, b, loc, data[:1<<20], 0)
		loc = patchChunk(t, c, loc, data[1<<20:2<<20], 1<<20)
		dgst := sha256Digest(data)
		u := resolve(c, loc)
		q := u.Query()
		q.Set("digest", dgst)
		u.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodPut, u.String(), bytes.NewReader(data[2<<20:]))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := c.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("final PUT on c = %d %s", resp.StatusCode, body)
		}
		if got := getBlob(t, a, "team/chunks", dgst); !bytes.Equal(got, data) {
			t.Fatalf("a serves %d bytes, not the %d pushed through three instances", len(got), len(data))
		}
	})

	t.Run("watch", func(t *testing.T) {
		// A push on a is pulled from b and seen by a watch on c.
		events := watchStreams(t, c, "team")
		pushed := time.Now()
		dgst := pushTestImage(t, a, "team/app", "v1", "watch")
		select {
		case <-events:
			t.Logf("the watch on c saw the push on a %v after it was acknowledged", time.Since(pushed).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatal("the watch on c did not see the push on a")
		}
		if got := headDigest(t, b, "team/app", "v1"); got != dgst {
			t.Fatalf("b answers %s for team/app:v1, a pushed %s", got, dgst)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		// A token revoked on a fails on b at once: no wait in between.
		token := tokenFor(t, a, "rev", "rev-Pa55word")
		if code := registryStatus(t, b, token, "/v2/"); code != http.StatusOK {
			t.Fatalf("the token on b before revocation: %d", code)
		}
		revokeTokensOf(t, a, "rev", "rev-Pa55word")
		if code := registryStatus(t, b, token, "/v2/"); code != http.StatusUnauthorized {
			t.Fatalf("the token revoked on a, on b: %d, want 401", code)
		}
	})

	t.Run("watch-revoke", func(t *testing.T) {
		// A watch on b ends once a's change takes the watcher's access
		// away, not when its caches would have aged.
		a.grant("team", "registry-viewer", "rev")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/apis/image.openshift.io/v1/namespaces/team/imagestreams?watch=true", nil)
		resp, err := b.ClientAs("rev", "rev-Pa55word").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch as rev on b = %d", resp.StatusCode)
		}
		ended := make(chan string, 1)
		go func() {
			var last string
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				last = sc.Text()
			}
			ended <- last
		}()
		time.Sleep(200 * time.Millisecond) // the watch is under way
		if st, body := a.apiCall("DELETE", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/registry-viewer", nil); st != http.StatusOK {
			t.Fatalf("remove the binding on a: %d %s", st, body)
		}
		select {
		case last := <-ended:
			if !strings.Contains(last, "Forbidden") && !strings.Contains(last, "403") {
				t.Logf("the watch ended; its last line: %s", last)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the watch on b went on after a removed the watcher's binding")
		}
	})

	t.Run("throttle", func(t *testing.T) {
		// Failed logins spread over the instances lock the user out on
		// all of them, as on one (--login-attempts 5).
		status := func(n *server, password string) int {
			resp, err := n.ClientAs("throttled", password).Get(n.URL + "/v2/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for i := range 5 {
			if code := status(nodes[i%3], "wrong"); code != http.StatusUnauthorized {
				t.Fatalf("failed login %d: %d, want 401", i+1, code)
			}
		}
		for _, n := range nodes {
			if code := status(n, "throttled-Pa55"); code != http.StatusTooManyRequests {
				t.Fatalf("after five failures spread over three instances, %s answers the right password with %d, want 429", n.Addr, code)
			}
		}
	})

	t.Run("kill", func(t *testing.T) {
		// kill -9 the instance that runs the background jobs during a
		// bounded push loop: no acknowledged image is lost, and another
		// instance takes its leases over.
		holder := leaseHolder(t, nodes, "janitor")
		var alive []*server
		for _, n := range nodes {
			if n != holder {
				alive = append(alive, n)
			}
		}
		acked := map[string]string{}
		const pushes = 24
		for i := range pushes {
			if i == pushes/3 {
				holder.Kill()
			}
			tag := fmt.Sprintf("k%d", i)
			for try := 0; ; try++ {
				n := nodes[(i+try)%len(nodes)]
				dgst, err := tryPushTestImage(n, "team/loop", tag, tag)
				if err == nil {
					acked[tag] = dgst
					break
				}
				if try == len(nodes) {
					t.Fatalf("push %s failed on every instance: %v", tag, err)
				}
			}
		}
		if len(acked) != pushes {
			t.Fatalf("%d of %d pushes acknowledged", len(acked), pushes)
		}
		for _, n := range alive {
			for tag, dgst := range acked {
				if got := headDigest(t, n, "team/loop", tag); got != dgst {
					t.Fatalf("%s answers %s for acknowledged team/loop:%s, want %s", n.Addr, got, tag, dgst)
				}
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if now := leaseHolderAmong(t, alive, "janitor"); now != nil {
				t.Logf("%s took the janitor's lease over", now.Addr)
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no surviving instance took the janitor's lease over")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// roundRobin serves HTTP on a loopback port, sending each request to the
// next of nodes, and returns its address.
func roundRobin(t *testing.T, nodes []*server) string {
	t.Helper()
	var next atomic.Uint64
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		n := nodes[next.Add(1)%uint64(len(nodes))]
		u, _ := url.Parse(n.URL)
		r.SetURL(u)
		r.Out.Host = r.In.Host
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func resolve(s *server, loc string) *url.URL {
	u, err := url.Parse(loc)
	if err != nil {
		s.t.Fatal(err)
	}
	base, _ := url.Parse(s.URL)
	return base.ResolveReference(&url.URL{Path: u.Path, RawQuery: u.RawQuery})
}

func postUpload(t *testing.T, s *server, repo string) string {
	t.Helper()
	resp, err := s.Client().Post(s.URL+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload on %s = %d", s.Addr, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func patchChunk(t *testing.T, s *server, loc string, chunk []byte, offset int) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, resolve(s, loc).String(), bytes.NewReader(chunk))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+len(chunk)-1))
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH on %s = %d %s", s.Addr, resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

// pushTestImage pushes an image of one layer (seed's bytes) as repo:tag
// and returns its manifest digest.
func pushTestImage(t *testing.T, s *server, repo, tag, seed string) string {
	t.Helper()
	dgst, err := tryPushTestImage(s, repo, tag, seed)
	if err != nil {
		t.Fatal(err)
	}
	return dgst
}

func tryPushTestImage(s *server, repo, tag, seed string) (string, error) {
	c := s.Client()
	c.Timeout = 30 * time.Second
	config := []byte(`{"architecture":"amd64","os":"linux","seed":"` + seed + `"}`)
	layer := []byte("layer of " + seed)
	for _, blob := range [][]byte{config, layer} {
		resp, err := c.Post(s.URL+"/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(blob), "application/octet-stream", bytes.NewReader(blob))
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return "", &pushError{what: "blob push to " + s.Addr, status: resp.StatusCode}
		}
	}
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		sha256Digest(config), len(config), sha256Digest(layer), len(layer))
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", &pushError{what: "manifest push to " + s.Addr, status: resp.StatusCode}
	}
	return sha256Digest([]byte(manifest)), nil
}

// pushError is a push the registry refused.
type pushError struct {
	what   string
	status int
}

func (e *pushError) Error() string { return fmt.Sprintf("%s: %d", e.what, e.status) }

// watchStreams watches the image streams of project on s and returns a
// channel that receives once an event names a tag.
func watchStreams(t *testing.T, s *server, project string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/apis/image.openshift.io/v1/namespaces/"+project+"/imagestreams?watch=true", nil)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch on %s = %d", s.Addr, resp.StatusCode)
	}
	seen := make(chan struct{}, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"tag":"`) {
				select {
				case seen <- struct{}{}:
				default:
				}
			}
		}
	}()
	return seen
}

func tokenFor(t *testing.T, s *server, user, password string) string {
	t.Helper()
	st, _, body := getURL(t, s.ClientAs(user, password), s.URL+"/openshift/token", "")
	var ans struct{ Token string }
	if err := json.Unmarshal(body, &ans); err != nil || st != http.StatusOK {
		t.Fatalf("token for %s = %d %s", user, st, body)
	}
	return ans.Token
}

// revokeTokensOf deletes every token of user, as user, on s.
func revokeTokensOf(t *testing.T, s *server, user, password string) {
	t.Helper()
	const path = "/apis/oauth.openshift.io/v1/useroauthaccesstokens"
	c := s.ClientAs(user, password)
	st, _, body := getURL(t, c, s.URL+path, "")
	var list struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	if err := json.Unmarshal(body, &list); err != nil || st != http.StatusOK || len(list.Items) == 0 {
		t.Fatalf("list the tokens of %s = %d %s", user, st, body)
	}
	for _, it := range list.Items {
		req, _ := http.NewRequest(http.MethodDelete, s.URL+path+"/"+it.Metadata.Name, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("delete token %s = %d", it.Metadata.Name, resp.StatusCode)
		}
	}
}

var leaseHeld = regexp.MustCompile(`berth_job_lease_held\{lease="([^"]+)"\} 1`)

// leaseHolder is the one of nodes that runs job.
func leaseHolder(t *testing.T, nodes []*server, job string) *server {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h := leaseHolderAmong(t, nodes, job); h != nil {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("no instance holds the lease of %s", job)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func leaseHolderAmong(t *testing.T, nodes []*server, job string) *server {
	t.Helper()
	var holders []*server
	for _, n := range nodes {
		st, _, body := getURL(t, n.Client(), n.URL+"/extensions/v2/metrics", "")
		if st != http.StatusOK {
			t.Fatalf("metrics of %s = %d", n.Addr, st)
		}
		for _, m := range leaseHeld.FindAllStringSubmatch(string(body), -1) {
			if m[1] == job {
				holders = append(holders, n)
			}
		}
	}
	if len(holders) > 1 {
		t.Fatalf("%d instances hold the lease of %s at once", len(holders), job)
	}
	if len(holders) == 1 {
		return holders[0]
	}
	return nil
}

// An installation on SQLite moves to PostgreSQL with berth adm
// migrate-store, and serves the same images, users and tokens from there.
func TestMigrateStore(t *testing.T) {
	dsn := pgtest.DSN(t)
	old := startServer(t, "--insecure-http")
	old.newProject("team")
	dgst := pushTestImage(t, old, "team/app", "v1", "migrated")
	token := tokenFor(t, old, "admin", adminPassword)
	old.Stop()

	cli := newBerthCLI(t)
	out := cli.run("", "adm", "migrate-store", "--from", "sqlite:"+old.DataDir, "--to", dsn)
	t.Logf("berth adm migrate-store:\n%s", out)
	if !strings.Contains(out, "every count matches") || !strings.Contains(out, "tag_events") {
		t.Fatalf("migrate-store:\n%s", out)
	}
	if _, errOut, err := cli.try("", "adm", "migrate-store", "--from", "sqlite:"+old.DataDir, "--to", dsn); err == nil || !strings.Contains(errOut, "not empty") {
		t.Fatalf("a second copy into the same database: %v %s", err, errOut)
	}

	moved := startServerIn(t, old.DataDir, "--insecure-http", "--store", dsn)
	if got := headDigest(t, moved, "team/app", "v1"); got != dgst {
		t.Fatalf("team/app:v1 on PostgreSQL = %s, want %s", got, dgst)
	}
	if code := registryStatus(t, moved, token, "/v2/"); code != http.StatusOK {
		t.Fatalf("a token issued before the move: %d", code)
	}
	pushTestImage(t, moved, "team/app", "v2", "after the move")
}
