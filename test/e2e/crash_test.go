package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashDurability pushes images from concurrent clients, kills the
// server with SIGKILL at random moments, restarts it on the same data and
// checks that everything the server acknowledged survived byte for byte:
//
//   - every blob answered 201 (monolithic POST, session PUT, mount) is
//     served by digest from its repository with the right length and hash;
//   - every manifest answered 201 is served by digest and by its tag with
//     identical bytes, and its tag is listed;
//   - every upload session whose PATCH was answered 202 still exists with
//     at least the acknowledged bytes and can be finished;
//   - whatever was not acknowledged is either absent or exactly correct;
//   - storage/uploads holds only files of upload sessions that still exist.
//
// Kills are scheduled by acknowledgements, not by the clock, so that a
// loaded machine cannot turn every round into a kill before the first
// push: one round, chosen at random, kills at a random moment within
// maxKillDelay of its start (a crash amid the first requests after a
// restart); every other round waits until its pushers got 1 to
// maxManifestsBeforeKill manifests acknowledged, then kills at a random
// moment up to maxKillDelay later, amid whatever is in flight by then.
// The test fails unless the rounds
// together got at least minManifestAcks manifests and minBlobAcks blobs
// acknowledged, with minKillsAfterAcks kills landing after an
// acknowledgement of their round.
//
// The seed is logged; BERTH_CRASH_SEED=<n> replays its choices (the kill
// timing against the pushes is still up to the scheduler).
func TestCrashDurability(t *testing.T) {
	const (
		rounds                 = 8
		pushers                = 4
		maxManifestsBeforeKill = 6
		maxKillDelay           = 300 * time.Millisecond
		ackTimeout             = time.Minute // for the acknowledgements a round waits for
		requestTimeout         = 15 * time.Second
		overallDeadline        = 4 * time.Minute

		// Every image pushes a fresh config and at least one fresh layer
		// before its manifest, so each acknowledged manifest comes after
		// at least two acknowledged blob pushes.
		minManifestAcks   = rounds - 1
		minBlobAcks       = 2 * minManifestAcks
		minKillsAfterAcks = rounds - 1
	)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("BERTH_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("BERTH_CRASH_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (rerun with BERTH_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	ctx, cancel := context.WithTimeout(context.Background(), overallDeadline)
	defer cancel()

	s := startServer(t, "--insecure-http")
	led := newCrashLedger(t, seed)
	led.logs, led.data = s.Logs, s.DataDir
	repos := []string{"crash/alpha", "crash/beta", "crash/gamma"}
	shared := make([][]byte, 4) // base layers several images and repositories share
	for i := range shared {
		shared[i] = crashRandomBytes(rng, 4<<10+rng.IntN(60<<10))
	}

	kills := 0
	var blobAcks, manifestAcks int64 // the pushers' 201s, over all rounds
	killsAfterAcks := 0
	earlyRound := rng.IntN(rounds)
	for round := range rounds {
		led.startRound()
		client := s.Client()
		roundCtx, stopRound := context.WithCancel(ctx)
		var seq atomic.Int64
		var wg sync.WaitGroup
		for w := range pushers {
			p := &crashPusher{
				ctx: roundCtx, c: client, base: s.URL, led: led, timeout: requestTimeout,
				rng:   rand.New(rand.NewPCG(seed, uint64(round*1000+w+1))),
				repos: repos, shared: shared,
			}
			wg.Go(func() {
				for roundCtx.Err() == nil {
					tag := fmt.Sprintf("r%d-%d", round, seq.Add(1))
					p.pushImage(repos[p.rng.IntN(len(repos))], tag)
				}
			})
		}
		wantManifests := 1 + rng.IntN(maxManifestsBeforeKill)
		if round == earlyRound {
			wantManifests = 0
		}
		waitErr := led.waitManifestAcks(ctx, wantManifests, ackTimeout)
		// The random part of the timing: the kill lands in the middle of
		// whatever the pushers are doing by then.
		delay := time.Duration(rng.Int64N(int64(maxKillDelay) + 1))
		if waitErr == nil {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
		blobsBefore, manifestsBefore := led.roundAcks()
		led.killed.Store(true) // from here on, failed requests are expected
		s.Kill()
		kills++
		stopRound()
		wg.Wait()
		client.CloseIdleConnections()
		led.killed.Store(false)
		if waitErr != nil {
			t.Fatalf("round %d (seed %d): %v", round, seed, waitErr)
		}
		if ctx.Err() != nil {
			t.Fatalf("round %d: overall deadline of %v exceeded", round, overallDeadline)
		}
		if blobsBefore+manifestsBefore > 0 {
			killsAfterAcks++
		}
		roundBlobs, roundManifests := led.roundAcks()
		blobAcks += roundBlobs
		manifestAcks += roundManifests

		s.Restart()
		led.endRound()
		t.Logf("round %d: killed %v after the round's first %d manifest acknowledgements; acknowledged before the kill: %d blobs, %d manifests (%d and %d in all); %s",
			round, delay, wantManifests, blobsBefore, manifestsBefore, roundBlobs, roundManifests, led.summary())
		led.checkUploadsDir(ctx, s, requestTimeout)
		led.verify(ctx, s.Client(), s.URL, requestTimeout, rng, false)
		if t.Failed() {
			t.Fatalf("round %d (seed %d): durability checks failed after SIGKILL and restart; see errors above", round, seed)
		}
	}

	if manifestAcks < minManifestAcks || blobAcks < minBlobAcks || killsAfterAcks < minKillsAfterAcks {
		t.Fatalf("seed %d: the kills landed too early to test durability: the rounds got %d manifest and %d blob pushes acknowledged "+
			"(at least %d and %d wanted), and %d of %d kills landed after an acknowledgement of their round (at least %d wanted)",
			seed, manifestAcks, blobAcks, minManifestAcks, minBlobAcks, killsAfterAcks, rounds, minKillsAfterAcks)
	}

	// A graceful stop and start must keep everything too; then finish every
	// interrupted session still open.
	s.Stop()
	s.Restart()
	led.checkUploadsDir(ctx, s, requestTimeout)
	led.verify(ctx, s.Client(), s.URL, requestTimeout, rng, true)
	led.checkUploadsDir(ctx, s, requestTimeout)
	if ctx.Err() != nil {
		t.Fatalf("overall deadline of %v exceeded", overallDeadline)
	}
	t.Logf("done: %d rounds, %d kills; %s", rounds, kills, led.summary())
}

// crashBlob is a blob pushed to a repository.
type crashBlob struct {
	repo string
	dgst string
	size int64
}

// crashManifest is a manifest pushed to a repository under a tag.
type crashManifest struct {
	repo, tag, dgst string
	payload         []byte
}

// crashSession is a chunked upload session the test opened and did not
// see finish. acked is the size the last 202 reported; pendingEnd is where
// the request in flight at the kill would have taken it.
type crashSession struct {
	repo, id   string
	location   string // the Location the server gave, with its signature
	data       []byte
	dgst       string
	acked      int64
	pendingEnd int64
	finishing  bool // a PUT was sent: the session may legitimately be gone
}

// crashLedger records what the server acknowledged and what it did not.
type crashLedger struct {
	t      *testing.T
	seed   uint64
	logs   func() string // the running server's log
	data   string        // the server's data directory
	killed atomic.Bool

	mu         sync.Mutex
	ackBlobs   map[crashBlob]bool
	ackMans    []crashManifest
	tried      map[string]map[string]bool // repo → every tag a PUT was sent for
	unackBlobs []crashBlob
	unackMans  []crashManifest
	open       map[string]*crashSession // sessions in flight this round
	stalled    map[string]*crashSession // sessions a kill interrupted
	known      map[string]string        // every session id the test opened → its Location
	errCount   int

	// The 201s the pushers got this round (each one counts, a blob pushed
	// again too), and a wake-up for the round's scheduler at each.
	roundBlobAcks, roundManifestAcks atomic.Int64
	ackWake                          chan struct{}

	interrupted, resumed, visibleUnacked, sessionsGone int
}

func newCrashLedger(t *testing.T, seed uint64) *crashLedger {
	return &crashLedger{
		t: t, seed: seed,
		ackBlobs: map[crashBlob]bool{}, tried: map[string]map[string]bool{},
		open: map[string]*crashSession{}, stalled: map[string]*crashSession{}, known: map[string]string{},
		ackWake: make(chan struct{}, 1),
	}
}

// startRound resets the round's acknowledgement counts.
func (l *crashLedger) startRound() {
	l.roundBlobAcks.Store(0)
	l.roundManifestAcks.Store(0)
}

// pushAcked counts a 201 a pusher got and wakes the round's scheduler.
func (l *crashLedger) pushAcked(manifest bool) {
	if manifest {
		l.roundManifestAcks.Add(1)
	} else {
		l.roundBlobAcks.Add(1)
	}
	select {
	case l.ackWake <- struct{}{}:
	default:
	}
}

// roundAcks returns the blob and manifest pushes acknowledged this round.
func (l *crashLedger) roundAcks() (blobs, manifests int64) {
	return l.roundBlobAcks.Load(), l.roundManifestAcks.Load()
}

// waitManifestAcks waits until the pushers got n manifests acknowledged
// this round.
func (l *crashLedger) waitManifestAcks(ctx context.Context, n int, timeout time.Duration) error {
	expired := time.After(timeout)
	for {
		blobs, manifests := l.roundAcks()
		if manifests >= int64(n) {
			return nil
		}
		select {
		case <-l.ackWake:
		case <-expired:
			return fmt.Errorf("waited %v for %d manifest acknowledgements before the kill; the pushers got %d, and %d blob acknowledgements: "+
				"the server is too slow or refuses the pushes (see errors above)", timeout, n, manifests, blobs)
		case <-ctx.Done():
			return fmt.Errorf("overall deadline exceeded waiting for %d manifest acknowledgements before the kill (got %d, and %d blob acknowledgements)",
				n, manifests, blobs)
		}
	}
}

func (l *crashLedger) errorf(format string, args ...any) {
	l.t.Helper()
	l.mu.Lock()
	l.errCount++
	n := l.errCount
	l.mu.Unlock()
	if n <= 40 {
		l.t.Errorf("seed %d: "+format, append([]any{l.seed}, args...)...)
	} else if n == 41 {
		l.t.Errorf("seed %d: more errors follow; not shown", l.seed)
	}
}

// unexpected reports a request that got an answer it should not have. After
// the kill, transport errors are expected and not reported.
func (l *crashLedger) unexpected(what string, status int, err error, body string) {
	l.t.Helper()
	if err != nil {
		if l.killed.Load() {
			return
		}
		l.errorf("%s: %v", what, err)
		return
	}
	l.errorf("%s: unexpected status %d: %s", what, status, body)
}

func (l *crashLedger) ackBlob(b crashBlob) {
	l.mu.Lock()
	l.ackBlobs[b] = true
	l.mu.Unlock()
}

func (l *crashLedger) hasBlob(b crashBlob) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ackBlobs[b]
}

// holder returns a repository other than b.repo that holds b, or "".
func (l *crashLedger) holder(b crashBlob, repos []string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range repos {
		if r != b.repo && l.ackBlobs[crashBlob{repo: r, dgst: b.dgst, size: b.size}] {
			return r
		}
	}
	return ""
}

func (l *crashLedger) unackBlob(b crashBlob) {
	l.mu.Lock()
	l.unackBlobs = append(l.unackBlobs, b)
	l.mu.Unlock()
}

func (l *crashLedger) tryTag(repo, tag string) {
	l.mu.Lock()
	if l.tried[repo] == nil {
		l.tried[repo] = map[string]bool{}
	}
	l.tried[repo][tag] = true
	l.mu.Unlock()
}

func (l *crashLedger) manifest(m crashManifest, acked bool) {
	l.mu.Lock()
	if acked {
		l.ackMans = append(l.ackMans, m)
	} else {
		l.unackMans = append(l.unackMans, m)
	}
	l.mu.Unlock()
}

func (l *crashLedger) openSession(s *crashSession) {
	l.mu.Lock()
	l.open[s.id] = s
	l.known[s.id] = s.location
	l.mu.Unlock()
}

func (l *crashLedger) closeSession(id string) {
	l.mu.Lock()
	delete(l.open, id)
	delete(l.stalled, id)
	l.mu.Unlock()
}

// endRound moves the sessions the kill interrupted to the stalled set.
func (l *crashLedger) endRound() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, s := range l.open {
		l.stalled[id] = s
		l.interrupted++
	}
	clear(l.open)
}

func (l *crashLedger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	blobs := len(l.ackBlobs)
	return fmt.Sprintf("acknowledged: %d blobs, %d manifests; unacknowledged: %d blob pushes, %d manifest pushes (%d visible, all intact); "+
		"interrupted sessions: %d (%d resumed, %d gone after an unanswered PUT, %d still open)",
		blobs, len(l.ackMans), len(l.unackBlobs), len(l.unackMans), l.visibleUnacked,
		l.interrupted, l.resumed, l.sessionsGone, len(l.stalled))
}

var crashUploadID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkUploadsDir asserts that, with no request in flight (right after a
// start, recovery done, or after the final checks), storage/uploads holds
// only files of upload sessions that still exist.
func (l *crashLedger) checkUploadsDir(ctx context.Context, s *server, timeout time.Duration) {
	l.t.Helper()
	dir := filepath.Join(s.DataDir, "storage", "uploads")
	entries, err := os.ReadDir(dir)
	if err != nil {
		l.t.Fatalf("read %s: %v", dir, err)
	}
	c := s.Client()
	defer c.CloseIdleConnections()
	for _, e := range entries {
		if !e.Type().IsRegular() || !crashUploadID.MatchString(e.Name()) {
			l.errorf("storage/uploads/%s: not an upload file (type %v)", e.Name(), e.Type())
			continue
		}
		l.mu.Lock()
		loc, ok := l.known[e.Name()]
		l.mu.Unlock()
		if !ok {
			l.errorf("storage/uploads/%s survived recovery but is no session the test opened (a monolithic upload's leftover?)", e.Name())
			continue
		}
		st, _, _, err := crashDo(ctx, c, timeout, "GET", s.URL+loc, nil, nil)
		if err != nil || st != http.StatusNoContent {
			l.errorf("storage/uploads/%s survived recovery but its session is not live (status %d, %v)", e.Name(), st, err)
		}
	}
}

// verify checks everything recorded so far against the restarted server.
// It resumes some stalled sessions (all when final).
func (l *crashLedger) verify(ctx context.Context, c *http.Client, base string, timeout time.Duration, rng *rand.Rand, final bool) {
	l.t.Helper()
	defer c.CloseIdleConnections()

	// Stalled sessions first, before anything else touches the server.
	l.mu.Lock()
	stalled := make([]*crashSession, 0, len(l.stalled))
	for _, s := range l.stalled {
		stalled = append(stalled, s)
	}
	l.mu.Unlock()
	slices.SortFunc(stalled, func(a, b *crashSession) int { return strings.Compare(a.id, b.id) })
	for _, s := range stalled {
		l.checkSession(ctx, c, base, timeout, s, final || rng.IntN(2) == 0)
	}

	l.mu.Lock()
	blobs := make([]crashBlob, 0, len(l.ackBlobs))
	for b := range l.ackBlobs {
		blobs = append(blobs, b)
	}
	mans := slices.Clone(l.ackMans)
	unackBlobs := slices.Clone(l.unackBlobs)
	unackMans := slices.Clone(l.unackMans)
	tried := map[string]map[string]bool{}
	for r, tags := range l.tried {
		tried[r] = maps.Clone(tags)
	}
	l.mu.Unlock()

	var checks []func()
	for _, b := range blobs {
		checks = append(checks, func() {
			if err := crashCheckBlob(ctx, c, base, timeout, b); err != nil {
				l.errorf("acknowledged blob %s in %s (%d bytes): %v", b.dgst, b.repo, b.size, err)
			}
		})
	}
	for _, m := range mans {
		checks = append(checks, func() {
			if err := crashCheckManifest(ctx, c, base, timeout, m, m.dgst); err != nil {
				l.errorf("acknowledged manifest %s in %s: by digest: %v", m.dgst, m.repo, err)
			}
			if err := crashCheckManifest(ctx, c, base, timeout, m, m.tag); err != nil {
				l.errorf("acknowledged manifest %s in %s: by tag %s: %v", m.dgst, m.repo, m.tag, err)
			}
		})
	}
	var visible atomic.Int64
	for _, b := range unackBlobs {
		if l.hasBlob(b) {
			continue // acknowledged by a later push
		}
		checks = append(checks, func() {
			err := crashCheckBlob(ctx, c, base, timeout, b)
			var nf crashNotFound
			switch {
			case errors.As(err, &nf):
			case err != nil:
				l.errorf("unacknowledged blob %s in %s is visible but wrong: %v", b.dgst, b.repo, err)
			default:
				visible.Add(1)
			}
		})
	}
	for _, m := range unackMans {
		checks = append(checks, func() {
			seen := false
			for _, ref := range []string{m.dgst, m.tag} {
				err := crashCheckManifest(ctx, c, base, timeout, m, ref)
				var nf crashNotFound
				switch {
				case errors.As(err, &nf):
				case err != nil:
					l.errorf("unacknowledged manifest %s in %s is visible as %s but wrong: %v", m.dgst, m.repo, ref, err)
				default:
					seen = true
				}
			}
			if seen {
				visible.Add(1)
			}
		})
	}
	repos := make([]string, 0, len(tried))
	for r := range tried {
		repos = append(repos, r)
	}
	for _, repo := range repos {
		checks = append(checks, func() {
			st, _, body, err := crashDo(ctx, c, timeout, "GET", base+"/v2/"+repo+"/tags/list", nil, nil)
			if err != nil || st != http.StatusOK {
				l.errorf("tags of %s: status %d, %v: %s", repo, st, err, body)
				return
			}
			var list struct{ Tags []string }
			if err := json.Unmarshal(body, &list); err != nil {
				l.errorf("tags of %s: %v: %s", repo, err, body)
				return
			}
			listed := map[string]bool{}
			for _, tag := range list.Tags {
				listed[tag] = true
				if !tried[repo][tag] {
					l.errorf("tags of %s list %q, which no push named", repo, tag)
				}
			}
			for _, m := range mans {
				if m.repo == repo && !listed[m.tag] {
					l.errorf("tags of %s miss acknowledged tag %s (%s)", repo, m.tag, m.dgst)
				}
			}
		})
	}

	work := make(chan func())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	for _, f := range checks {
		work <- f
	}
	close(work)
	wg.Wait()
	l.mu.Lock()
	l.visibleUnacked = int(visible.Load())
	l.mu.Unlock()
}

// checkSession asks a restarted server about a session a kill interrupted
// and, if resume, finishes it.
func (l *crashLedger) checkSession(ctx context.Context, c *http.Client, base string, timeout time.Duration, s *crashSession, resume bool) {
	l.t.Helper()
	loc := base + s.location
	st, hdr, body, err := crashDo(ctx, c, timeout, "GET", loc, nil, nil)
	if err != nil {
		l.errorf("status of interrupted session %s: %v", s.id, err)
		return
	}
	if st == http.StatusNotFound && s.finishing {
		// The PUT in flight may have completed (or failed) before the kill:
		// the blob was never acknowledged, so it may be there or not.
		l.mu.Lock()
		delete(l.stalled, s.id)
		l.sessionsGone++
		l.unackBlobs = append(l.unackBlobs, crashBlob{repo: s.repo, dgst: s.dgst, size: int64(len(s.data))})
		l.mu.Unlock()
		return
	}
	if st != http.StatusNoContent {
		l.errorf("interrupted session %s in %s (acknowledged %d bytes, finishing=%v): status %d: %s",
			s.id, s.repo, s.acked, s.finishing, st, body)
		l.closeSession(s.id)
		return
	}
	n, err := crashRangeSize(hdr.Get("Range"))
	if err != nil || (n != s.acked && n != s.pendingEnd) {
		l.errorf("interrupted session %s in %s: Range %q after restart; acknowledged %d bytes, a request in flight would have made %d",
			s.id, s.repo, hdr.Get("Range"), s.acked, s.pendingEnd)
		l.closeSession(s.id)
		return
	}
	s.acked, s.pendingEnd = n, n
	if !resume {
		return // leave it for a later crash
	}
	if n < int64(len(s.data)) {
		h := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", n, len(s.data)-1)},
		}
		st, _, body, err := crashDo(ctx, c, timeout, "PATCH", loc, h, s.data[n:])
		if err != nil || st != http.StatusAccepted {
			l.errorf("resume interrupted session %s in %s at %d: status %d, %v: %s", s.id, s.repo, n, st, err, body)
			l.closeSession(s.id)
			return
		}
	}
	st, hdr, body, err = crashDo(ctx, c, timeout, "PUT", loc+"&digest="+url.QueryEscape(s.dgst), nil, nil)
	l.closeSession(s.id)
	if err != nil || st != http.StatusCreated {
		l.errorf("finish interrupted session %s in %s (finishing=%v): status %d, %v: %s\n  server log:\n%s",
			s.id, s.repo, s.finishing, st, err, body, crashGrep(l.logs(), s.id))
		return
	}
	if got := hdr.Get("Docker-Content-Digest"); got != s.dgst {
		l.errorf("finish interrupted session %s: Docker-Content-Digest %q, want %s", s.id, got, s.dgst)
	}
	b := crashBlob{repo: s.repo, dgst: s.dgst, size: int64(len(s.data))}
	l.ackBlob(b)
	l.mu.Lock()
	l.resumed++
	l.mu.Unlock()
}

// crashNotFound is a 404: absent, as an unacknowledged push may be.
type crashNotFound struct{ status int }

func (e crashNotFound) Error() string { return "not found (" + strconv.Itoa(e.status) + ")" }

func crashCheckBlob(ctx context.Context, c *http.Client, base string, timeout time.Duration, b crashBlob) error {
	u := base + "/v2/" + b.repo + "/blobs/" + b.dgst
	st, hdr, _, err := crashDo(ctx, c, timeout, "HEAD", u, nil, nil)
	if err != nil {
		return fmt.Errorf("HEAD: %w", err)
	}
	if st == http.StatusNotFound {
		return crashNotFound{st}
	}
	if st != http.StatusOK || hdr.Get("Content-Length") != strconv.FormatInt(b.size, 10) {
		return fmt.Errorf("HEAD: status %d, Content-Length %q", st, hdr.Get("Content-Length"))
	}
	st, hdr, body, err := crashDo(ctx, c, timeout, "GET", u, nil, nil)
	if err != nil {
		return fmt.Errorf("GET: %w", err)
	}
	if st != http.StatusOK {
		return fmt.Errorf("GET: status %d after HEAD 200: %.300s", st, body)
	}
	if int64(len(body)) != b.size {
		return fmt.Errorf("GET: %d bytes, want %d", len(body), b.size)
	}
	if got := crashDigest(body); got != b.dgst {
		return fmt.Errorf("GET: content hashes to %s", got)
	}
	if got := hdr.Get("Docker-Content-Digest"); got != b.dgst {
		return fmt.Errorf("GET: Docker-Content-Digest %q", got)
	}
	return nil
}

func crashCheckManifest(ctx context.Context, c *http.Client, base string, timeout time.Duration, m crashManifest, ref string) error {
	h := http.Header{"Accept": {"application/vnd.oci.image.manifest.v1+json"}}
	st, hdr, body, err := crashDo(ctx, c, timeout, "GET", base+"/v2/"+m.repo+"/manifests/"+ref, h, nil)
	if err != nil {
		return err
	}
	if st == http.StatusNotFound {
		return crashNotFound{st}
	}
	if st != http.StatusOK {
		return fmt.Errorf("status %d: %.300s", st, body)
	}
	if !bytes.Equal(body, m.payload) {
		return fmt.Errorf("payload differs: got %d bytes hashing to %s, want %d bytes (%s)", len(body), crashDigest(body), len(m.payload), m.dgst)
	}
	if got := hdr.Get("Docker-Content-Digest"); got != m.dgst {
		return fmt.Errorf("Docker-Content-Digest %q, want %s", got, m.dgst)
	}
	return nil
}

// crashRangeSize reads an upload's Range "0-<last>" as a byte count; "0-0"
// is an empty upload (the test never uploads a one-byte blob).
func crashRangeSize(r string) (int64, error) {
	last, ok := strings.CutPrefix(r, "0-")
	if !ok {
		return 0, fmt.Errorf("range %q", r)
	}
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("range %q: %w", r, err)
	}
	if n == 0 {
		return 0, nil
	}
	return n + 1, nil
}

// crashGrep returns the lines of log that mention s.
func crashGrep(log, s string) string {
	var out []string
	for line := range strings.Lines(log) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
