package logging

import (
	"bytes"
	"sync"
	"time"
)

// Ring keeps the newest lines written to it, bounded by bytes and by count:
// the oldest go first. It is an io.Writer placed beside stderr, so it holds
// exactly what the process logged (after the level filter, as formatted).
//
// Writers never wait for readers: a write takes one short lock, stores the
// line and wakes the readers waiting for one by closing a channel. A reader
// copies what it wants under the same lock and writes it to its client
// after releasing it; one that falls behind by more than the ring holds
// skips what was dropped.
type Ring struct {
	maxBytes, maxLines int
	now                func() time.Time

	mu    sync.Mutex
	buf   []Line // circular; grows to maxLines
	start int    // index of the oldest line in buf
	n     int    // lines held
	size  int    // bytes held, as counted by lineCost
	next  uint64 // Seq of the next line written
	wake  chan struct{}
}

// Line is one line of the log.
type Line struct {
	Seq  uint64    // its place in the process's log, from 1
	Time time.Time // when it was written
	Text string    // without the newline
}

// Default bounds of a process's ring.
const (
	DefaultRingBytes = 4 << 20
	DefaultRingLines = 20000
	// maxLineBytes cuts a longer line: the ring is for reading logs, not
	// for holding one huge record.
	maxLineBytes = 64 << 10
	// lineOverhead is what a held line costs beside its text (the Line
	// itself), so that many short lines are bounded by bytes too.
	lineOverhead = 48
)

// NewRing returns a ring that holds at most maxBytes (text and overhead)
// and maxLines lines.
func NewRing(maxBytes, maxLines int) *Ring {
	return &Ring{maxBytes: max(maxBytes, 1), maxLines: max(maxLines, 1), now: time.Now, next: 1}
}

// closed is returned as the change channel when more lines are waiting.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func lineCost(text string) int { return len(text) + lineOverhead }

// Write stores each line of p (a handler writes one record, ending in a
// newline, per call). It never fails.
func (r *Ring) Write(p []byte) (int, error) {
	n := len(p)
	now := r.now()
	for len(p) > 0 {
		line, rest, _ := bytes.Cut(p, []byte{'\n'})
		p = rest
		limit := min(maxLineBytes, r.maxBytes-lineOverhead)
		if len(line) > limit {
			line = line[:max(limit, 0)]
		}
		r.add(now, string(line))
	}
	return n, nil
}

func (r *Ring) add(now time.Time, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cost := lineCost(text)
	for r.n > 0 && (r.n >= r.maxLines || r.size+cost > r.maxBytes) {
		r.size -= lineCost(r.buf[r.start].Text)
		r.buf[r.start] = Line{}
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.start+r.n)%len(r.buf)] = Line{Seq: r.next, Time: now, Text: text}
	r.n++
	r.size += cost
	r.next++
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
}

// grow doubles buf, up to maxLines, with the oldest line first.
func (r *Ring) grow() {
	size := min(max(2*len(r.buf), 64), r.maxLines)
	buf := make([]Line, size)
	for i := range r.n {
		buf[i] = r.buf[(r.start+i)%len(r.buf)]
	}
	r.buf, r.start = buf, 0
}

// changedLocked is the channel closed at the next write.
func (r *Ring) changedLocked() chan struct{} {
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.wake
}

// Tail returns the newest n lines held (all of them when n < 0), oldest
// first; the Seq the next line will have; and a channel closed when it is
// written.
func (r *Ring) Tail(n int) (lines []Line, next uint64, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n < 0 || n > r.n {
		n = r.n
	}
	return r.copyLocked(r.n-n, n), r.next, r.changedLocked()
}

// Since returns up to limit lines from Seq seq on, oldest first (from the
// oldest held when seq was dropped already); the Seq to ask for next; and
// a channel closed when there is more to read: at once when limit cut the
// answer short, else at the next write.
func (r *Ring) Since(seq uint64, limit int) (lines []Line, next uint64, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldest := r.next - uint64(r.n)
	if seq < oldest {
		seq = oldest
	}
	if seq >= r.next {
		return nil, r.next, r.changedLocked()
	}
	skip := int(seq - oldest)
	count := min(r.n-skip, max(limit, 1))
	lines = r.copyLocked(skip, count)
	next = seq + uint64(count)
	if next < r.next {
		return lines, next, closed
	}
	return lines, next, r.changedLocked()
}

// copyLocked copies count lines from the skip-th oldest on.
func (r *Ring) copyLocked(skip, count int) []Line {
	out := make([]Line, count)
	for i := range count {
		out[i] = r.buf[(r.start+skip+i)%len(r.buf)]
	}
	return out
}

// Size reports the lines and bytes (as the bound counts them) held.
func (r *Ring) Size() (lines, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.size
}
