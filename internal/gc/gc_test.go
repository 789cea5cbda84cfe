package gc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/storage"
	"github.com/berth-registry/berth/internal/storage/memory"
	"github.com/berth-registry/berth/internal/store"
	"github.com/berth-registry/berth/internal/store/pgtest"
)

func openSQLite(t *testing.T) *store.Store {
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t *testing.T) *store.Store {
	s, err := store.OpenPostgres(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var dialects = []struct {
	name string
	open func(*testing.T) *store.Store
}{{"SQLite", openSQLite}, {"PostgreSQL", openPostgres}}

const st = store.DefaultStorage

// world is a registry without HTTP: a store, a memory storage, and the
// pushes that real clients make, step by step.
type world struct {
	t     *testing.T
	s     *store.Store
	d     *memory.Driver
	mu    sync.Mutex
	bytes map[digest.Digest][]byte // every blob ever written
}

func newWorld(t *testing.T, s *store.Store) *world {
	return &world{t: t, s: s, d: memory.NewDriver(), bytes: map[digest.Digest][]byte{}}
}

func (w *world) collector() *gc.Collector {
	return &gc.Collector{Store: w.s, Storages: func() (string, map[string]storage.Deleter) {
		return st, map[string]storage.Deleter{st: w.d}
	}}
}

// upload pushes blob b into repo as the registry does: a mount when some
// repository holds it, else a claim, the bytes, and their record.
func (w *world) upload(ctx context.Context, repo string, b []byte) (digest.Digest, error) {
	dgst := digest.FromBytes(b)
	w.mu.Lock()
	w.bytes[dgst] = b
	w.mu.Unlock()
	if ok, err := w.s.MountBlob(ctx, store.Only(st), repo, "", dgst); err != nil || ok {
		return dgst, err
	}
	claim, err := w.s.ClaimBlob(ctx, st, dgst, int64(len(b)))
	if err != nil {
		return dgst, err
	}
	up := storage.Upload{ID: fmt.Sprintf("u%x", rand.Uint64())}
	if _, _, err := w.d.Append(ctx, up, 0, bytes.NewReader(b)); err != nil {
		return dgst, err
	}
	if err := w.d.Commit(ctx, up, dgst, int64(len(b))); err != nil {
		return dgst, err
	}
	return dgst, w.s.LinkClaimed(ctx, st, repo, claim)
}

// push pushes an image of layers into repo, tagged tag ("" by digest),
// uploading its blobs first, and tries again from the start when a blob
// it uploaded was collected before its record or before the manifest came
// (the grace period is 0 here: only the store's locks protect a push, and
// a push may have to be made again, never find an image broken).
func (w *world) push(ctx context.Context, repo, tag string, layers [][]byte) (store.Manifest, error) {
	for attempt := 0; ; attempt++ {
		m := store.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json"}
		var payload bytes.Buffer
		fmt.Fprintf(&payload, `{"schemaVersion":2,"tag":%q,"layers":[`, tag)
		retry := false
		for i, l := range layers {
			d, err := w.upload(ctx, repo, l)
			if errors.As(err, new(*store.BlobCollectedError)) && attempt < 50 {
				retry = true // as a client does after BLOB_UPLOAD_UNKNOWN
				break
			}
			if err != nil {
				return m, err
			}
			m.References = append(m.References, store.Reference{Digest: d, Size: int64(len(l)), Required: true})
			if i > 0 {
				payload.WriteByte(',')
			}
			fmt.Fprintf(&payload, "%q", d)
		}
		if retry {
			continue
		}
		payload.WriteString("]}")
		m.Payload = payload.Bytes()
		m.Digest = digest.FromBytes(m.Payload)
		var tags []string
		if tag != "" {
			tags = []string{tag}
		}
		err := w.s.PutManifest(ctx, store.Only(st), repo, m, tags)
		var missing *store.MissingReferenceError
		if errors.As(err, &missing) && attempt < 50 {
			continue // as a client does after MANIFEST_BLOB_UNKNOWN
		}
		return m, err
	}
}

func (w *world) present(dgst digest.Digest) ([]byte, bool) {
	r, err := w.d.Open(context.Background(), dgst, 0, -1)
	if err != nil {
		return nil, false
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		w.t.Fatalf("read %s: %v", dgst, err)
	}
	return b, true
}

// Collections run back to back, with no grace period at all, while
// writers push images that share base layers (mounting them), push
// untagged images and delete them, and abandon uploads. Afterwards every
// acknowledged image is whole, byte for byte; and after a last collection
// the storage holds exactly the blobs that kept images reference.
func TestCollectionUnderLoad(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect.name, func(t *testing.T) {
			w := newWorld(t, dialect.open(t))
			ctx := context.Background()
			base := [][]byte{[]byte("base layer one"), []byte("base layer two"), []byte("base layer three")}
			type pushed struct {
				repo, tag string
				m         store.Manifest
				deleted   bool
			}
			var mu sync.Mutex
			var acked []*pushed
			const writers, rounds = 3, 25
			var wg sync.WaitGroup
			for wr := range writers {
				wg.Go(func() {
					repo := fmt.Sprintf("p/app%d", wr%2)
					for i := range rounds {
						unique := []byte(fmt.Sprintf("layer of writer %d round %d", wr, i))
						layers := [][]byte{base[i%len(base)], base[(i+wr)%len(base)], unique}
						tag := fmt.Sprintf("w%d-r%d", wr, i)
						if i%3 == 2 {
							tag = "" // pushed by digest, deleted below
						}
						m, err := w.push(ctx, repo, tag, layers)
						if err != nil {
							t.Errorf("push %s:%s: %v", repo, tag, err)
							return
						}
						p := &pushed{repo: repo, tag: tag, m: m}
						if tag == "" {
							if err := w.s.DeleteManifest(ctx, repo, m.Digest); err != nil {
								t.Errorf("delete %s@%s: %v", repo, m.Digest, err)
								return
							}
							p.deleted = true
						}
						mu.Lock()
						acked = append(acked, p)
						mu.Unlock()
						if i%5 == 4 {
							// An abandoned push: a layer no manifest names.
							// With no grace period it may be collected before
							// its record: refused, as a client is told.
							_, err := w.upload(ctx, repo, []byte(fmt.Sprintf("abandoned %d %d", wr, i)))
							if err != nil && !errors.As(err, new(*store.BlobCollectedError)) {
								t.Errorf("upload: %v", err)
								return
							}
						}
					}
				})
			}
			stop := make(chan struct{})
			collected := make(chan int)
			zero := time.Duration(0)
			c := w.collector()
			go func() {
				runs := 0
				for {
					select {
					case <-stop:
						collected <- runs
						return
					default:
					}
					if _, err := c.Run(ctx, gc.Options{Grace: &zero}); err != nil {
						t.Errorf("collection: %v", err)
					}
					runs++
				}
			}()
			wg.Wait()
			close(stop)
			runs := <-collected
			if t.Failed() {
				return
			}
			t.Logf("%d images pushed while %d collections ran", len(acked), runs)

			rep, err := c.Run(ctx, gc.Options{Grace: &zero})
			if err != nil || len(rep.Errors) > 0 {
				t.Fatalf("last collection: %v %v", err, rep.Errors)
			}
			live := map[digest.Digest]bool{}
			for _, p := range acked {
				if p.deleted {
					continue
				}
				got, err := w.s.Manifest(ctx, p.repo, p.tag)
				if err != nil || got.Digest != p.m.Digest {
					t.Fatalf("%s:%s = %v, %v; want %s", p.repo, p.tag, got.Digest, err, p.m.Digest)
				}
				for _, ref := range p.m.References {
					live[ref.Digest] = true
					if _, err := w.s.BlobSize(ctx, store.Only(st), p.repo, ref.Digest); err != nil {
						t.Fatalf("%s:%s layer %s: %v", p.repo, p.tag, ref.Digest, err)
					}
					b, ok := w.present(ref.Digest)
					if !ok || digest.FromBytes(b) != ref.Digest {
						t.Fatalf("%s:%s layer %s: bytes present %v, digest %s", p.repo, p.tag, ref.Digest, ok, digest.FromBytes(b))
					}
				}
			}
			deletedOnly := 0
			for dgst := range w.bytes {
				_, ok := w.present(dgst)
				switch {
				case live[dgst] && !ok:
					t.Errorf("blob %s of a kept image has no bytes", dgst)
				case !live[dgst] && ok:
					t.Errorf("blob %s, which no kept image references, still has bytes after the last collection", dgst)
				case !live[dgst]:
					deletedOnly++
				}
			}
			if deletedOnly == 0 {
				t.Fatal("nothing was collected: the test exercised nothing")
			}
			cands, err := w.s.GCBlobCandidates(ctx, time.Now().Add(time.Hour), time.Now().Add(time.Hour), "", 10)
			if err != nil || len(cands) != 0 {
				t.Fatalf("unreferenced blobs left: %+v, %v", cands, err)
			}
		})
	}
}

// A dry run lists what a run then deletes: the same manifests and blobs,
// with their bytes, and deletes nothing itself.
func TestDryRunForecastsTheRun(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect.name, func(t *testing.T) {
			w := newWorld(t, dialect.open(t))
			ctx := context.Background()
			kept, err := w.push(ctx, "p/a", "v1", [][]byte{[]byte("shared"), []byte("kept")})
			if err != nil {
				t.Fatal(err)
			}
			gone, err := w.push(ctx, "p/a", "", [][]byte{[]byte("shared"), []byte("only in the deleted image")})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.s.DeleteManifest(ctx, "p/a", gone.Digest); err != nil {
				t.Fatal(err)
			}
			loose, err := w.upload(ctx, "p/b", []byte("abandoned upload"))
			if err != nil {
				t.Fatal(err)
			}
			zero := time.Duration(0)
			c := w.collector()
			dry, err := c.Run(ctx, gc.Options{DryRun: true, Grace: &zero})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := w.present(loose); !ok {
				t.Fatal("a dry run deleted bytes")
			}
			real, err := c.Run(ctx, gc.Options{Grace: &zero})
			if err != nil {
				t.Fatal(err)
			}
			want := map[digest.Digest]string{gone.Digest: "manifest", gone.References[1].Digest: "blob", loose: "blob"}
			for name, rep := range map[string]gc.Report{"dry run": dry, "run": real} {
				got := map[digest.Digest]string{}
				for _, it := range rep.Items {
					got[it.Digest] = it.Kind
					if it.Reason == "" {
						t.Errorf("%s: %s has no reason", name, it.Digest)
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s items = %v, want %v", name, got, want)
				}
				if rep.ManifestsDeleted != 1 || rep.BlobsDeleted != 2 {
					t.Errorf("%s: %d manifests, %d blobs", name, rep.ManifestsDeleted, rep.BlobsDeleted)
				}
				if wantBytes := int64(len("only in the deleted image") + len("abandoned upload")); rep.BytesFreed != wantBytes {
					t.Errorf("%s: bytes freed %d, want %d", name, rep.BytesFreed, wantBytes)
				}
			}
			for _, ref := range kept.References {
				if _, ok := w.present(ref.Digest); !ok {
					t.Errorf("blob %s of the kept image deleted", ref.Digest)
				}
			}
			if _, ok := w.present(loose); ok {
				t.Error("the abandoned upload's bytes survived the run")
			}

			// Read-only: nothing is deleted, a dry run still reports.
			orphan, err := w.upload(ctx, "p/b", []byte("abandoned while read-only"))
			if err != nil {
				t.Fatal(err)
			}
			c.ReadOnly = func() bool { return true }
			if _, err := c.Run(ctx, gc.Options{Grace: &zero}); !errors.Is(err, gc.ErrReadOnly) {
				t.Fatalf("a run while read-only = %v", err)
			}
			if rep, err := c.Run(ctx, gc.Options{DryRun: true, Grace: &zero}); err != nil || rep.BlobsDeleted != 1 {
				t.Fatalf("a dry run while read-only = %+v, %v", rep, err)
			}
			if _, ok := w.present(orphan); !ok {
				t.Fatal("bytes deleted while read-only")
			}
		})
	}
}

// gatedDeleter holds the deletion of one blob until it is let go.
type gatedDeleter struct {
	storage.Deleter
	blob    digest.Digest
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	deleted []digest.Digest
}

func (g *gatedDeleter) Delete(ctx context.Context, dgst digest.Digest) error {
	if dgst == g.blob {
		close(g.entered)
		<-g.release
	}
	g.mu.Lock()
	g.deleted = append(g.deleted, dgst)
	g.mu.Unlock()
	return g.Deleter.Delete(ctx, dgst)
}

// Two collections at once (two instances, or berth adm gc beside the
// scheduled run): a blob one of them took is its own until it finishes;
// the other neither takes it nor deletes its bytes, so it cannot delete
// the bytes of the same blob pushed again after the first finished.
func TestConcurrentCollectionsOwnWhatTheyTake(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect.name, func(t *testing.T) {
			w := newWorld(t, dialect.open(t))
			ctx := context.Background()
			x, err := w.upload(ctx, "p/a", []byte("abandoned, collected twice at once"))
			if err != nil {
				t.Fatal(err)
			}
			gate := &gatedDeleter{Deleter: w.d, blob: x, entered: make(chan struct{}), release: make(chan struct{})}
			slow := &gc.Collector{Store: w.s, Storages: func() (string, map[string]storage.Deleter) {
				return st, map[string]storage.Deleter{st: gate}
			}}
			zero := time.Duration(0)
			done := make(chan gc.Report, 1)
			go func() {
				rep, err := slow.Run(ctx, gc.Options{Grace: &zero})
				if err != nil {
					t.Error(err)
				}
				done <- rep
			}()
			<-gate.entered
			other := &gatedDeleter{Deleter: w.d, entered: make(chan struct{})}
			fast := &gc.Collector{Store: w.s, Storages: func() (string, map[string]storage.Deleter) {
				return st, map[string]storage.Deleter{st: other}
			}}
			rep, err := fast.Run(ctx, gc.Options{Grace: &zero})
			if err != nil {
				t.Fatal(err)
			}
			if rep.BlobsDeleted != 0 || len(other.deleted) != 0 {
				t.Fatalf("the second collection took a blob the first holds: %+v, deleted %v", rep, other.deleted)
			}
			if err := fast.Resume(ctx); err != nil || len(other.deleted) != 0 {
				t.Fatalf("Resume took a blob held for less than gc.StaleAfter: %v, deleted %v", err, other.deleted)
			}
			close(gate.release)
			if first := <-done; first.BlobsDeleted != 1 {
				t.Fatalf("the first collection deleted %d blobs, want 1", first.BlobsDeleted)
			}
			if _, ok := w.present(x); ok {
				t.Fatal("the bytes survived")
			}
		})
	}
}

// A storage that refuses to delete leaves the blob for a later run (let
// go: uploads of it go on); one whose deletion timed out leaves it held,
// since that deletion may still land, until a run takes it over.
type failingDeleter struct{ err error }

func (f failingDeleter) Delete(context.Context, digest.Digest) error { return f.err }

func TestFailedDeletionsAreRetried(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect.name, func(t *testing.T) {
			w := newWorld(t, dialect.open(t))
			ctx := context.Background()
			x, err := w.upload(ctx, "p/a", []byte("hard to delete"))
			if err != nil {
				t.Fatal(err)
			}
			zero := time.Duration(0)
			for _, c := range []struct {
				err  error
				held bool
			}{{errors.New("permission denied"), false}, {context.DeadlineExceeded, true}} {
				broken := &gc.Collector{Store: w.s, Storages: func() (string, map[string]storage.Deleter) {
					return st, map[string]storage.Deleter{st: failingDeleter{c.err}}
				}}
				rep, err := broken.Run(ctx, gc.Options{Grace: &zero})
				if err != nil || len(rep.Errors) != 1 || rep.BlobsDeleted != 0 {
					t.Fatalf("run over a storage failing with %v: %+v, %v", c.err, rep, err)
				}
				claimed := make(chan error, 1)
				go func() {
					cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
					defer cancel()
					_, err := w.s.ClaimBlob(cctx, st, x, int64(len("hard to delete")))
					claimed <- err
				}()
				err = <-claimed
				if c.held && err == nil {
					t.Fatalf("after a deletion that timed out, the blob is claimable at once")
				}
				if !c.held && err != nil {
					t.Fatalf("after a refused deletion, claiming the blob = %v", err)
				}
			}
			// Held: a run within gc.StaleAfter leaves it, and the bytes stay.
			healthy := w.collector()
			if rep, err := healthy.Run(ctx, gc.Options{Grace: &zero}); err != nil || rep.BlobsDeleted != 0 {
				t.Fatalf("a run took over a fresh hold: %+v, %v", rep, err)
			}
			if _, ok := w.present(x); !ok {
				t.Fatal("bytes deleted while another collection held the blob")
			}
		})
	}
}
