package apiserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/apiserver"
	"github.com/berth-registry/berth/internal/apiserver/apiservertest"
	"github.com/berth-registry/berth/internal/logging"
	"github.com/berth-registry/berth/internal/store"
)

const (
	registryNS = "/api/v1/namespaces/openshift-image-registry"
	selfPod    = "image-registry-bbbbbbbbbb-self1"
	otherPod   = "image-registry-bbbbbbbbbb-othr2"
	deployment = "/apis/apps/v1/namespaces/openshift-image-registry/deployments/image-registry"
)

// instancesServer serves two instances' rows: this one (ready, its log in
// ring) and another that is not ready.
func instancesServer(t *testing.T, ring *logging.Ring, stopping <-chan struct{}) *apiservertest.Server {
	t.Helper()
	s := apiservertest.New(t, apiservertest.Options{
		Users: map[string]string{"bob": "bob-pw"}, PodName: selfPod, PodLogs: ring, Stopping: stopping,
	})
	ctx := context.Background()
	if err := apiserver.EnsureClusterObjects(ctx, s.Store, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Hour)
	for _, in := range []store.Instance{
		{ID: "11111111-1111-1111-1111-111111111111", Name: selfPod, Host: "host-a", Version: "v1", Listen: ":5000", Ready: true, Started: started},
		{ID: "22222222-2222-2222-2222-222222222222", Name: otherPod, Host: "host-b", Version: "v1", Listen: ":5001", Started: started.Add(time.Minute)},
	} {
		if err := s.Store.Heartbeat(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestPodsAndDeployment(t *testing.T) {
	s := instancesServer(t, nil, nil)
	admin := login(t, s, "admin", apiservertest.AdminPassword)

	list := admin.expect(200, "GET", registryNS+"/pods", nil)
	if got := list.names(); len(got) != 2 || got[0] != selfPod || got[1] != otherPod || list.str("kind") != "PodList" {
		t.Fatalf("pods: %s", list.raw)
	}
	pod := admin.expect(200, "GET", registryNS+"/pods/"+selfPod, nil)
	if pod.str("metadata", "uid") != "11111111-1111-1111-1111-111111111111" ||
		pod.body["metadata"].(map[string]any)["labels"].(map[string]any)["docker-registry"] != "default" ||
		pod.str("status", "phase") != "Running" || pod.str("spec", "nodeName") != "host-a" {
		t.Errorf("pod: %s", pod.raw)
	}
	cs := pod.body["status"].(map[string]any)["containerStatuses"].([]any)[0].(map[string]any)
	if cs["ready"] != true || cs["restartCount"] != float64(0) || cs["started"] != true || cs["name"] != "registry" {
		t.Errorf("container status: %v", cs)
	}
	// kubectl logs deployments/image-registry lists by the selector.
	if got := admin.expect(200, "GET", registryNS+"/pods?labelSelector=docker-registry%3Ddefault", nil).names(); len(got) != 2 {
		t.Errorf("by selector: %v", got)
	}
	if got := admin.expect(200, "GET", registryNS+"/pods?labelSelector=app%3Dother", nil).body["items"].([]any); len(got) != 0 {
		t.Errorf("by another selector: %v", got)
	}
	// The table kubectl get prints: NAME READY STATUS RESTARTS AGE.
	table := tableOf(t, admin, registryNS+"/pods")
	if len(table) != 2 || fmt.Sprint(table[0][:4]) != "["+selfPod+" 1/1 Running 0]" || fmt.Sprint(table[1][:4]) != "["+otherPod+" 0/1 Running 0]" {
		t.Errorf("table rows: %v", table)
	}

	// Elsewhere there are none; a missing pod is NotFound as Kubernetes says it.
	if got := admin.expect(200, "GET", "/api/v1/namespaces/default/pods", nil).body["items"].([]any); len(got) != 0 {
		t.Errorf("pods in default: %v", got)
	}
	if a := admin.expect(404, "GET", "/api/v1/namespaces/default/pods/"+selfPod, nil); a.str("message") != `pods "`+selfPod+`" not found` {
		t.Errorf("a pod elsewhere: %s", a.raw)
	}
	admin.expect(404, "GET", registryNS+"/pods/nope", nil)
	if got := admin.expect(200, "GET", "/api/v1/pods", nil).names(); len(got) != 2 {
		t.Errorf("pods of all namespaces: %v", got)
	}

	d := admin.expect(200, "GET", deployment, nil)
	spec, status := d.body["spec"].(map[string]any), d.body["status"].(map[string]any)
	if spec["replicas"] != float64(2) || status["replicas"] != float64(2) || status["readyReplicas"] != float64(1) ||
		status["availableReplicas"] != float64(1) || d.str("kind") != "Deployment" || d.str("apiVersion") != "apps/v1" {
		t.Errorf("deployment: %s", d.raw)
	}
	if sel := spec["selector"].(map[string]any)["matchLabels"].(map[string]any); len(sel) != 1 || sel["docker-registry"] != "default" {
		t.Errorf("selector: %v", sel)
	}
	if got := admin.expect(200, "GET", "/apis/apps/v1/namespaces/openshift-image-registry/deployments", nil).names(); len(got) != 1 || got[0] != "image-registry" {
		t.Errorf("deployments: %v", got)
	}
	admin.expect(404, "GET", "/apis/apps/v1/namespaces/default/deployments/image-registry", nil)
	admin.expect(404, "GET", "/apis/apps/v1/namespaces/openshift-image-registry/deployments/other", nil)

	// Discovery names both, so kubectl resolves deployments/image-registry.
	core := admin.expect(200, "GET", "/api/v1", nil)
	apps := admin.expect(200, "GET", "/apis/apps/v1", nil)
	if !strings.Contains(string(core.raw), `"name":"pods/log"`) || !strings.Contains(string(apps.raw), `"name":"deployments"`) {
		t.Errorf("discovery:\n%s\n%s", core.raw, apps.raw)
	}

	// System projects are the cluster administrators'.
	bob := login(t, s, "bob", "bob-pw")
	bob.expect(403, "GET", registryNS+"/pods", nil)
	bob.expect(403, "GET", registryNS+"/pods/"+selfPod, nil)
	bob.expect(403, "GET", deployment, nil)
	bob.expect(403, "GET", registryNS+"/pods/"+selfPod+"/log", nil)
	anon := client{t: t, base: s.URL}
	anon.expect(401, "GET", registryNS+"/pods", nil)
	anon.expect(401, "GET", registryNS+"/pods/"+selfPod+"/log", nil)
}

// tableOf returns the cells of the Table kubectl get asks for.
func tableOf(t *testing.T, c client, path string) [][]any {
	t.Helper()
	req, _ := http.NewRequest("GET", c.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	a := send(t, req)
	if a.code != 200 || a.str("kind") != "Table" {
		t.Fatalf("table of %s: %d %s", path, a.code, a.raw)
	}
	var out [][]any
	for _, row := range a.body["rows"].([]any) {
		out = append(out, row.(map[string]any)["cells"].([]any))
	}
	return out
}

func TestPodLog(t *testing.T) {
	ring := logging.NewRing(1<<20, 1000)
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(ring, "line %d\n", i)
	}
	s := instancesServer(t, ring, nil)
	admin := login(t, s, "admin", apiservertest.AdminPassword)
	logPath := registryNS + "/pods/" + selfPod + "/log"
	text := func(query string) string {
		t.Helper()
		a := admin.expect(200, "GET", logPath+query, nil)
		if ct := a.hdr.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type %q", ct)
		}
		return string(a.raw)
	}
	if got := text(""); !strings.HasPrefix(got, "line 1\nline 2\n") || !strings.HasSuffix(got, "line 20\n") || strings.Count(got, "\n") != 20 {
		t.Errorf("the whole log: %q", got)
	}
	if got := text("?tailLines=5"); got != "line 16\nline 17\nline 18\nline 19\nline 20\n" {
		t.Errorf("tailLines=5: %q", got)
	}
	if got := text("?tailLines=0"); got != "" {
		t.Errorf("tailLines=0: %q", got)
	}
	if got := text("?tailLines=2&limitBytes=10"); got != "line 19\nli" {
		t.Errorf("limitBytes=10: %q", got)
	}
	stamped := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line 20\n$`)
	if got := text("?tailLines=1&timestamps=true"); !stamped.MatchString(got) {
		t.Errorf("timestamps: %q", got)
	}
	if got := text("?sinceSeconds=3600&tailLines=1"); got != "line 20\n" {
		t.Errorf("sinceSeconds: %q", got)
	}
	if got := text("?sinceTime=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); got != "" {
		t.Errorf("sinceTime in the future: %q", got)
	}
	if got := text("?container=registry&tailLines=1"); got != "line 20\n" {
		t.Errorf("container=registry: %q", got)
	}
	admin.expect(400, "GET", logPath+"?container=sidecar", nil)
	admin.expect(400, "GET", logPath+"?previous=true", nil)
	admin.expect(422, "GET", logPath+"?tailLines=-1", nil)
	admin.expect(422, "GET", logPath+"?limitBytes=0", nil)
	admin.expect(422, "GET", logPath+"?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", nil)
	// Another instance keeps its own log; a missing pod has none.
	if a := admin.expect(404, "GET", registryNS+"/pods/"+otherPod+"/log", nil); !strings.Contains(a.str("message"), ":5001 on host-b") {
		t.Errorf("another instance's log: %s", a.raw)
	}
	admin.expect(404, "GET", registryNS+"/pods/nope/log", nil)
	admin.expect(404, "GET", "/api/v1/namespaces/default/pods/"+selfPod+"/log", nil)
}

// follow=true streams lines as they are logged, until the client leaves
// or the server stops.
func TestPodLogFollow(t *testing.T) {
	ring := logging.NewRing(1<<20, 1000)
	fmt.Fprintln(ring, "before")
	stopping := make(chan struct{})
	s := instancesServer(t, ring, stopping)
	admin := login(t, s, "admin", apiservertest.AdminPassword)

	follow := func(ctx context.Context) (*bufio.Reader, io.Closer) {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+registryNS+"/pods/"+selfPod+"/log?follow=true&tailLines=1", nil)
		req.Header.Set("Authorization", "Bearer "+admin.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("follow: %d", resp.StatusCode)
		}
		return bufio.NewReader(resp.Body), resp.Body
	}
	readLine := func(r *bufio.Reader) string {
		t.Helper()
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read the followed log: %v (got %q)", err, line)
		}
		return line
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, body := follow(ctx)
	defer body.Close()
	if got := readLine(r); got != "before\n" {
		t.Fatalf("first line %q", got)
	}
	for i := range 3 {
		fmt.Fprintf(ring, "after %d\n", i)
		if got := readLine(r); got != fmt.Sprintf("after %d\n", i) {
			t.Fatalf("followed line %q", got)
		}
	}
	// The server stops: the stream ends.
	close(stopping)
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the stop: %q, %v", rest, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the stream outlived the stop only to the deadline")
	}
}
