package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/internal/bench"
)

func newBenchCommand() *cobra.Command {
	var (
		cfg         bench.Config
		workloads   string
		insecure    bool
		caCert      string
		jsonOut     bool
		output      string
		noProgress  bool
		passwordEnv bool
		spread      []string
	)
	var names strings.Builder
	for _, w := range bench.Workloads() {
		fmt.Fprintf(&names, "  %-16s %s\n", w.Name, w.Description())
	}
	cmd := &cobra.Command{
		Use:   "bench --url URL",
		Short: "Benchmark a registry with zb's workloads",
		Long: `Benchmark any OCI distribution registry with the workloads of zot's zb.

Each workload makes -n requests on -c workers and reports requests/s, MB/s
(MB = MiB) and p50/p90/p99 latency. A request is a whole operation: a push
sends a unique layer, its config and a tagged manifest; a pull GETs a
manifest by tag, its config and its layer. Setup (the image a pull reads,
the repositories a catalog lists) is not timed. Repositories are named
PREFIX/<workload>-<run id>.

Workloads (--workloads takes names or kinds: push, pull, mixed):
` + names.String() + `
With --server-pid (a registry on this Linux machine) each result also
carries the server's CPU seconds in the measured phase and its peak RSS.

The exit status is 1 when any request failed.`,
		Example: `  berth bench --url http://127.0.0.1:5000 -c 4 -n 50
  berth bench --url https://localhost:5000 --cacert berth-data/pki/ca.crt --workloads pull,manifest-get --json
  berth bench loopback -c 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.URL == "" {
				return errors.New("--url is required (for example --url http://127.0.0.1:5000)")
			}
			switch output {
			case "text", "":
			case "json":
				jsonOut = true
			default:
				return fmt.Errorf("-o must be text or json, not %q", output)
			}
			ws, err := bench.SelectWorkloads(strings.Split(workloads, ","))
			if err != nil {
				return err
			}
			cfg.Workloads = ws
			if passwordEnv {
				cfg.Password = os.Getenv("BERTH_BENCH_PASSWORD")
			}
			if cfg.Password != "" && cfg.Username == "" {
				return errors.New("--password needs --username")
			}
			if cfg.HTTPClient, err = bench.NewHTTPClient(cfg.Concurrency, insecure, caCert); err != nil {
				return err
			}
			if len(spread) > 0 {
				if err := bench.SpreadConnections(cfg.HTTPClient, spread); err != nil {
					return err
				}
			}
			stdout := cmd.OutOrStdout()
			if !noProgress && isTerminal(stdout) && isTerminal(cmd.ErrOrStderr()) {
				cfg.Progress = cmd.ErrOrStderr()
				cfg.ProgressWidth = terminalWidth(cmd.ErrOrStderr())
			}
			if !jsonOut {
				bench.TextHeader(stdout, cfg.URL, cfg.Concurrency, cfg.Requests)
				cfg.OnResult = func(r bench.Result) { bench.TextRow(stdout, r) }
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, runErr := bench.Run(ctx, cfg)
			if rep == nil {
				return runErr
			}
			if jsonOut {
				if err := bench.WriteJSON(stdout, rep); err != nil {
					return err
				}
			} else {
				bench.TextFooter(stdout, rep)
			}
			if runErr != nil {
				return runErr
			}
			if rep.Failed() {
				return errors.New("some requests failed (see first_error)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "registry base URL, e.g. http://127.0.0.1:5000 (required)")
	f.IntVarP(&cfg.Concurrency, "concurrency", "c", 4, "requests in flight at once (workers)")
	f.IntVarP(&cfg.Requests, "requests", "n", 50, "requests per workload")
	f.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "limit on each workload's measured phase; requests still running then are abandoned (0: none)")
	f.StringVar(&workloads, "workloads", "all", "comma-separated workloads or kinds to run")
	f.StringVar(&cfg.RepoPrefix, "repo-prefix", "bench", "project that holds the benchmark's repositories")
	f.BoolVar(&insecure, "insecure", false, "skip TLS certificate verification")
	f.StringVar(&caCert, "cacert", "", "PEM file of a CA to trust besides the system's (e.g. berth-data/pki/ca.crt)")
	f.StringVar(&cfg.Username, "username", "", "HTTP Basic auth user")
	f.StringVar(&cfg.Password, "password", "", "HTTP Basic auth password (visible to other users in ps; see --password-env)")
	f.BoolVar(&passwordEnv, "password-env", false, "read the password from $BERTH_BENCH_PASSWORD")
	f.BoolVar(&jsonOut, "json", false, "print the results as JSON")
	f.StringVarP(&output, "output", "o", "text", "output format: text|json")
	f.BoolVar(&noProgress, "no-progress", false, "draw no progress bar (it is drawn only on a terminal)")
	f.Int64Var(&cfg.ChunkSize, "chunk-size", 10<<20, "PATCH size in bytes of chunked pushes")
	f.IntVar(&cfg.CatalogRepos, "catalog-repos", 50, "repositories the catalog workload creates before it runs")
	f.IntVar(&cfg.Tags, "tags", 50, "tags the tags workload puts on one image before it runs")
	f.StringSliceVar(&spread, "spread", nil, "host:port of each instance of the registry (several instances sharing a store): connections open round robin to them, as behind a TCP load balancer; --url still names the host TLS checks")
	f.IntVar(&cfg.ServerPID, "server-pid", 0, "process ID of the registry on this machine, to report its CPU time and peak RSS (Linux)")
	cmd.AddCommand(newBenchLoopbackCommand())
	return cmd
}

func newBenchLoopbackCommand() *cobra.Command {
	var (
		streams  int
		duration time.Duration
		size     int64
		trials   int
		jsonOut  bool
	)
	cmd := &cobra.Command{
		Use:   "loopback",
		Short: "Measure what 127.0.0.1 carries: raw TCP and plain HTTP GETs of an in-memory blob",
		Long: `Measure this machine's loopback ceiling for blob transfers, in this one
process: raw TCP (1 MiB writes and reads per stream) and HTTP GETs of an
in-memory blob by the client the workloads use. A registry on the same
machine cannot pull faster than these.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			lb, err := bench.MeasureLoopback(ctx, streams, duration, size, trials)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				return writeJSON(out, lb)
			}
			fmt.Fprintf(out, "loopback, %d streams, best of %d trials of %s:\n  raw TCP    %9.1f MB/s %v\n  HTTP GET   %9.1f MB/s %v (%d MiB blob from memory)\n",
				lb.Streams, lb.Trials, duration, lb.TCPMBPerSec, lb.TCPAll, lb.HTTPMBPerSec, lb.HTTPAll, lb.BlobSize>>20)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&streams, "concurrency", "c", 4, "connections at once")
	f.DurationVar(&duration, "duration", time.Second, "how long each trial runs")
	f.IntVar(&trials, "trials", 3, "trials of each measurement; the best is reported")
	f.Int64Var(&size, "size", 100<<20, "bytes of the blob the HTTP measurement GETs")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 20 {
			return width
		}
	}
	return 80
}
