package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// writerFixture is a group writer over a fresh SQLite database with one
// table, and a count of its commits.
type writerFixture struct {
	w       *groupWriter
	db      *sql.DB
	commits atomic.Int64
}

func newWriterFixture(t *testing.T) *writerFixture {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.write.Exec(`CREATE TABLE kv (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	f := &writerFixture{db: s.read}
	f.w = newGroupWriter(s.write, func(*sql.Tx) {}, func(*sql.Tx) { f.commits.Add(1) }, func(*sql.Tx) {})
	t.Cleanup(f.w.close)
	return f
}

func insert(k string) func(*sql.Tx) error {
	return func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO kv (k) VALUES (?)`, k)
		return err
	}
}

func (f *writerFixture) has(t *testing.T, k string) bool {
	t.Helper()
	var n int
	if err := f.db.QueryRow(`SELECT COUNT(*) FROM kv WHERE k = ?`, k).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// hold starts a write that blocks the writer until release is closed, and
// returns once it runs, so that writes sent next wait for one batch.
func (f *writerFixture) hold(t *testing.T) (release chan struct{}, done <-chan error) {
	t.Helper()
	release = make(chan struct{})
	running := make(chan struct{})
	out := make(chan error, 1)
	go func() {
		out <- f.w.do(context.Background(), func(tx *sql.Tx) error {
			close(running)
			<-release
			return insert("holder")(tx)
		})
	}()
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the holding write never ran")
	}
	return release, out
}

// queued waits until n writes wait in the queue.
func (f *writerFixture) queued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.w.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(f.w.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Writes that arrive while a commit is in progress share the next commit;
// one that fails, panics or was abandoned by its caller leaves the others.
func TestGroupCommitBatchesAndIsolatesFailures(t *testing.T) {
	f := newWriterFixture(t)
	release, held := f.hold(t)
	abandoned, abandon := context.WithCancel(context.Background())
	type write struct {
		name string
		ctx  context.Context
		fn   func(*sql.Tx) error
		ok   bool
	}
	writes := []write{
		{"a", context.Background(), insert("a"), true},
		{"fails", context.Background(), func(tx *sql.Tx) error {
			if err := insert("fails")(tx); err != nil {
				return err
			}
			return errors.New("refused after writing")
		}, false},
		{"b", context.Background(), insert("b"), true},
		{"duplicate", context.Background(), insert("a"), false}, // a constraint violation
		{"panics", context.Background(), func(tx *sql.Tx) error {
			_ = insert("panics")(tx)
			panic("boom")
		}, false},
		{"abandoned", abandoned, insert("abandoned"), false},
		{"c", context.Background(), insert("c"), true},
	}
	results := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		f.queued(t, i) // queue them in order
		wg.Go(func() { results[i] = f.w.do(w.ctx, w.fn) })
	}
	f.queued(t, len(writes))
	abandon() // its caller hangs up while it waits
	commitsBefore := f.commits.Load()
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, w := range writes {
		if (results[i] == nil) != w.ok {
			t.Errorf("write %s = %v, want success %v", w.name, results[i], w.ok)
		}
		if got := f.has(t, w.name); got != w.ok && w.name != "duplicate" {
			t.Errorf("row %s present = %v, want %v", w.name, got, w.ok)
		}
	}
	if !f.has(t, "a") {
		t.Error("the duplicate's failure took the original row with it")
	}
	if n := f.commits.Load() - commitsBefore; n > 2 {
		t.Errorf("%d commits for one batch of writes (plus the holder), want at most 2", n)
	}
}

// A lone write that fails is rolled back whole; the writer carries on.
func TestGroupWriterAloneFailure(t *testing.T) {
	f := newWriterFixture(t)
	err := f.w.do(context.Background(), func(tx *sql.Tx) error {
		_ = insert("half")(tx)
		return fmt.Errorf("no")
	})
	if err == nil || f.has(t, "half") {
		t.Fatalf("failed write = %v, row kept %v", err, f.has(t, "half"))
	}
	if err := f.w.do(context.Background(), insert("next")); err != nil || !f.has(t, "next") {
		t.Fatalf("write after a failure = %v", err)
	}
}

// Closing the writer ends queued writes with an error instead of leaving
// their callers waiting, and refuses new ones.
func TestGroupWriterClose(t *testing.T) {
	f := newWriterFixture(t)
	release, held := f.hold(t)
	queued := make(chan error, 1)
	go func() { queued <- f.w.do(context.Background(), insert("late")) }()
	f.queued(t, 1)
	closed := make(chan struct{})
	go func() { f.w.close(); close(closed) }()
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("the write in progress at close = %v, want committed", err)
	}
	<-closed
	select {
	case err := <-queued:
		// It ran in the last batch or was refused; either way its caller knows.
		if err != nil && !errors.Is(err, errStoreClosed) {
			t.Fatalf("queued write at close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write queued at close never returned")
	}
	if err := f.w.do(context.Background(), insert("after")); !errors.Is(err, errStoreClosed) {
		t.Fatalf("write after close = %v, want errStoreClosed", err)
	}
}

// An ephemeral database (memory storage's metadata) does not sync its
// commits; a durable one syncs every commit (FULL).
func TestEphemeralSkipsSync(t *testing.T) {
	for _, tc := range []struct {
		opts []Option
		want int // PRAGMA synchronous: 0 OFF, 2 FULL
	}{{nil, 2}, {[]Option{Ephemeral()}, 0}} {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "m.db"), tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, db := range []*sql.DB{s.write, s.read} {
			var got int
			if err := db.QueryRow(`PRAGMA synchronous`).Scan(&got); err != nil || got != tc.want {
				t.Errorf("synchronous = %d, %v; want %d", got, err, tc.want)
			}
		}
		s.Close()
	}
}

// A caller that hangs up while its statement runs does not interrupt it:
// SQLite would roll back the whole shared transaction, and the batch's
// other writes with it. The statement finishes, and every write commits.
func TestGroupCommitSurvivesAHangUpMidStatement(t *testing.T) {
	// The statement calls a function that waits until the caller has hung
	// up, so the hang-up lands while it runs.
	inStatement, hungUp := make(chan struct{}), make(chan struct{})
	registerWaitFunction.Do(func() {
		sqlite.MustRegisterScalarFunction("berth_test_wait", 0, func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
			waitHooks.in <- struct{}{}
			<-waitHooks.out
			return "waited", nil
		})
	})
	waitHooks.in, waitHooks.out = make(chan struct{}, 1), hungUp
	f := newWriterFixture(t)
	release, held := f.hold(t)
	hangUp, cancel := context.WithCancel(context.Background())
	slow := func(tx *sql.Tx) error {
		_, err := tx.ExecContext(hangUp, `INSERT INTO kv (k) SELECT berth_test_wait()`)
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
	go func() { <-waitHooks.in; close(inStatement) }()
	select {
	case <-inStatement:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow statement never ran")
	}
	cancel()                          // its caller hangs up while the statement runs
	time.Sleep(10 * time.Millisecond) // let the driver see the cancellation, if it watches
	close(hungUp)
	wg.Wait()
	for i, k := range []string{"a", "waited", "c"} {
		if results[i] != nil || !f.has(t, k) {
			t.Errorf("write %d: err = %v, row %s present = %v; want committed", i, results[i], k, f.has(t, k))
		}
	}
}

var (
	registerWaitFunction sync.Once
	waitHooks            struct{ in, out chan struct{} }
)
