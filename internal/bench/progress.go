package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress draws a one-line bar, redrawn in place with \r a few times a
// second, and erases it when done. A nil *progress draws nothing.
type progress struct {
	w     io.Writer
	width int
	label string
	total int
	done  atomic.Int64

	once    sync.Once
	stop    chan struct{}
	stopped chan struct{}
	began   time.Time
}

func newProgress(w io.Writer, width int, label string, total int) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, width: width, label: label, total: total, stop: make(chan struct{}), stopped: make(chan struct{})}
	p.draw("setting up")
	return p
}

func (p *progress) start() {
	if p == nil {
		return
	}
	p.began = time.Now()
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw("")
			}
		}
	}()
}

func (p *progress) add() {
	if p != nil {
		p.done.Add(1)
	}
}

func (p *progress) finish() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		close(p.stop)
		if !p.began.IsZero() {
			<-p.stopped
		}
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.width-1)+"\r")
	})
}

func (p *progress) draw(status string) {
	done := int(p.done.Load())
	if status == "" {
		rate := 0.0
		if secs := time.Since(p.began).Seconds(); secs > 0 {
			rate = float64(done) / secs
		}
		status = fmt.Sprintf("%d/%d %.1f req/s %s", done, p.total, rate, time.Since(p.began).Truncate(time.Second))
	}
	label := p.label
	if len(label) > 16 {
		label = label[:16]
	}
	barWidth := p.width - 1 - 16 - 1 - 2 - 1 - len(status)
	line := fmt.Sprintf("%-16s ", label)
	if barWidth >= 10 {
		filled := 0
		if p.total > 0 {
			filled = min(barWidth, done*barWidth/p.total)
		}
		line += "[" + strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled) + "] "
	}
	line += status
	if len(line) > p.width-1 {
		line = line[:p.width-1]
	}
	fmt.Fprint(p.w, "\r"+line+strings.Repeat(" ", p.width-1-len(line)))
}
