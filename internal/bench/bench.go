// Package bench runs zb-style workloads (zot's registry benchmark)
// against any OCI distribution registry: monolithic and chunked pushes,
// pulls, manifest GETs by tag, catalog GETs and a 75/25 pull/push mix. It
// measures requests and MiB per second and latency percentiles, and,
// given the server's process ID on the same Linux machine, the server's
// CPU time and peak memory.
//
// A "request" is one workload operation, which is several HTTP requests:
// a push is POST+PUT (or POST+PATCH…+PUT) for the layer, the same for its
// config, and a manifest PUT with a tag; a pull is a manifest GET by tag
// and a GET of the config and of the layer.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// MiB is 2^20 bytes. Sizes and rates are in MiB, as in zb; the reports
// write "MB" for them.
const MiB = 1 << 20

// Config says what to run and where.
type Config struct {
	// URL is the registry's base URL, like http://127.0.0.1:5000.
	URL string
	// Concurrency is the number of workers issuing requests at once.
	Concurrency int
	// Requests is how many requests each workload makes in total.
	Requests int
	// Timeout bounds each workload's measured phase: when it passes no
	// request starts and those in flight are abandoned (counted as
	// canceled). Zero means no limit.
	Timeout time.Duration
	// Workloads to run, in order; nil means all.
	Workloads []Workload
	// RepoPrefix is the project part of every repository the run uses;
	// repositories are RepoPrefix/<workload>-<run id>.
	RepoPrefix string
	// Username and Password, when Username is set, go with every request
	// as HTTP Basic auth.
	Username, Password string
	// HTTPClient makes the requests; nil means NewHTTPClient(Concurrency,
	// false, "").
	HTTPClient *http.Client

	// SmallSize, MediumSize and LargeSize are the layer sizes of the 1m,
	// 10m and 100m workloads: 1, 10 and 100 MiB unless set (tests make
	// them small).
	SmallSize, MediumSize, LargeSize int64
	// ChunkSize is the PATCH size of chunked pushes: 10 MiB unless set.
	ChunkSize int64
	// CatalogRepos is how many repositories the catalog workload creates
	// before it runs (default 50), and CatalogPage the n it asks for
	// (default 100), so that registries that page differently by default
	// do the same work.
	CatalogRepos, CatalogPage int
	// Tags is how many tags the tags workload puts on one image before it
	// runs (default 50); it asks for pages of CatalogPage.
	Tags int

	// ServerPID, when not zero, is the registry's process on this Linux
	// machine: each result then carries its CPU time during the measured
	// phase and its peak RSS.
	ServerPID int
	// Progress, when not nil, gets a progress bar redrawn in place (write
	// it to a terminal only); ProgressWidth is its width in columns.
	Progress      io.Writer
	ProgressWidth int
	// OnResult, when not nil, is called with each result as it is ready.
	OnResult func(Result)
}

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("no registry URL")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.Requests <= 0 {
		return errors.New("the number of requests must be positive")
	}
	if c.Workloads == nil {
		c.Workloads = Workloads()
	}
	if c.RepoPrefix == "" {
		c.RepoPrefix = "bench"
	}
	defaults := []struct {
		p   *int64
		def int64
	}{{&c.SmallSize, 1 * MiB}, {&c.MediumSize, 10 * MiB}, {&c.LargeSize, 100 * MiB}, {&c.ChunkSize, 10 * MiB}}
	for _, d := range defaults {
		if *d.p <= 0 {
			*d.p = d.def
		}
	}
	if c.Tags <= 0 {
		c.Tags = 50
	}
	if c.CatalogRepos <= 0 {
		c.CatalogRepos = 50
	}
	if c.CatalogPage <= 0 {
		c.CatalogPage = 100
	}
	if c.ProgressWidth <= 0 {
		c.ProgressWidth = 80
	}
	return nil
}

func (c *Config) size(s SizeClass) int64 {
	switch s {
	case Small:
		return c.SmallSize
	case Medium:
		return c.MediumSize
	case Large:
		return c.LargeSize
	}
	return 0
}

// Report is the outcome of a run.
type Report struct {
	URL         string    `json:"url"`
	Concurrency int       `json:"concurrency"`
	Requests    int       `json:"requests"`
	RunID       string    `json:"run_id"`
	Started     time.Time `json:"started"`
	GoVersion   string    `json:"go_version"`
	CPUs        int       `json:"cpus"`
	Results     []Result  `json:"results"`
}

// Failed reports whether any workload had an error.
func (r *Report) Failed() bool {
	return slices.ContainsFunc(r.Results, func(res Result) bool { return res.Errors > 0 || res.SetupError != "" })
}

// Run runs cfg's workloads one after another and reports on each. It
// fails only when the run cannot start (bad configuration, registry not
// answering); a workload's failed requests are counted in its result.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		var err error
		if hc, err = NewHTTPClient(cfg.Concurrency, false, ""); err != nil {
			return nil, err
		}
	}
	c, err := newClient(cfg.URL, hc, cfg.Username, cfg.Password)
	if err != nil {
		return nil, err
	}
	if err := c.ping(ctx); err != nil {
		return nil, fmt.Errorf("registry at %s: %w", cfg.URL, err)
	}
	maxSize := int64(4096) // the small images manifest-get and catalog push
	for _, w := range cfg.Workloads {
		maxSize = max(maxSize, cfg.size(w.Size))
	}
	idb := make([]byte, 4)
	_, _ = rand.Read(idb)
	r := &runner{cfg: cfg, c: c, runID: hex.EncodeToString(idb), blobs: newBlobFactory(maxSize)}
	rep := &Report{
		URL: cfg.URL, Concurrency: cfg.Concurrency, Requests: cfg.Requests, RunID: r.runID,
		Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
	}
	for _, w := range cfg.Workloads {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		res := r.run(ctx, w)
		rep.Results = append(rep.Results, res)
		if cfg.OnResult != nil {
			cfg.OnResult(res)
		}
	}
	return rep, nil
}

type runner struct {
	cfg   Config
	c     *client
	runID string
	blobs *blobFactory
}

func (r *runner) repo(name string) string { return r.cfg.RepoPrefix + "/" + name + "-" + r.runID }

// op does request i of a workload and returns the bytes it moved and,
// for a mixed workload, which operation it was.
type op func(ctx context.Context, i int, buf []byte) (int64, string, error)

// setup prepares w (pushing what its requests read) and returns its op.
func (r *runner) setup(ctx context.Context, w Workload) (op, error) {
	size := r.cfg.size(w.Size)
	if w.MovesData() {
		if _, err := r.blobs.prepare(size); err != nil {
			return nil, err
		}
	}
	repo := r.repo(w.Name)
	push := func(ctx context.Context, tag string, chunk int64) (int64, error) {
		layer, err := r.blobs.layer(size)
		if err != nil {
			return 0, err
		}
		return r.c.pushImage(ctx, repo, tag, layer, chunk)
	}
	// seed pushes one small image into repo as tag.
	seed := func(repo, tag string) error {
		layer, err := r.blobs.layer(4096)
		if err != nil {
			return err
		}
		_, err = r.c.pushImage(ctx, repo, tag, layer, 0)
		return err
	}
	switch w.Kind {
	case KindPush:
		chunk := int64(0)
		if w.Chunked {
			chunk = r.cfg.ChunkSize
		}
		return func(ctx context.Context, i int, _ []byte) (int64, string, error) {
			n, err := push(ctx, "p"+strconv.Itoa(i), chunk)
			return n, "push", err
		}, nil
	case KindPull:
		if _, err := push(ctx, "latest", 0); err != nil {
			return nil, fmt.Errorf("pushing the image to pull: %w", err)
		}
		return func(ctx context.Context, _ int, buf []byte) (int64, string, error) {
			n, err := r.c.pull(ctx, repo, "latest", buf)
			return n, "pull", err
		}, nil
	case KindMixed:
		if _, err := push(ctx, "latest", 0); err != nil {
			return nil, fmt.Errorf("pushing the image to pull: %w", err)
		}
		return func(ctx context.Context, i int, buf []byte) (int64, string, error) {
			if i%4 == 3 { // exactly one request in four, the same ones every run
				n, err := push(ctx, "m"+strconv.Itoa(i), 0)
				return n, "push", err
			}
			n, err := r.c.pull(ctx, repo, "latest", buf)
			return n, "pull", err
		}, nil
	case KindManifest:
		if err := seed(repo, "latest"); err != nil {
			return nil, fmt.Errorf("pushing the image to read: %w", err)
		}
		return func(ctx context.Context, _ int, _ []byte) (int64, string, error) {
			b, err := r.c.getManifest(ctx, repo, "latest")
			return int64(len(b)), "manifest", err
		}, nil
	case KindCatalog:
		for i := range r.cfg.CatalogRepos {
			if err := seed(r.repo(w.Name+"-"+strconv.Itoa(i)), "latest"); err != nil {
				return nil, fmt.Errorf("creating repositories to list: %w", err)
			}
		}
		return func(ctx context.Context, _ int, buf []byte) (int64, string, error) {
			n, err := r.c.catalog(ctx, r.cfg.CatalogPage, buf)
			return n, "catalog", err
		}, nil
	case KindTags:
		if err := seed(repo, "t0"); err != nil {
			return nil, fmt.Errorf("pushing the image to tag: %w", err)
		}
		m, err := r.c.getManifest(ctx, repo, "t0")
		if err != nil {
			return nil, fmt.Errorf("reading the image to tag: %w", err)
		}
		for i := 1; i < r.cfg.Tags; i++ {
			if err := r.c.putManifest(ctx, repo, "t"+strconv.Itoa(i), m); err != nil {
				return nil, fmt.Errorf("tagging the image: %w", err)
			}
		}
		return func(ctx context.Context, _ int, buf []byte) (int64, string, error) {
			n, err := r.c.tags(ctx, repo, r.cfg.CatalogPage, buf)
			return n, "tags", err
		}, nil
	}
	return nil, fmt.Errorf("unknown workload kind %q", w.Kind)
}

type sample struct {
	latency time.Duration
	bytes   int64
}

// run sets w up, then runs its requests on Concurrency workers.
func (r *runner) run(ctx context.Context, w Workload) Result {
	res := Result{
		Workload: w.Name, Description: w.Description(), Kind: w.Kind,
		BlobSize: r.cfg.size(w.Size), Concurrency: r.cfg.Concurrency, Requested: r.cfg.Requests,
	}
	bar := newProgress(r.cfg.Progress, r.cfg.ProgressWidth, w.Name, r.cfg.Requests)
	defer bar.finish()

	setupStart := time.Now()
	do, err := r.setup(ctx, w)
	res.SetupSeconds = time.Since(setupStart).Seconds()
	if err != nil {
		res.SetupError = err.Error()
		return res
	}

	mctx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.Timeout > 0 {
		mctx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
	}
	defer cancel()

	var (
		next     atomic.Int64
		mu       sync.Mutex
		samples  = make([]sample, 0, r.cfg.Requests)
		errCount int
		canceled int
		firstErr string
		ops      = map[string]int{}
		wg       sync.WaitGroup
	)
	srv0 := readProc(r.cfg.ServerPID)
	cpu0 := selfCPU()
	bar.start()
	start := time.Now()
	for range r.cfg.Concurrency {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			local := make([]sample, 0, r.cfg.Requests/r.cfg.Concurrency+1)
			localOps := map[string]int{}
			var localErrs, localCanceled int
			var localFirst string
			for mctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= r.cfg.Requests {
					break
				}
				t0 := time.Now()
				n, kind, err := do(mctx, i, buf)
				lat := time.Since(t0)
				switch {
				case err == nil:
					local = append(local, sample{lat, n})
					localOps[kind]++
				case mctx.Err() != nil:
					localCanceled++
				default:
					localErrs++
					if localFirst == "" {
						localFirst = err.Error()
					}
				}
				bar.add()
			}
			mu.Lock()
			defer mu.Unlock()
			samples = append(samples, local...)
			errCount += localErrs
			canceled += localCanceled
			if firstErr == "" {
				firstErr = localFirst
			}
			for k, v := range localOps {
				ops[k] += v
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := selfCPU()
	srv1 := readProc(r.cfg.ServerPID)
	bar.finish()

	res.TimedOut = mctx.Err() != nil && ctx.Err() == nil
	res.Completed = len(samples)
	res.Errors = errCount
	res.Canceled = canceled
	res.FirstError = firstErr
	if len(ops) > 1 {
		res.Ops = ops
	}
	res.summarize(samples, elapsed)
	if cpu0 >= 0 && cpu1 >= 0 {
		res.ClientCPUSeconds = round3(cpu1 - cpu0)
	}
	var moved int64 // CPU per MB means something only where blobs move
	if w.MovesData() {
		moved = res.Bytes
	}
	res.Server = serverStats(srv0, srv1, moved)
	return res
}
