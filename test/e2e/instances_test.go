package e2e

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const registryNamespace = "openshift-image-registry"

// logfmtLine is a line of the server's log: the reference's shape, with
// instance.id last.
var logfmtLine = regexp.MustCompile(`^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ level=[a-z]+ msg=("[^"]*"|\S+).* instance\.id=[0-9a-f-]{36}$`)

// TestRegistryPodsAndLogs: a cluster administrator sees the instance as
// the registry's pod and reads its log with berth and with kubectl, as
// the reference's documentation does with oc; others may not.
func TestRegistryPodsAndLogs(t *testing.T) {
	s := startServer(t, "--htpasswd", writeHtpasswd(t, map[string]string{"bob": "bob-Pa55"}))
	if !regexp.MustCompile(`(?m)^time=\S+ level=info msg="listening on 127\.0\.0\.1:\d+" instance\.id=\S+$`).MatchString(s.Logs()) {
		t.Fatalf("no logfmt listening line on stderr:\n%s", s.Logs())
	}
	admin := newBerthCLI(t)
	admin.run("", "login", s.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", s.CAFile())

	pods := admin.run("", "get", "pods", "-n", registryNamespace)
	pod := admin.run("", "get", "pods", "-n", registryNamespace, "-o", "jsonpath={.items[0].metadata.name}")
	if got := tableHeader(pods); strings.Join(got, " ") != "NAME READY STATUS RESTARTS AGE" ||
		strings.Count(strings.TrimSpace(pods), "\n") != 1 || !tableRow(pods, pod, "1/1", "Running", "0") ||
		!regexp.MustCompile(`^image-registry-[a-z0-9]{10}-[a-z0-9]{5}$`).MatchString(pod) {
		t.Fatalf("berth get pods:\n%s", pods)
	}

	tail := admin.run("", "logs", "deployments/image-registry", "-n", registryNamespace, "--tail", "5")
	lines := strings.Split(strings.TrimSuffix(tail, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("--tail 5 gave %d lines:\n%s", len(lines), tail)
	}
	for _, l := range lines {
		if !logfmtLine.MatchString(l) {
			t.Errorf("log line %q is not logfmt with instance.id", l)
		}
	}
	// The last lines are this command's own requests; the start is there
	// in the whole log, read by the pod's name.
	all := admin.run("", "logs", pod, "-n", registryNamespace)
	if !strings.Contains(all, `msg="listening on `) || !strings.Contains(all, lines[0]) {
		t.Errorf("the whole log lacks the start or the tail:\n%s", all)
	}

	// -f shows what is logged after it started.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := &waitBuffer{}
	follow := admin.start(ctx, out, "logs", "-f", "deployments/image-registry", "-n", registryNamespace, "--tail", "1")
	out.waitFor(t, ctx, "instance.id=") // the tail line: the stream is open
	resp, err := s.Client().Get(s.URL + "/v2/follow-marker/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	out.waitFor(t, ctx, "path=/v2/follow-marker/app/tags/list")
	cancel()
	_ = follow.Wait()

	// Not a cluster administrator: Forbidden.
	bob := newBerthCLI(t)
	bob.run("", "login", s.URL, "-u", "bob", "-p", "bob-Pa55", "--certificate-authority", s.CAFile())
	for _, args := range [][]string{
		{"logs", "deployments/image-registry", "-n", registryNamespace},
		{"logs", pod, "-n", registryNamespace},
		{"get", "pods", "-n", registryNamespace},
	} {
		if _, errOut, err := bob.try("", args...); err == nil || !strings.Contains(errOut, "Forbidden") {
			t.Errorf("bob: berth %s: %v %s", strings.Join(args, " "), err, errOut)
		}
	}
	for _, secret := range []string{adminPassword, "bob-Pa55"} {
		if strings.Contains(all, secret) || strings.Contains(s.Logs(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// The real kubectl does the same.
func TestKubectlRegistryPodsAndLogs(t *testing.T) {
	s := startServer(t)
	kc := kubectlEnv(t, s, "1.33", oauthToken(t, s, "admin", adminPassword))
	pods, errOut, err := kc("get", "pods", "-n", registryNamespace)
	if err != nil || strings.Join(tableHeader(pods), " ") != "NAME READY STATUS RESTARTS AGE" ||
		!regexp.MustCompile(`(?m)^image-registry-\S+ +1/1 +Running +0 +\S+$`).MatchString(pods) {
		t.Fatalf("kubectl get pods: %v\n%s%s", err, pods, errOut)
	}
	deploy, errOut, err := kc("get", "deployments", "-n", registryNamespace)
	if err != nil || !tableRow(deploy, "image-registry", "1/1", "1", "1") {
		t.Errorf("kubectl get deployments: %v\n%s%s", err, deploy, errOut)
	}
	logs, errOut, err := kc("logs", "deployments/image-registry", "-n", registryNamespace, "--tail", "3", "--timestamps")
	lines := strings.Split(strings.TrimSuffix(logs, "\n"), "\n")
	if err != nil || len(lines) != 3 {
		t.Fatalf("kubectl logs: %v\n%s%s", err, logs, errOut)
	}
	for _, l := range lines {
		stamp, rest, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil || !logfmtLine.MatchString(rest) {
			t.Errorf("kubectl logs --timestamps line %q", l)
		}
	}
	all, _, err := kc("logs", "deployments/image-registry", "-n", registryNamespace)
	if err != nil || !strings.Contains(all, `msg="listening on `) {
		t.Errorf("kubectl logs: %v\n%s", err, all)
	}
}

// waitBuffer collects a background command's output and wakes waiters.
type waitBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (w *waitBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wrote != nil {
		close(w.wrote)
		w.wrote = nil
	}
	return w.b.Write(p)
}

// waitFor returns once the output holds s, failing the test when ctx ends
// first.
func (w *waitBuffer) waitFor(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for {
		w.mu.Lock()
		if strings.Contains(w.b.String(), s) {
			w.mu.Unlock()
			return
		}
		if w.wrote == nil {
			w.wrote = make(chan struct{})
		}
		wrote := w.wrote
		w.mu.Unlock()
		select {
		case <-wrote:
		case <-ctx.Done():
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no %q in the output:\n%s", s, w.b.String())
		}
	}
}
