package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Loopback is what this machine's loopback carries, the ceiling for a
// registry's large-blob throughput when client and server share it. Each
// figure is the best of several trials: on a shared machine the best is
// the closest to what the hardware can do.
type Loopback struct {
	Streams int `json:"streams"`
	// TCPMBPerSec is raw TCP: a sender writing 1 MiB buffers and a
	// receiver reading them, per stream, in this process.
	TCPMBPerSec float64 `json:"tcp_mb_per_s"`
	// HTTPMBPerSec is GETs of an in-memory blob from a net/http server by
	// the client the workloads use: what a registry that did no work
	// at all would reach.
	HTTPMBPerSec float64 `json:"http_mb_per_s"`
	BlobSize     int64   `json:"http_blob_size"`
	// Trials is how many times each was measured, for Seconds each.
	Trials  int       `json:"trials"`
	Seconds float64   `json:"seconds"`
	TCPAll  []float64 `json:"tcp_trials_mb_per_s"`
	HTTPAll []float64 `json:"http_trials_mb_per_s"`
}

// MeasureLoopback measures raw TCP and plain HTTP GET throughput over
// 127.0.0.1 with streams connections, trials times for about d each,
// and keeps the best of each.
func MeasureLoopback(ctx context.Context, streams int, d time.Duration, blobSize int64, trials int) (*Loopback, error) {
	streams, trials = max(streams, 1), max(trials, 1)
	if blobSize <= 0 {
		blobSize = 100 * MiB
	}
	lb := &Loopback{Streams: streams, BlobSize: blobSize, Trials: trials, Seconds: d.Seconds()}
	for range trials {
		tcp, err := loopbackTCP(ctx, streams, d)
		if err != nil {
			return nil, fmt.Errorf("loopback TCP: %w", err)
		}
		httpRate, err := loopbackHTTP(ctx, streams, d, blobSize)
		if err != nil {
			return nil, fmt.Errorf("loopback HTTP: %w", err)
		}
		lb.TCPAll = append(lb.TCPAll, round3(tcp))
		lb.HTTPAll = append(lb.HTTPAll, round3(httpRate))
	}
	lb.TCPMBPerSec, lb.HTTPMBPerSec = slices.Max(lb.TCPAll), slices.Max(lb.HTTPAll)
	return lb, nil
}

func loopbackTCP(ctx context.Context, streams int, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	src := make([]byte, 1<<20)
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				for {
					if _, err := c.Write(src); err != nil {
						return
					}
				}
			})
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	start := time.Now()
	for range streams {
		wg.Go(func() {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
			defer stop()
			buf := make([]byte, 1<<20)
			for {
				n, err := c.Read(buf)
				total.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ln.Close()
	conns.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(total.Load()) / MiB / elapsed.Seconds(), nil
}

func loopbackHTTP(ctx context.Context, streams int, d time.Duration, size int64) (float64, error) {
	blob := newBlobFactory(size).base
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	hc, err := NewHTTPClient(streams, false, "")
	if err != nil {
		return 0, err
	}
	defer hc.CloseIdleConnections()
	c, err := newClient("http://"+ln.Addr().String(), hc, "", "")
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var total atomic.Int64
	var wg sync.WaitGroup
	var (
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for range streams {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for ctx.Err() == nil {
				n, err := c.getBlob(ctx, "x/y", "sha256:0", -1, buf)
				total.Add(n)
				if err != nil && ctx.Err() == nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil && !errors.Is(firstErr, context.DeadlineExceeded) {
		return 0, firstErr
	}
	return float64(total.Load()) / MiB / time.Since(start).Seconds(), nil
}
