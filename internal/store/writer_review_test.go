package store

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"
)

// Review: a write whose caller hangs up *while one of its statements runs*
// (every store method passes the request's context to tx.ExecContext)
// makes modernc's driver call sqlite3_interrupt. An interrupted INSERT,
// UPDATE or DELETE inside an explicit transaction rolls the whole
// transaction back, so the batch's other writes — already released from
// their savepoints — are lost with it, and their callers get an error
// although nothing was wrong with them. groupWriter's doc says "one ...
// abandoned by its caller leaves the others".
func TestReviewGroupCommitHangUpMidStatementTakesTheBatch(t *testing.T) {
	f := newWriterFixture(t)
	release, held := f.hold(t)

	hangUp, cancel := context.WithCancel(context.Background())
	running := make(chan struct{})
	slow := func(tx *sql.Tx) error {
		close(running)
		// A statement long enough to be interrupted (a big project delete,
		// say); hangUp is the caller's request context.
		_, err := tx.ExecContext(hangUp, `
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000)
INSERT INTO kv (k) SELECT 'slow' || x FROM c`)
		return err
	}

	results := make([]error, 3)
	var wg sync.WaitGroup
	fns := []func(*sql.Tx) error{insert("a"), slow, insert("c")}
	ctxs := []context.Context{context.Background(), hangUp, context.Background()}
	for i := range fns {
		f.queued(t, i)
		wg.Go(func() { results[i] = f.w.do(ctxs[i], fns[i]) })
	}
	f.queued(t, len(fns))
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow write never ran")
	}
	time.Sleep(50 * time.Millisecond) // the statement is under way
	cancel()                          // the client of the slow write hangs up
	wg.Wait()

	if results[1] == nil {
		t.Fatal("the interrupted write succeeded")
	}
	for i, k := range []string{"a", "", "c"} {
		if k == "" {
			continue
		}
		if results[i] != nil || !f.has(t, k) {
			t.Errorf("write %s, batched with a write whose caller hung up mid-statement: err = %v, row present = %v; want committed",
				k, results[i], f.has(t, k))
		}
	}
}
