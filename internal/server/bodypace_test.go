package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/registry/registrytest"
	"github.com/opencontainers/go-digest"
)

// rawRequest writes head to a new connection to the server, then sends
// body in pieces of step bytes every pause, until the server answers or
// closes the connection; it returns the status line ("" when closed
// without an answer) and how long the connection stayed open. It gives up
// after limit, which fails the test.
func rawRequest(t *testing.T, url, head string, body []byte, step int, pause, limit time.Duration) (string, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- strings.TrimSpace(line)
	}()
	tick := time.NewTicker(pause)
	defer tick.Stop()
	giveUp := time.After(limit)
	for {
		select {
		case line := <-answered:
			return line, time.Since(began)
		case <-giveUp:
			t.Fatalf("the connection was still open after %v", limit)
		case <-tick.C:
			if len(body) > 0 {
				n := min(step, len(body))
				_, _ = conn.Write(body[:n]) // the server may have closed it
				body = body[n:]
			}
		}
	}
}

// A body that trickles or stalls is cut off after one window, whoever
// sends it: an anonymous token request, a signed-in API PATCH, an upload
// that declares 2 GiB and sends 100 bytes.
func TestStalledBodiesAreCutOff(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), BodyTimeout: time.Second, BodyMinRate: 1024})
	auth := "Authorization: Basic " + basic("admin", testAdminPassword) + "\r\n"
	resp, err := admin.Post(r.url+"/v2/p/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	session := resp.Header.Get("Location")
	form := []byte("grant_type=password&username=admin&password=" + testAdminPassword)
	for _, tc := range []struct {
		name, head string
		body       []byte
		want       string // status code
		step       int
		pause      time.Duration
	}{
		{"token request, a byte every 200ms",
			"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
				fmt.Sprintf("Content-Length: %d\r\n\r\n", len(form)), form, "400", 1, 200 * time.Millisecond},
		{"API PATCH, 10 bytes every 500ms",
			"PATCH /api/v1/namespaces/p/configmaps/c HTTP/1.1\r\nHost: x\r\n" + auth +
				"Content-Type: application/merge-patch+json\r\nContent-Length: 4000\r\n\r\n",
			bytes.Repeat([]byte(" "), 4000), "408", 10, 500 * time.Millisecond},
		{"upload declaring 2 GiB, sending 100 bytes",
			"PATCH " + session + " HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: 2147483648\r\n\r\n",
			bytes.Repeat([]byte("a"), 100), "408", 100, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, open := rawRequest(t, r.url, tc.head, tc.body, tc.step, tc.pause, 15*time.Second)
			t.Logf("answer %q after %v", line, open)
			if open > 8*time.Second {
				t.Errorf("connection stayed open %v with a 1s window", open)
			}
			if line != "" && !strings.Contains(line, " "+tc.want+" ") {
				t.Errorf("answer %q, want %s (or the connection closed)", line, tc.want)
			}
		})
	}
	// The stalled upload kept the 100 bytes that arrived: the client can
	// resume from there.
	req, _ := http.NewRequest("GET", r.url+session, nil)
	resp, err = admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Range"); got != "0-99" {
		t.Fatalf("session after the stall has Range %q, want 0-99", got)
	}
	rest := bytes.Repeat([]byte("b"), 50)
	whole := append(bytes.Repeat([]byte("a"), 100), rest...)
	req, _ = http.NewRequest("PUT", registrytest.WithDigest(r.url+session, digest.FromBytes(whole).String()), bytes.NewReader(rest))
	req.Header.Set("Content-Range", "100-149")
	resp, err = admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("resuming the stalled upload = %d, want 201", resp.StatusCode)
	}
}

// A slow but live client keeps uploading: the pace asks for a rate over a
// window, not for the whole body within a time.
func TestSlowLiveBodyCompletes(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), BodyTimeout: time.Second, BodyMinRate: 1024})
	content := bytes.Repeat([]byte("s"), 16<<10)
	head := fmt.Sprintf("POST /v2/p/app/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\nContent-Length: %d\r\n\r\n",
		digest.FromBytes(content), basic("admin", testAdminPassword), len(content))
	// 4 KiB/s, four times the minimum, for about four windows.
	line, took := rawRequest(t, r.url, head, content, 1024, 250*time.Millisecond, 30*time.Second)
	if !strings.Contains(line, " 201 ") {
		t.Fatalf("slow upload answered %q after %v, want 201", line, took)
	}
}

// Open upload sessions are capped per user and per project, with an
// answer that says which cap and what to do.
func TestUploadSessionCaps(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), MaxUploadsPerUser: 2, MaxUploadsPerProject: 3})
	open := func(repo string) (*http.Response, map[string]any) {
		resp, err := admin.Post(r.url+"/v2/"+repo+"/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	var sessions []string
	for _, repo := range []string{"p/a", "q/b"} {
		resp, _ := open(repo)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("session %d = %d", len(sessions)+1, resp.StatusCode)
		}
		sessions = append(sessions, resp.Header.Get("Location"))
	}
	resp, body := open("p/c")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third session of one user = %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	msg := fmt.Sprint(body)
	if !strings.Contains(msg, "TOOMANYREQUESTS") || !strings.Contains(msg, "user admin") || !strings.Contains(msg, "2 per user") {
		t.Fatalf("cap answer %s does not name the code, the user and the cap", msg)
	}
	// Cancelling a session makes room.
	req, _ := http.NewRequest("DELETE", r.url+sessions[0], nil)
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("cancel = %v %v", resp, err)
	}
	if resp, _ := open("p/c"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a session after cancelling one = %d, want 202", resp.StatusCode)
	}
	// A monolithic upload opens no session and is not capped.
	if resp := pushBlob(t, r.url, "p/d", []byte("mono")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic upload at the cap = %d, want 201", resp.StatusCode)
	}
}

func basic(user, password string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, password)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// Time a handler spends before it reads (a password check under load) is
// not taken from the client's window: a body sent at once is read whole
// however late the handler starts reading. And a body no handler reads is
// still drained under the deadline.
func TestPaceStartsWhenTheHandlerReads(t *testing.T) {
	const window = 300 * time.Millisecond
	started := make(chan struct{})
	srv := httptest.NewServer(paceBodies(newBodyPace(window, 1<<20), http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusUnauthorized) // never reads the body
			return
		}
		close(started)
		time.Sleep(3 * window) // slower than a window, before reading
		b, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		fmt.Fprint(w, len(b))
	})))
	defer srv.Close()
	// Larger than what net/http reads ahead with the headers, so that
	// reading it waits on the connection.
	big := bytes.Repeat([]byte("x"), 1<<20)
	resp, err := http.Post(srv.URL+"/late", "text/plain", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	<-started
	if resp.StatusCode != http.StatusOK || string(got) != fmt.Sprint(len(big)) {
		t.Fatalf("late reader got %d %q, want 200 %d", resp.StatusCode, got, len(big))
	}
	// A refusal that leaves a trickling body unread: the server drains it
	// before answering, under the deadline set with the request.
	line, open := rawRequest(t, srv.URL, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
		bytes.Repeat([]byte("x"), 1000), 1, 100*time.Millisecond, 15*time.Second)
	if open > 5*time.Second {
		t.Fatalf("an unread trickling body held the connection %v (answer %q)", open, line)
	}
}

// A client that asks for a blob and stops reading the answer is let go
// after a window without progress: it does not hold the connection, the
// handler and the blob's file for as long as it likes. One reading slowly,
// above the minimum rate, gets the whole blob.
func TestStalledResponseReaderIsCutOff(t *testing.T) {
	r := start(t, Config{DataDir: t.TempDir(), BodyTimeout: time.Second, BodyMinRate: 64 << 10})
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB: more than the socket buffers hold
	if resp := pushBlob(t, r.url, "p/app", content); resp.StatusCode != 201 {
		t.Fatalf("push = %d", resp.StatusCode)
	}
	path := "/v2/p/app/blobs/" + digest.FromBytes(content).String()
	conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	began := time.Now()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n", path, basic("admin", testAdminPassword))
	// Never read: the request ends (its access line is written) once the
	// server gives up.
	r.logs.waitFor(t, `"path":"`+path+`"`, 20*time.Second)
	t.Logf("a reader that never read was let go after %v", time.Since(began).Round(time.Millisecond))

	// A slow reader, 2 MiB/s (32 times the minimum, but the blob takes
	// several windows past what the socket buffers hold), gets it all.
	slow := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", r.url+path, nil)
		req.SetBasicAuth("admin", testAdminPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- err
			return
		}
		defer resp.Body.Close()
		h := digest.Canonical.Digester()
		buf := make([]byte, 64<<10)
		tick := time.NewTicker(32 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			n, err := io.ReadFull(resp.Body, buf)
			h.Hash().Write(buf[:n])
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				slow <- err
				return
			}
		}
		if got := h.Digest(); got != digest.FromBytes(content) {
			slow <- fmt.Errorf("slow reader got %s", got)
			return
		}
		slow <- nil
	}()
	select {
	case err := <-slow:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the slow reader did not finish")
	}
}

// sizes records the size of each write, taking delay over each.
type sizes struct {
	http.ResponseWriter
	got   []int
	delay time.Duration
}

func (s *sizes) Write(p []byte) (int, error) {
	s.got = append(s.got, len(p))
	time.Sleep(s.delay)
	return len(p), nil
}

// A large paced write goes out in slices that grow, up to 512 KiB, while
// the client takes them at once, and stay at 64 KiB while it does not: a
// client that stops reading is held a window and one slice's time at the
// minimum rate.
func TestPacedWriteSlices(t *testing.T) {
	for _, tc := range []struct {
		delay time.Duration
		want  []int
	}{
		{0, []int{64 << 10, 128 << 10, 256 << 10, 512 << 10, 512 << 10, 128 << 10}},
		{20 * time.Millisecond, []int{64 << 10, 64 << 10, 64 << 10}},
	} {
		rec := &sizes{ResponseWriter: httptest.NewRecorder(), delay: tc.delay}
		w := &pacedWriter{ResponseWriter: rec, ctl: http.NewResponseController(rec), pace: newBodyPace(160*time.Millisecond, 1024)}
		total := 0
		for _, n := range tc.want {
			total += n
		}
		if n, err := w.Write(make([]byte, total)); err != nil || n != total {
			t.Fatalf("Write: %d, %v", n, err)
		}
		if !slices.Equal(rec.got, tc.want) {
			t.Errorf("with writes taking %v: slices %v, want %v", tc.delay, rec.got, tc.want)
		}
	}
}
