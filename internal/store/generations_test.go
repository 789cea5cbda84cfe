package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Requests that ask while a read of the generations runs wait for the
// next read, which begins after they asked, and share it: two reads for
// eleven requests, none answered from the read that began before it.
func TestGenerationReadsBeginAfterTheAsking(t *testing.T) {
	var r generationReads
	var reads atomic.Int64
	release := make(chan struct{})
	read := func(context.Context) generations {
		n := reads.Add(1)
		if n == 1 {
			<-release // the first read is slow
		}
		return generations{access: n}
	}
	first := make(chan generations)
	go func() { first <- r.get(context.Background(), read) }()
	for reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	got := make(chan generations, 10)
	for range 10 {
		wg.Go(func() { got <- r.get(context.Background(), read) })
	}
	time.Sleep(100 * time.Millisecond) // all ten are waiting
	close(release)
	if g := <-first; g.access != 1 {
		t.Fatalf("the first request got read %d", g.access)
	}
	wg.Wait()
	close(got)
	for g := range got {
		if g.access != 2 {
			t.Fatalf("a request that asked during read 1 got read %d, want 2 (begun after it asked)", g.access)
		}
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d reads for 11 requests, want 2", n)
	}
}
