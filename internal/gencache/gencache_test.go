package gencache

import (
	"errors"
	"testing"
	"time"
)

func TestFetch(t *testing.T) {
	var gen int64
	loads := 0
	c := &Cache[string, int]{TTL: time.Hour, Max: 2, Keep: func(v int) bool { return v < 100 }}
	load := func(v int, err error) func() (int, error) {
		return func() (int, error) { loads++; return v, err }
	}
	generation := func() int64 { return gen }
	for range 3 {
		if v, err := c.Fetch("a", generation, load(1, nil)); v != 1 || err != nil {
			t.Fatalf("Fetch = %d, %v", v, err)
		}
	}
	if loads != 1 {
		t.Fatalf("%d loads for three fetches at one generation, want 1", loads)
	}
	gen++ // a commit that could change "a"
	if v, _ := c.Fetch("a", generation, load(2, nil)); v != 2 || loads != 2 {
		t.Fatalf("after the generation moved: %d (%d loads), want a new load of 2", v, loads)
	}
	// Failed loads and unkept values are not remembered.
	if _, err := c.Fetch("b", generation, load(0, errors.New("down"))); err == nil {
		t.Fatal("the load's error was lost")
	}
	c.Fetch("b", generation, load(3, nil))
	c.Fetch("big", generation, load(500, nil))
	before := loads
	c.Fetch("big", generation, load(500, nil))
	if loads != before+1 {
		t.Fatal("an unkept value was remembered")
	}
	// A generation that moves during the load leaves a stale entry.
	c.Fetch("racy", generation, func() (int, error) { loads++; gen++; return 7, nil })
	before = loads
	c.Fetch("racy", generation, load(8, nil))
	if loads != before+1 {
		t.Fatal("a value loaded while the generation moved was used after")
	}
}

func TestTTLAndBound(t *testing.T) {
	c := &Cache[int, int]{TTL: 20 * time.Millisecond, Max: 3}
	zero := func() int64 { return 0 }
	loads := 0
	load := func() (int, error) { loads++; return 1, nil }
	c.Fetch(1, zero, load)
	time.Sleep(30 * time.Millisecond) // the TTL passes
	c.Fetch(1, zero, load)
	if loads != 2 {
		t.Fatalf("%d loads, want the expired entry loaded again", loads)
	}
	for k := range 10 {
		c.Fetch(k, zero, load)
	}
	c.mu.RLock()
	n := len(c.entries)
	c.mu.RUnlock()
	if n > 3 {
		t.Fatalf("%d entries, bound 3", n)
	}
}
