package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookReceiver records webhook deliveries; while down it answers 503.
type hookReceiver struct {
	mu   sync.Mutex
	down bool
	got  []hookDelivery
}

type hookDelivery struct {
	status int
	id     string // X-Berth-Delivery: the same on every attempt
	event  struct {
		Type string `json:"type"`
		Data struct {
			Digest string `json:"digest"`
			Reason string `json:"reason"`
			Tag    string `json:"tag"`
		} `json:"data"`
	}
}

func (rc *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d := hookDelivery{id: r.Header.Get("X-Berth-Delivery")}
	_ = json.Unmarshal(body, &d.event)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d.status = http.StatusOK
	if rc.down {
		d.status = http.StatusServiceUnavailable
	}
	rc.got = append(rc.got, d)
	w.WriteHeader(d.status)
}

func (rc *hookReceiver) setDown(down bool) {
	rc.mu.Lock()
	rc.down = down
	rc.mu.Unlock()
}

// deliveries are the deliveries so far that match.
func (rc *hookReceiver) deliveries(match func(hookDelivery) bool) []hookDelivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []hookDelivery
	for _, d := range rc.got {
		if match(d) {
			out = append(out, d)
		}
	}
	return out
}

func (rc *hookReceiver) String() string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var b strings.Builder
	for _, d := range rc.got {
		fmt.Fprintf(&b, "%d %s %s %s %s\n", d.status, d.id, d.event.Type, d.event.Data.Reason, d.event.Data.Digest)
	}
	return b.String()
}

// waitFor retries check every interval until it returns "" or d passes;
// then the test fails with check's last word.
func waitFor(t *testing.T, what string, d, interval time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		last := check()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, d, last)
		}
		time.Sleep(interval)
	}
}

// Scheduled import between two Berths on loopback: the downstream
// imports app:latest from the upstream's src/app:latest with
// --scheduled, trusting the upstream's CA through the seed's procedure
// and logging in with a dockerconfigjson secret. When the upstream tag
// moves, the downstream's scheduler (every 4 s here) imports the new
// image without being asked: the tag's history grows by one, a watch of
// the ImageStreamTags shows it, and a project webhook, down at first,
// gets the tag event (reason Imported) on a retry.
func TestScheduledImportBetweenBerths(t *testing.T) {
	crane := requireTool(t, "crane")
	up := startServer(t)
	up.newProject("src")
	dir := t.TempDir()
	craneEnv := []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker"), "SSL_CERT_FILE=" + up.CAFile()}
	runIn(t, dir, craneEnv, crane, "auth", "login", up.Addr, "-u", "admin", "-p", adminPassword)
	pushUpstream := func(content string) string {
		t.Helper()
		layer, _ := tarGz(t, "f.txt", []byte(content))
		if err := os.WriteFile(filepath.Join(dir, "l.tgz"), layer, 0o644); err != nil {
			t.Fatal(err)
		}
		out := runIn(t, dir, craneEnv, crane, "append", "-f", "l.tgz", "-t", up.Addr+"/src/app:latest")
		d := digestRE.FindString(out)
		if d == "" {
			t.Fatalf("crane append printed no digest: %q", out)
		}
		return d
	}
	first := pushUpstream("first\n")

	down := startServer(t, "--scheduled-import-interval=4s")
	admin := newBerthCLI(t)
	admin.run("", "login", down.URL, "-u", "admin", "-p", adminPassword, "--certificate-authority", down.CAFile())
	admin.run("", "new-project", "dst")
	allowLoopbackImports(t, admin)

	// The seed's procedure: the upstream's CA in a ConfigMap of
	// openshift-config under "host..port", named by the cluster image
	// config; the upstream's credentials in a pull secret.
	key := strings.ReplaceAll(up.Addr, ":", "..")
	admin.run("", "create", "configmap", "upstream-ca", "--from-file="+key+"="+up.CAFile(), "-n", "openshift-config")
	admin.run("", "patch", "image.config.openshift.io/cluster", "--type=merge", "-p", `{"spec":{"additionalTrustedCA":{"name":"upstream-ca"}}}`)
	admin.run("", "create", "secret", "docker-registry", "upstream", "--docker-server="+up.Addr,
		"--docker-username=admin", "--docker-password="+adminPassword)

	from := up.Addr + "/src/app:latest"
	if out := admin.run("", "import-image", "app:latest", "--from="+from, "--confirm", "--scheduled"); !strings.Contains(out, first) {
		t.Fatalf("import-image: %s", out)
	}
	if got := admin.run("", "get", "is", "app", "-o", `jsonpath={.spec.tags[?(@.name=="latest")].importPolicy.scheduled}`); got != "true" {
		t.Fatalf("the spec tag is not scheduled: importPolicy.scheduled = %q", got)
	}
	history := func() []string {
		return strings.Fields(admin.run("", "get", "is", "app", "-o",
			`jsonpath={range .status.tags[?(@.tag=="latest")].items[*]}{.image} {end}`))
	}
	if h := history(); len(h) != 1 || h[0] != first {
		t.Fatalf("after import-image, app:latest = %v, want [%s]", h, first)
	}

	// A webhook for tag events to a receiver on loopback, down at first.
	rc := &hookReceiver{down: true}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	admin.run("", "patch", configRef, "--type=merge", "-p", `{"spec":{"webhooks":{"allowedDestinations":["127.0.0.1"]}}}`)
	waitConfigApplied(t, admin) // the webhook is checked against the settings in effect
	admin.run("apiVersion: berth.io/v1\nkind: Webhook\nmetadata:\n  name: tags\nspec:\n  url: "+hook.URL+"/events\n  events: [tag]\n",
		"create", "-f", "-")

	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	watchOut := &lockedBuffer{}
	watch := admin.start(ctx, watchOut, "get", "istag", "-w")
	defer func() { cancel(); _ = watch.Wait() }()
	waitFor(t, "the watch lists app:latest", 15*time.Second, 100*time.Millisecond, func() string {
		if tableRow(watchOut.String(), "app:latest", up.Addr+"/src/app@"+first) {
			return ""
		}
		return watchOut.String()
	})

	// Upstream moves; nobody tells the downstream.
	second := pushUpstream("second\n")
	if second == first {
		t.Fatalf("the re-push has the first digest %s", first)
	}
	repushed := time.Now()
	waitFor(t, "the scheduled import of "+second, 30*time.Second, 250*time.Millisecond, func() string {
		if h := history(); len(h) != 2 || h[0] != second || h[1] != first {
			return fmt.Sprintf("app:latest history %v, want [%s %s]\n%s", h, second, first, down.Logs())
		}
		return ""
	})
	t.Logf("imported %v after the re-push", time.Since(repushed).Round(time.Millisecond))
	if got := admin.run("", "get", "istag", "app:latest", "-o", "jsonpath={.image.metadata.name}"); got != second {
		t.Fatalf("istag app:latest = %s, want %s", got, second)
	}
	if conds := admin.run("", "get", "is", "app", "-o", `jsonpath={.status.tags[?(@.tag=="latest")].conditions}`); conds != "" {
		t.Fatalf("the scheduled import left conditions: %s", conds)
	}
	waitFor(t, "the watch shows the new image", 10*time.Second, 100*time.Millisecond, func() string {
		if tableRow(watchOut.String(), "app:latest", up.Addr+"/src/app@"+second) {
			return ""
		}
		return watchOut.String()
	})

	// The webhook: refused while down (at least twice: retried), then
	// delivered, the same delivery.
	imported := func(d hookDelivery) bool {
		return d.event.Type == "io.berth.tag.updated" && d.event.Data.Reason == "Imported" &&
			d.event.Data.Digest == second && d.event.Data.Tag == "latest"
	}
	waitFor(t, "two refused deliveries of the import's tag event", 30*time.Second, 50*time.Millisecond, func() string {
		if failed := rc.deliveries(func(d hookDelivery) bool { return imported(d) && d.status == http.StatusServiceUnavailable }); len(failed) >= 2 {
			return ""
		}
		return "deliveries:\n" + rc.String()
	})
	rc.setDown(false)
	failedID := rc.deliveries(imported)[0].id
	waitFor(t, "the delivery once the receiver is up", 30*time.Second, 50*time.Millisecond, func() string {
		for _, d := range rc.deliveries(func(d hookDelivery) bool { return imported(d) && d.status == http.StatusOK }) {
			if d.id == failedID && d.id != "" {
				return ""
			}
		}
		return "deliveries:\n" + rc.String()
	})

	// Unchanged upstream: later passes add nothing (two more intervals).
	time.Sleep(9 * time.Second)
	if h := history(); len(h) != 2 {
		t.Fatalf("passes with an unchanged upstream added history: %v", h)
	}
}
