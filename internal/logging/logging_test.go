package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var logfmtLine = regexp.MustCompile(`^time=(\S+) level=(\S+) msg="listening on :5000" port=5000 instance\.id=abc-123$`)

func TestLogfmtShape(t *testing.T) {
	var out bytes.Buffer
	h, err := NewHandler(&out, "logfmt", nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(WithTrailer(h, slog.String("instance.id", "abc-123")))
	log.Info("listening on :5000", "port", 5000)
	line := strings.TrimSuffix(out.String(), "\n")
	m := logfmtLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line %q is not the reference's shape", line)
	}
	ts, err := time.Parse(time.RFC3339, m[1])
	if err != nil || !strings.HasSuffix(m[1], "Z") || strings.Contains(m[1], ".") {
		t.Errorf("time %q is not RFC 3339 UTC to the second: %v", m[1], err)
	}
	if d := time.Since(ts); d < -time.Second || d > time.Minute {
		t.Errorf("time %s is not now", ts)
	}
	if m[2] != "info" {
		t.Errorf("level = %q, want info", m[2])
	}
	// "text" is the same format under its old name.
	var text bytes.Buffer
	h, _ = NewHandler(&text, "text", nil)
	slog.New(h).Warn("x")
	if !strings.Contains(text.String(), " level=warn msg=x") {
		t.Errorf("text format: %q", text.String())
	}
	if _, err := NewHandler(&out, "xml", nil); err == nil {
		t.Error("an unknown format was accepted")
	}
}

func TestJSONKeepsTrailer(t *testing.T) {
	var out bytes.Buffer
	h, err := NewHandler(&out, "json", nil)
	if err != nil {
		t.Fatal(err)
	}
	slog.New(WithTrailer(h, slog.String("instance.id", "i-1"))).With("a", 1).Info("hello", "b", 2)
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["instance.id"] != "i-1" || rec["a"] != float64(1) || rec["b"] != float64(2) || rec["msg"] != "hello" {
		t.Errorf("json record: %v", rec)
	}
}

// The level is read at each record, through every handler of the chain.
func TestLevelVarIsLive(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		var out bytes.Buffer
		level, err := ParseLevel("info")
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHandler(&out, format, level)
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(WithTrailer(h, slog.String("instance.id", "x"))).With("component", "test")
		log.Debug("hidden-1")
		level.Set(slog.LevelDebug)
		if !log.Enabled(context.Background(), slog.LevelDebug) {
			t.Errorf("%s: debug not enabled after the LevelVar moved", format)
		}
		log.Debug("shown")
		level.Set(slog.LevelWarn)
		log.Info("hidden-2")
		got := out.String()
		if strings.Contains(got, "hidden") || !strings.Contains(got, "shown") {
			t.Errorf("%s: the level did not follow the LevelVar:\n%s", format, got)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("an unknown level was accepted")
	}
}

func TestRingBounded(t *testing.T) {
	r := NewRing(64<<10, 500)
	line := strings.Repeat("x", 200)
	for i := range 5000 {
		fmt.Fprintf(r, "%05d %s\n", i, line)
		if n, b := r.Size(); n > 500 || b > 64<<10 {
			t.Fatalf("after %d lines the ring holds %d lines, %d bytes", i+1, n, b)
		}
	}
	lines, next, _ := r.Tail(-1)
	if next != 5001 {
		t.Errorf("next = %d, want 5001", next)
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1].Text, "04999 ") {
		t.Fatalf("the newest line is not kept: %v", lines[len(lines)-1:])
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Seq != lines[i-1].Seq+1 {
			t.Fatalf("lines out of order at %d: %d after %d", i, lines[i].Seq, lines[i-1].Seq)
		}
	}
	// Bounded by count when lines are short.
	r = NewRing(1<<20, 100)
	for i := range 1000 {
		fmt.Fprintf(r, "%d\n", i)
	}
	if n, _ := r.Size(); n != 100 {
		t.Errorf("short lines: %d held, want 100", n)
	}
	last, _, _ := r.Tail(1)
	if len(last) != 1 || last[0].Text != "999" {
		t.Errorf("Tail(1) = %v", last)
	}
	// A line larger than the ring is cut, not kept whole.
	r = NewRing(1000, 10)
	r.Write(bytes.Repeat([]byte("y"), 5000))
	if _, b := r.Size(); b > 1000 {
		t.Errorf("a huge line left %d bytes held", b)
	}
}

func TestRingSinceAndWake(t *testing.T) {
	r := NewRing(1<<20, 1000)
	lines, next, changed := r.Since(0, 10)
	if len(lines) != 0 || next != 1 {
		t.Fatalf("empty ring: %v, next %d", lines, next)
	}
	select {
	case <-changed:
		t.Fatal("woken before any write")
	default:
	}
	r.Write([]byte("a\nb\nc\n"))
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("a write did not wake the reader")
	}
	lines, next, changed = r.Since(next, 2)
	if len(lines) != 2 || lines[0].Text != "a" || lines[1].Text != "b" || next != 3 {
		t.Fatalf("Since(1, 2) = %v, next %d", lines, next)
	}
	select {
	case <-changed: // more is waiting: no need to wait
	default:
		t.Fatal("a short answer did not say more is waiting")
	}
	lines, next, _ = r.Since(next, 10)
	if len(lines) != 1 || lines[0].Text != "c" || next != 4 {
		t.Fatalf("Since(3) = %v, next %d", lines, next)
	}
	// A reader that fell behind skips what was dropped.
	small := NewRing(1<<20, 3)
	small.Write([]byte("1\n2\n3\n4\n5\n"))
	lines, _, _ = small.Since(1, 10)
	if len(lines) != 3 || lines[0].Text != "3" {
		t.Errorf("behind: %v", lines)
	}
}

// Concurrent writers and readers (run with -race): every line whole, none
// lost while the ring holds them all.
func TestRingConcurrent(t *testing.T) {
	r := NewRing(1<<20, 100000)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(r, "w%d-%d\n", w, i)
			}
		})
	}
	done := make(chan struct{})
	var seen int
	go func() {
		defer close(done)
		var seq uint64
		deadline := time.After(30 * time.Second)
		for {
			lines, next, changed := r.Since(seq, 100)
			seen += len(lines)
			seq = next
			if seen >= 2000 {
				return
			}
			select {
			case <-changed:
			case <-deadline:
				return
			}
		}
	}()
	wg.Wait()
	<-done
	if seen != 2000 {
		t.Errorf("a follower saw %d of 2000 lines", seen)
	}
}
