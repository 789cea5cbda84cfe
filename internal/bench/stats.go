package bench

import (
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is one workload's outcome.
type Result struct {
	Workload    string `json:"workload"`
	Description string `json:"description"`
	Kind        Kind   `json:"kind"`
	// BlobSize is the layer size in bytes, 0 for workloads without one.
	BlobSize    int64 `json:"blob_size,omitempty"`
	Concurrency int   `json:"concurrency"`
	// Requested is how many requests the run asked for; Completed,
	// Errors and Canceled (abandoned at the timeout) account for those
	// that started.
	Requested int  `json:"requested"`
	Completed int  `json:"completed"`
	Errors    int  `json:"errors"`
	Canceled  int  `json:"canceled,omitempty"`
	TimedOut  bool `json:"timed_out,omitempty"`
	// Ops counts completed requests by operation in a mixed workload.
	Ops map[string]int `json:"ops,omitempty"`
	// ElapsedSeconds is the measured phase's wall time; setup (pushing
	// what pulls read, creating repositories to list) is not in it.
	ElapsedSeconds float64 `json:"elapsed_s"`
	SetupSeconds   float64 `json:"setup_s"`
	// Bytes is the body bytes of completed requests, both directions.
	Bytes         int64   `json:"bytes"`
	ReqPerSec     float64 `json:"req_per_s"`
	MBPerSec      float64 `json:"mb_per_s"`
	LatencyMillis Latency `json:"latency_ms"`
	// ClientCPUSeconds is this process's CPU time in the measured phase.
	ClientCPUSeconds float64      `json:"client_cpu_s"`
	Server           *ServerStats `json:"server,omitempty"`
	SetupError       string       `json:"setup_error,omitempty"`
	FirstError       string       `json:"first_error,omitempty"`
}

// Latency summarizes completed requests' latencies, in milliseconds.
// Percentiles are nearest-rank.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// ServerStats is what /proc said about the server process.
type ServerStats struct {
	PID int `json:"pid"`
	// CPUSeconds is user+system CPU time spent in the measured phase.
	CPUSeconds float64 `json:"cpu_s"`
	// CPUSecondsPerMB is CPUSeconds over the MiB moved, when any were.
	CPUSecondsPerMB float64 `json:"cpu_s_per_mb,omitempty"`
	// PeakRSSBytes is VmHWM: the process's peak resident set so far,
	// since it started (not only in this workload).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// RSSBytes is VmRSS at the end of the measured phase.
	RSSBytes int64 `json:"rss_bytes"`
}

func (r *Result) summarize(samples []sample, elapsed time.Duration) {
	// To the microsecond: a quick workload (a page of tags from a fast
	// registry) takes less than a millisecond.
	r.ElapsedSeconds = math.Round(elapsed.Seconds()*1e6) / 1e6
	lats := make([]time.Duration, len(samples))
	var sum time.Duration
	for i, s := range samples {
		lats[i] = s.latency
		r.Bytes += s.bytes
		sum += s.latency
	}
	if secs := elapsed.Seconds(); secs > 0 {
		r.ReqPerSec = round3(float64(len(samples)) / secs)
		r.MBPerSec = round3(float64(r.Bytes) / MiB / secs)
	}
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	r.LatencyMillis = Latency{
		Min:  ms(lats[0]),
		Mean: ms(sum / time.Duration(len(lats))),
		P50:  ms(percentile(lats, 50)),
		P90:  ms(percentile(lats, 90)),
		P99:  ms(percentile(lats, 99)),
		Max:  ms(lats[len(lats)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// procSample is a reading of /proc/<pid>: CPU ticks and memory.
type procSample struct {
	ok         bool
	pid        int
	cpuSeconds float64
	hwm, rss   int64
}

// clockTicks is USER_HZ, which Linux fixes at 100 on every architecture
// Go supports.
const clockTicks = 100

func readProc(pid int) procSample {
	if pid <= 0 {
		return procSample{}
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procSample{}
	}
	// Fields after the command, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procSample{}
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return procSample{}
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}
	}
	ps := procSample{ok: true, pid: pid, cpuSeconds: float64(utime+stime) / clockTicks}
	if status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				ps.hwm = parseKB(v)
			} else if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				ps.rss = parseKB(v)
			}
		}
	}
	return ps
}

func parseKB(v string) int64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n << 10
}

func serverStats(before, after procSample, bytes int64) *ServerStats {
	if !before.ok || !after.ok {
		return nil
	}
	st := &ServerStats{
		PID:          after.pid,
		CPUSeconds:   round3(after.cpuSeconds - before.cpuSeconds),
		PeakRSSBytes: after.hwm,
		RSSBytes:     after.rss,
	}
	if bytes > 0 {
		st.CPUSecondsPerMB = math.Round(st.CPUSeconds/(float64(bytes)/MiB)*1e6) / 1e6
	}
	return st
}
